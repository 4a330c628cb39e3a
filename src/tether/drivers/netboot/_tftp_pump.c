/* tether.drivers.netboot._tftp_pump: a TFTP transfer's steady state, without the GIL.
 *
 * pump() is the C twin of FastTransferThread._answer_acks in _tftp_fast.py: while every
 * datagram is the ACK of the last block on the wire, it sends the next window, each block
 * read ahead with one pread for many and sent as two pieces (header, payload) in one sendmsg.
 * It returns at the first other datagram, or when the receive times out (SO_RCVTIMEO) or
 * fails, and Python, the state machine, takes it from there. Between those returns a block
 * costs three system calls at most and no Python at all; the GIL is free the whole time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Longer datagrams are cut, as by the reference loop (a client's DATA, never legal here). */
#define RECEIVE 1024
/* File bytes read ahead at once (whole blocks, at least one). */
#define READ_AHEAD (256 * 1024)

PyDoc_STRVAR(pump_doc,
"pump(sock_fd, file_fd, size, blksize, windowsize, on_wire, final) -> (acked, datagram)\n\n"
"Without the GIL: receive on the connected socket sock_fd; while the datagram is the ACK of\n"
"block on_wire (counted from 1; 16 bits on the wire), send the next window of windowsize\n"
"blocks of the file file_fd (size bytes, blocks of blksize, the final block numbered final)\n"
"and wait for its last block's ACK. Returns the last block acknowledged (on_wire - 1: none)\n"
"and the datagram that was not such an ACK, or None when the receive timed out or failed, or\n"
"when the final block was acknowledged. A send that fails is ignored (the block is lost, the\n"
"timer sends it again); a read of the file that fails raises OSError.");

static PyObject *
pump(PyObject *module, PyObject *args)
{
    int sock_fd, file_fd, blksize, windowsize;
    long long size, on_wire, final;
    if (!PyArg_ParseTuple(args, "iiLiiLL:pump", &sock_fd, &file_fd, &size, &blksize,
                          &windowsize, &on_wire, &final)) {
        return NULL;
    }
    if (blksize < 1 || windowsize < 1 || size < 0 || on_wire < 1 || final < on_wire) {
        PyErr_SetString(PyExc_ValueError, "pump: blksize, windowsize or blocks out of range");
        return NULL;
    }
    size_t chunk = READ_AHEAD - READ_AHEAD % (size_t)blksize;
    if (chunk == 0) {
        chunk = (size_t)blksize;
    }
    char *data = PyMem_RawMalloc(chunk);
    if (data == NULL) {
        return PyErr_NoMemory();
    }
    unsigned char received[RECEIVE];
    unsigned char header[4] = {0, 3, 0, 0};
    long long acked = on_wire - 1;
    long long held_start = 0, held_end = 0; /* file offsets in data */
    ssize_t got = -1;
    int read_error = 0;

    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        got = recv(sock_fd, received, sizeof received, 0);
        if (got != 4 || received[0] != 0 || received[1] != 4 ||
            ((received[2] << 8) | received[3]) != (on_wire & 0xFFFF)) {
            break; /* not the ACK: for the machine (or a time-out: got < 0) */
        }
        acked = on_wire;
        if (acked == final) {
            got = -1;
            break;
        }
        long long last = acked + windowsize < final ? acked + windowsize : final;
        for (long long block = acked + 1; block <= last; block++) {
            long long offset = (block - 1) * (long long)blksize;
            long long length = size - offset < blksize ? size - offset : blksize;
            if (length < 0) {
                length = 0;
            }
            if (length > 0 && (offset < held_start || offset + length > held_end)) {
                long long want = size - offset < (long long)chunk ? size - offset : (long long)chunk;
                ssize_t n = pread(file_fd, data, (size_t)want, (off_t)offset);
                if (n < 0) {
                    read_error = errno;
                    break;
                }
                held_start = offset;
                held_end = offset + n;
                if (length > n) {
                    length = n; /* the file shrank: a short block ends the transfer early */
                }
            }
            header[2] = (unsigned char)((block >> 8) & 0xFF);
            header[3] = (unsigned char)(block & 0xFF);
            struct iovec pieces[2] = {
                {.iov_base = header, .iov_len = 4},
                {.iov_base = data + (offset - held_start), .iov_len = (size_t)length},
            };
            struct msghdr message = {.msg_iov = pieces, .msg_iovlen = length > 0 ? 2 : 1};
            (void)sendmsg(sock_fd, &message, MSG_NOSIGNAL);
        }
        if (read_error) {
            break;
        }
        on_wire = last;
    }
    Py_END_ALLOW_THREADS

    PyMem_RawFree(data);
    if (read_error) {
        errno = read_error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (got < 0) {
        return Py_BuildValue("(LO)", acked, Py_None);
    }
    return Py_BuildValue("(Ly#)", acked, (const char *)received, (Py_ssize_t)got);
}

static PyMethodDef pump_methods[] = {
    {"pump", pump, METH_VARARGS, pump_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef pump_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tether.drivers.netboot._tftp_pump",
    .m_doc = "A TFTP transfer's steady state without the GIL (see _tftp_fast.py).",
    .m_size = 0,
    .m_methods = pump_methods,
};

PyMODINIT_FUNC
PyInit__tftp_pump(void)
{
    return PyModuleDef_Init(&pump_module);
}
