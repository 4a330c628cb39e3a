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
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* What send_then_poll() returns. */
enum { POLL_NOTHING = 0, POLL_READY = 1, POLL_DECLINED = 2 };

/* A spin that is off its CPU this long (wall time minus the thread's CPU time) stops: the
 * CPU is wanted by another thread (the peer it waits for, when both share one CPU). */
#define LOST_CPU_NS 20000LL
/* The last other helper user counts as the peer when it passed this recently. */
#define PEER_RECENT_NS 1000000LL

static long long
clock_ns(clockid_t clock)
{
    struct timespec now;
    clock_gettime(clock, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* A spin that found its answer waits up to this long for the peer to let go of the GIL: about
 * what a client runs between sending a call and polling for its reply. Short, because a
 * peer that does not poll next (a byte stream's sender, a goodbye) makes the whole wait. */
#define PEER_GIL_NS 15000LL

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Passes through the helper with share, each counted once its thread has let go of the GIL.
 * An answer can arrive before its sender lets go: a client thread sends its call (from
 * Python, GIL held) and then runs Python until it polls for the reply. A poller that took the
 * GIL at once would sleep on it and cost a wake-up; it waits for the next pass instead. */
static _Atomic unsigned long passes;

/* Who passed through the helper last, on which CPU, when: in tether.testing.serve() that is
 * the peer thread. Three relaxed atomics that may tear: only a hint for whether to spin. */
static _Atomic long last_thread;
static _Atomic int last_cpu = -1;
static _Atomic long long last_ns;
static _Thread_local long this_thread;

/* Records this thread's CPU; returns whether the peer last ran on the same CPU, recently. */
static int
peer_shares_cpu(long long now)
{
    if (this_thread == 0) {
        this_thread = (long)syscall(SYS_gettid);
    }
    int cpu = sched_getcpu();
    long peer = atomic_exchange_explicit(&last_thread, this_thread, memory_order_relaxed);
    int peer_cpu = atomic_exchange_explicit(&last_cpu, cpu, memory_order_relaxed);
    long long peer_ns = atomic_exchange_explicit(&last_ns, now, memory_order_relaxed);
    return cpu >= 0 && peer != this_thread && peer_cpu == cpu && now - peer_ns < PEER_RECENT_NS;
}

PyDoc_STRVAR(send_then_poll_doc,
"send_then_poll(fd, data, poll_fd, spin_ns, counts, share=False, block_ns=0) -> 0 | 1 | 2\n\n"
"Without the GIL: send as much of data on socket fd as it takes without blocking, then\n"
"poll poll_fd for input (zero time-outs, no sleep) until it is readable or spin_ns\n"
"nanoseconds have passed. Appends the count of bytes sent to the list counts (here, so\n"
"that a Ctrl-C raised right after the call cannot lose it). Returns 1 if poll_fd is\n"
"readable, else 0. share says the answer comes from a peer thread of this process: the\n"
"spin then also stops when the thread was off its CPU for 20 us (preempted), and returns\n"
"2 without spinning when the thread that used the helper before it (the peer, within the\n"
"last millisecond) ran on this CPU: a spin there only keeps the peer from running.\n"
"Then, when the spin found nothing and all of data went out, with block_ns (-1: no\n"
"limit) it waits that long for poll_fd to become readable, still without the GIL (the\n"
"result stays the spin's). A send error other than EAGAIN raises OSError; nothing is\n"
"polled then.");

static PyObject *
send_then_poll(PyObject *module, PyObject *args)
{
    int fd, poll_fd;
    Py_buffer data;
    long long spin_ns;
    PyObject *counts;
    int share = 0;
    long long block_ns = 0;
    if (!PyArg_ParseTuple(args, "iy*iLO!|pL:send_then_poll", &fd, &data, &poll_fd, &spin_ns,
                          &PyList_Type, &counts, &share, &block_ns)) {
        return NULL;
    }
    Py_ssize_t sent = 0;
    int error = 0, result = POLL_NOTHING;
    Py_BEGIN_ALLOW_THREADS
    unsigned long pass = share ? atomic_fetch_add(&passes, 1) + 1 : 0;
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
    long long start = share || spin_ns > 0 ? clock_ns(CLOCK_MONOTONIC) : 0;
    if (!error && share && peer_shares_cpu(start) && spin_ns > 0) {
        struct pollfd watched = {.fd = poll_fd, .events = POLLIN};
        result = poll(&watched, 1, 0) > 0 ? POLL_READY : POLL_DECLINED;
    } else if (!error && spin_ns > 0) {
        struct pollfd watched = {.fd = poll_fd, .events = POLLIN};
        long long deadline = start + spin_ns;
        long long cpu_start = share ? clock_ns(CLOCK_THREAD_CPUTIME_ID) : 0;
        for (;;) {
            int n = poll(&watched, 1, 0);
            if (n != 0 && !(n < 0 && errno == EINTR)) {
                result = n > 0 ? POLL_READY : POLL_NOTHING;
                if (share && n > 0) {
                    long long until = clock_ns(CLOCK_MONOTONIC) + PEER_GIL_NS;
                    while (atomic_load(&passes) == pass && clock_ns(CLOCK_MONOTONIC) < until) {
                        cpu_relax();
                    }
                }
                break;
            }
            long long now = clock_ns(CLOCK_MONOTONIC);
            if (now >= deadline) {
                break;
            }
            long long off_cpu =
                share ? now - start - (clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu_start) : 0;
            if (off_cpu > LOST_CPU_NS) {
                break;
            }
        }
    }
    if (!error && result != POLL_READY && block_ns != 0 && sent == data.len) {
        /* Blocking here, not after retaking the GIL: a peer woken by what was just sent
         * finds the GIL free instead of sleeping on it until this thread blocks. */
        struct pollfd watched = {.fd = poll_fd, .events = POLLIN};
        struct timespec limit = {.tv_sec = block_ns / 1000000000LL,
                                 .tv_nsec = block_ns % 1000000000LL};
        ppoll(&watched, 1, block_ns < 0 ? NULL : &limit, NULL);
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
    return PyLong_FromLong(result);
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
