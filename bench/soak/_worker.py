"""One soak client worker: :func:`run`, in a process forked from a server that imported
``tether`` once (``multiprocessing``'s forkserver), or ``python -m bench.soak._worker CONFIG
SEED DURATION`` on its own.

A long-lived process that leases an exporter, drives it and releases it, over and over, the
way a CI job's test session does: ``tether.lease`` (request, wait in the queue, connect
through the relay), ``power.on`` and a streamed ``power.read`` (the call a kill may land in),
then the release. Each step is announced first, as one JSON line on stdout with the longest
it may take (``bound``, seconds), so the supervisor can kill the worker in a chosen step and
call a step that outlives its bound a hang. SIGUSR1 dumps every thread's traceback to stderr
(``faulthandler``): what the supervisor records for a hang.

A worker killed at a random point is started again at once: forking it from the server
spares the restart the second of CPU (and, on a busy machine, the ten of wall time) that
importing ``tether``, ``httpx`` and ``pydantic`` anew would cost; what each lease does is
unchanged (a fresh HTTP client, fresh connections, nothing shared with the server).
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import tether
from tether.client import Lease
from tether.errors import TetherError

#: Samples a ``power.read`` streams, and seconds between them (the exporter's config).
SAMPLES = 5
#: The longest a worker waits in the queue before it gives up (and releases the request).
WAIT_LIMIT = 60.0
#: Seconds of the HTTP calls' worst case (``LeaseClient``: 10 s to connect, 40 s to read).
HTTP_BOUND = 50.0


class GaveUp(Exception):
    """Waited longer than :data:`WAIT_LIMIT` for a grant."""


def _print(line: bytes) -> None:
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.flush()


_send: Callable[[bytes], None] = _print


def emit(phase: str, bound: float, **fields: Any) -> None:
    line = {"phase": phase, "bound": bound, "t": round(time.time(), 3), **fields}
    _send(json.dumps(line).encode())


def lease_once(config: str, duration: float, rng: random.Random) -> None:
    """One lease: request, wait, connect, 1-3 calls, release. Raises what ``tether`` raises."""
    # Connecting through the relay ends when the lease does (the router then refuses).
    connect = duration + 30.0
    started = time.monotonic()

    def waiting(pending: Lease) -> None:
        if time.monotonic() - started > WAIT_LIMIT:
            raise GaveUp(f"no grant within {WAIT_LIMIT:g} s")
        emit("wait", HTTP_BOUND + connect, lease=pending.id, position=pending.position)

    emit("request", HTTP_BOUND + connect)
    with tether.lease(
        selector="soak=1",
        duration=duration,
        config=config,
        timeout=10,
        progress=False,
        on_wait=waiting,
        on_hook=lambda report, output: None,
    ) as dut:
        session = dut.session
        lease = session.lease
        fields = {"lease": lease.id, "exporter": lease.exporters[0]}
        served = {"served_by": session.server_meta["exporter"]}
        emit("hold", 5.0, session=session.server_meta["session"], **fields, **served)
        for _ in range(rng.randint(1, 3)):
            emit("call", 30.0, **fields)
            dut.power.on()
            readings = list(dut.power.read())
            if len(readings) != SAMPLES or not all(r.voltage > 0 for r in readings):
                raise AssertionError(f"power.read gave {readings!r}")
        emit("release", HTTP_BOUND, **fields)
    emit("ok", 5.0, **fields)


def run(config: str, seed: int, duration: float, log: str, out: Connection) -> None:
    """A forked worker: stdout and stderr to ``log``, its steps through ``out``."""
    global _send
    _send = out.send_bytes
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    loop(config, seed, duration)


def main() -> None:
    loop(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))


def loop(config: str, seed: int, duration: float) -> None:
    """Lease, use, release, forever."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    rng = random.Random(seed)
    while True:
        try:
            lease_once(config, duration, rng)
        except (TetherError, OSError, GaveUp) as exc:
            message = str(exc).replace("\n", " ")[:300]
            emit("error", 5.0, kind=type(exc).__name__, message=message)
            time.sleep(0.5)  # a failing controller is not hammered


if __name__ == "__main__":
    main()
