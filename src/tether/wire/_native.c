/* tether.wire._native: send, then wait for the answer by polling, without the GIL.
 *
 * Two threads of one process that talk over a socket (tether.testing.serve) share the GIL.
 * When one of them makes bytes visible to the other while it still holds the GIL, the other
 * wakes, finds the GIL taken and sleeps again on it; on a virtual machine each such sleep
 * costs a wake-up of a halted virtual CPU (tens of microseconds). send_then_poll() releases
 * the GIL first, then sends, then polls for the reply, so the peer never waits on the GIL and
 * neither thread's CPU halts between a call and its reply. See docs/architecture.md.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

static long long
monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

PyDoc_STRVAR(send_then_poll_doc,
"send_then_poll(fd, data, poll_fd, spin_ns, counts) -> readable\n\n"
"Without the GIL: send as much of data on socket fd as it takes without blocking, then\n"
"poll poll_fd for input (zero time-outs, no sleep) until it is readable or spin_ns\n"
"nanoseconds have passed. Appends the count of bytes sent to the list counts (here, so\n"
"that a Ctrl-C raised right after the call cannot lose it) and returns whether poll_fd is\n"
"readable. A send error other than EAGAIN raises OSError; nothing is polled then.");

static PyObject *
send_then_poll(PyObject *module, PyObject *args)
{
    int fd, poll_fd;
    Py_buffer data;
    long long spin_ns;
    PyObject *counts;
    if (!PyArg_ParseTuple(args, "iy*iLO!:send_then_poll", &fd, &data, &poll_fd, &spin_ns,
                          &PyList_Type, &counts)) {
        return NULL;
    }
    Py_ssize_t sent = 0;
    int error = 0, ready = 0;
    Py_BEGIN_ALLOW_THREADS
    while (sent < data.len) {
        ssize_t n = send(fd, (const char *)data.buf + sent, (size_t)(data.len - sent),
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) {
            sent += n;
        } else if (errno != EINTR) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                error = errno;
            }
            break;
        }
    }
    if (!error && spin_ns > 0) {
        struct pollfd watched = {.fd = poll_fd, .events = POLLIN};
        long long deadline = monotonic_ns() + spin_ns;
        for (;;) {
            int n = poll(&watched, 1, 0);
            if (n != 0 && !(n < 0 && errno == EINTR)) {
                ready = n > 0;
                break;
            }
            if (monotonic_ns() >= deadline) {
                break;
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (error) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *count = PyLong_FromSsize_t(sent);
    if (count == NULL || PyList_Append(counts, count) < 0) {
        Py_XDECREF(count);
        return NULL;
    }
    Py_DECREF(count);
    return PyBool_FromLong(ready);
}

static PyMethodDef native_methods[] = {
    {"send_then_poll", send_then_poll, METH_VARARGS, send_then_poll_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tether.wire._native",
    .m_doc = "Send, then poll for the answer, without the GIL (see _spin.py).",
    .m_size = 0,
    .m_methods = native_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
