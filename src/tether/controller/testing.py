"""Run a real controller for tests: in this process (a thread) or as a subprocess.

::

    from tether.controller.testing import run_controller

    with run_controller(tmp_path) as ctl:
        alice = ctl.admin.create_client("alice")
        ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
        with ctl.http(alice.token) as http:
            http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60})

Everything is real: TLS (a throwaway lab CA in ``tmp_path``), a SQLite file (or the PostgreSQL
database you pass), HTTP over loopback. Startup waits on the controller's ready line.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from tether.errors import ConfigError

from ._admin import Admin
from ._database import Database
from ._limits import Limits
from ._server import ServeOptions, serve

__all__ = ["ControllerHandle", "FakeClock", "IssuedIdentity", "TestAdmin", "run_controller"]

_READY = re.compile(r"tether controller ready at (\S+)(?: relay (\S+))?")


@dataclass(frozen=True, slots=True)
class IssuedIdentity:
    """An identity made by :class:`TestAdmin`: its token, and its ready YAML config."""

    kind: str
    name: str
    token: str
    labels: Mapping[str, str]
    config: str


class TestAdmin:
    """``tether admin`` as Python, on the controller's database; identities come with configs."""

    __test__ = False  # not a pytest class

    def __init__(self, admin: Admin, handle: ControllerHandle) -> None:
        self.admin = admin
        self._handle = handle

    def create_client(self, name: str) -> IssuedIdentity:
        """Make a client; returns its token and config."""
        return self._issued(self.admin.create_client(name))

    def create_admin(self, name: str) -> IssuedIdentity:
        """Make an admin (dashboard admin actions, the admin API); returns its token."""
        return self._issued(self.admin.create_admin(name))

    def create_exporter(self, name: str, labels: Mapping[str, str] | None = None) -> IssuedIdentity:
        """Make an exporter with ``labels``; returns its token and config."""
        return self._issued(self.admin.create_exporter(name, labels or {}))

    def __getattr__(self, name: str) -> Any:
        # Everything else (delete, rotate, policies, ...) is Admin's own.
        return getattr(self.admin, name)

    def _issued(self, new: Any) -> IssuedIdentity:
        config = new.config(self._handle.url, self._handle.ca)
        return IssuedIdentity(new.kind, new.name, new.token, dict(new.labels), config)


class FakeClock:
    """A clock that moves only when told (pass to ``run_controller(..., clock=...)``)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        with self._lock:
            self.now += seconds


class ControllerHandle:
    """A running controller: ``url``, ``ca``, ``database``, ``admin``, ``http(token)``."""

    def __init__(self, url: str, ca: Path | None, database: str) -> None:
        self.url = url
        self.ca = ca
        self.database = database
        self.relay: str | None = None
        self._clients: list[httpx.Client | httpx.AsyncClient] = []
        self._db = Database(database)
        self.admin = TestAdmin(Admin(self._db), self)

    def http(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` for the API: base URL, CA and bearer token set."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = self._verify()
        return httpx.Client(base_url=self.url, verify=verify, headers=headers, timeout=90, **kwargs)

    def async_http(self, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        """Same as :meth:`http`, for asyncio code."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = self._verify()
        return httpx.AsyncClient(
            base_url=self.url, verify=verify, headers=headers, timeout=90, **kwargs
        )

    def _verify(self) -> ssl.SSLContext | bool:
        if self.ca is None:
            return True
        return ssl.create_default_context(cafile=str(self.ca))

    def stop(self) -> None:
        """Stop the controller (idempotent); closes the sync clients :meth:`http` made."""
        self._close_clients()
        self._db.dispose()

    def _close_clients(self) -> None:
        # Open keep-alive connections would hold the server's graceful shutdown.
        for client in self._clients:
            if isinstance(client, httpx.Client):
                client.close()
        self._clients.clear()

    def restart(self) -> None:
        """Stop and start again on the same port and database."""
        raise NotImplementedError("restart() needs run_controller(..., subprocess=True)")

    def poke(self) -> None:
        """Make an in-process controller's upkeep run now (after moving its fake clock)."""
        raise NotImplementedError("poke() needs an in-process controller")

    def upkeep_now(self) -> None:
        """Run one round of an in-process controller's upkeep and wait for it (heartbeats and
        polls written, due leases expired, abandoned ones ended, a grant pass)."""
        raise NotImplementedError("upkeep_now() needs an in-process controller")

    def notice_admin_changes(self) -> None:
        """Make an in-process controller see identity changes now (it checks every second)."""
        raise NotImplementedError("notice_admin_changes() needs an in-process controller")


class _ThreadHandle(ControllerHandle):
    def __init__(self, url: str, ca: Path | None, database: str) -> None:
        super().__init__(url, ca, database)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        assert self._loop is not None and self._server is not None
        self._loop.call_soon_threadsafe(self._server.controller.poke)

    def upkeep_now(self) -> None:
        assert self._loop is not None and self._server is not None
        rounds = self._server.controller.upkeep_once()
        asyncio.run_coroutine_threadsafe(rounds, self._loop).result()

    def notice_admin_changes(self) -> None:
        assert self._loop is not None and self._server is not None
        check = self._server.controller.check_versions()
        asyncio.run_coroutine_threadsafe(check, self._loop).result()

    def stop(self) -> None:
        self._close_clients()
        if self._thread is not None and self._loop is not None:
            server = self._server
            self._loop.call_soon_threadsafe(setattr, server, "should_exit", True)
            self._thread.join()
            self._thread = None
        super().stop()


class _ProcessHandle(ControllerHandle):
    def __init__(self, url: str, ca: Path | None, database: str, argv: list[str]) -> None:
        super().__init__(url, ca, database)
        self.argv = argv
        self.process: subprocess.Popen[str] | None = None
        self.stderr_path: Path | None = None

    def stop(self) -> None:
        self._close_clients()
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.process = None
        super().stop()

    def kill(self) -> None:
        """Kill the process at once (SIGKILL): no graceful shutdown."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.process = None

    def restart(self) -> None:
        """Stop and start again on the same ports (API and relay) and database."""
        self.stop()
        argv = list(self.argv)
        _keep_port(argv, "--listen", self.url)
        if self.relay is not None:
            _keep_port(argv, "--relay-listen", self.relay)
        self.argv = argv
        url, relay = self.url, self.relay
        self.url = _spawn(self, argv)
        if (self.url, self.relay) != (url, relay):
            raise ConfigError(
                f"restarted controller moved from {url} (relay {relay}) to {self.url} "
                f"(relay {self.relay})"
            )


def _keep_port(argv: list[str], option: str, url: str) -> None:
    """Make ``option``'s listen address in ``argv`` use the port of ``url``."""
    index = argv.index(option) + 1
    argv[index] = argv[index].rsplit(":", 1)[0] + ":" + url.rsplit(":", 1)[1]


def _spawn(handle: _ProcessHandle, argv: list[str]) -> str:
    assert handle.stderr_path is not None
    with handle.stderr_path.open("ab") as stderr:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=_child_env()
        )
    handle.process = process
    return _read_ready(process, handle)


def _read_ready(process: subprocess.Popen[str], handle: _ProcessHandle) -> str:
    stdout: IO[str] | None = process.stdout
    assert stdout is not None
    for line in stdout:
        match = _READY.search(line)
        if match:
            handle.relay = match.group(2)
            return match.group(1)
    process.wait()
    assert handle.stderr_path is not None
    raise ConfigError(
        f"controller exited with {process.returncode} before it was ready: "
        f"{handle.stderr_path.read_text(errors='replace')[-2000:]}"
    )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@contextmanager
def run_controller(
    tmp_path: str | Path,
    *,
    subprocess: bool = False,
    tls: bool = True,
    database: str | None = None,
    heartbeat_interval: float = 10.0,
    heartbeat_timeout: float = 30.0,
    relay: bool = False,
    clock: Callable[[], float] | None = None,
    limits: Limits | None = None,
) -> Iterator[ControllerHandle]:
    """Run a controller until the ``with`` block ends.

    Args:
        tmp_path: where the CA, the SQLite file and logs go.
        subprocess: run ``tether controller serve`` as a child process (``restart()`` works).
        tls: serve https with a throwaway lab CA (``handle.ca``); False serves plain http.
        database: a database URL; default ``sqlite:///<tmp_path>/controller.db``.
        heartbeat_interval: seconds, told to exporters.
        heartbeat_timeout: seconds of silence before an exporter is offline.
        relay: also run the router relay on a free loopback port (``handle.relay``).
        clock: seconds since the epoch, e.g. a :class:`FakeClock` (in-process only).
        limits: the HTTP side's bounds (in-process only; default :class:`Limits`).

    Yields:
        The handle: ``url``, ``ca``, ``database``, ``relay``, ``admin``, ``http(token)``.
    """
    tmp = Path(tmp_path)
    tmp.mkdir(parents=True, exist_ok=True)
    url = database or f"sqlite:///{tmp / 'controller.db'}"
    ca = cert = key = None
    if tls:
        from tether.security import init_lab_certs

        certs = init_lab_certs(tmp / "controller-certs", overwrite=True)
        ca, cert, key = certs.ca, certs.server_cert, certs.server_key
    scheme = "https" if tls else "http"
    options = ServeOptions(
        listen=f"{scheme}://127.0.0.1:0",
        database=url,
        tls_cert=cert,
        tls_key=key,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        relay_listen=f"{'tls' if tls else 'tcp'}://127.0.0.1:0" if relay else None,
        limits=limits or Limits(),
    )
    handle: ControllerHandle
    if subprocess:
        if clock is not None or limits is not None:
            raise ConfigError("run_controller: a clock or limits work only in-process")
        handle = _start_process(tmp, options, ca)
    else:
        handle = _start_thread(options, ca, clock)
    try:
        yield handle
    finally:
        handle.stop()


def _start_process(tmp: Path, options: ServeOptions, ca: Path | None) -> _ProcessHandle:
    argv = [
        sys.executable,
        "-c",
        "from tether.cli import main; main()",
        "controller",
        "serve",
        "--listen",
        options.listen,
        "--database",
        options.database,
        "--heartbeat-interval",
        str(options.heartbeat_interval),
        "--heartbeat-timeout",
        str(options.heartbeat_timeout),
    ]
    if options.tls_cert is not None and options.tls_key is not None:
        argv += ["--tls-cert", str(options.tls_cert), "--tls-key", str(options.tls_key)]
    if options.relay_listen is not None:
        argv += ["--relay-listen", options.relay_listen]
    handle = _ProcessHandle("", ca, options.database, argv)
    handle.stderr_path = tmp / "controller.stderr"
    handle.url = _spawn(handle, argv)
    return handle


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _start_thread(
    options: ServeOptions, ca: Path | None, clock: Callable[[], float] | None
) -> _ThreadHandle:
    handle = _ThreadHandle("", ca, options.database)
    ready = threading.Event()
    failure: list[BaseException] = []

    def on_ready(line: str) -> None:
        match = _READY.search(line)
        assert match is not None
        handle.url = match.group(1)
        handle.relay = match.group(2)
        ready.set()

    def keep(server: Any) -> None:
        handle._server = server

    def main() -> None:
        loop = _new_loop()
        handle._loop = loop
        try:
            loop.run_until_complete(
                serve(options, ready=on_ready, server_created=keep, clock=clock)
            )
        except BaseException as exc:
            failure.append(exc)
        finally:
            loop.close()
            ready.set()

    thread = threading.Thread(target=main, name="tether-controller", daemon=True)
    handle._thread = thread
    thread.start()
    ready.wait()
    if failure:
        thread.join()
        raise failure[0]
    return handle
