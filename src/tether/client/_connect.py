"""``connect(url)``: a client tree for a remote exporter, over unix, TCP or TLS.

The tree's calls go through a :class:`RemoteSession`, which holds one
:class:`~tether.wire.ClientConnection` and the exporter's session id. When the connection
dies (exporter restarted its network, keepalive expired), calls in flight fail with
``ConnectionLost``; the next call reconnects and re-attaches to the same session, as long as
the exporter still holds it (its ``session_grace``). A session the exporter ended (or lost in
a restart) is never silently replaced: the tree's nodes belong to it, so that call fails with
``SessionLost``, and so does every later one, at once, without connecting again. A session
reached through a lease (``tether.client.LeasedSession``) fails the same way with
``LeaseExpired``/``LeaseEnded`` once the lease is over.
"""

from __future__ import annotations

import copy
import os
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tether.driver import ByteStream, DriverClient, build_client_tree
from tether.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectFailed,
    ConnectionLost,
    LeaseEnded,
    SessionLost,
)
from tether.wire import Address, ClientConnection, connect_socket, parse_address

from ._allow import client_policy

__all__ = ["RemoteClient", "RemoteSession", "connect", "split_session_url"]


def split_session_url(url: str) -> tuple[str, str | None]:
    """Split ``unix:///run/x.sock?session=ID`` into the address and the session id.

    Raises:
        ConfigError: the query has keys other than ``session``.
    """
    base, sep, raw_query = url.partition("?")
    if not sep:
        return url, None
    query = parse_qs(raw_query)
    unknown = sorted(set(query) - {"session"})
    if unknown:
        raise ConfigError(
            f"{url!r}: unknown URL parameter(s) {', '.join(unknown)} (expected session)"
        )
    session = query.get("session", [None])[-1]
    return base, session


class RemoteSession:
    """The session behind a client tree: implements ``CallTarget``, reconnects for new calls.

    Attributes:
        address: where the exporter is.
        session_id: the exporter's id for this session.
        server_meta: the exporter's Hello meta (``report``, ``session``, ``exporter``...).
    """

    def __init__(
        self,
        address: Address,
        *,
        ssl_context: ssl.SSLContext | None,
        meta: dict[str, Any],
        session_id: str | None,
        keepalive: float | None,
        timeout: float,
    ) -> None:
        self.address = address
        self._ssl_context = ssl_context
        self._meta = meta
        self._keepalive = keepalive
        self._timeout = timeout
        self._lock = threading.Lock()
        self._closed = False
        #: why this session can never be reached again (raised, as a copy, by every call)
        self._gone: ConnectionLost | None = None
        self.connection = self._open(session_id)
        self.server_meta = self.connection.server_meta
        self.session_id: str | None = self.server_meta.get("session")

    def _open(self, session_id: str | None) -> ClientConnection:
        sock = connect_socket(self.address, ssl_context=self._ssl_context, timeout=self._timeout)
        meta = dict(self._meta)
        if session_id is not None:
            meta["session"] = session_id
        # The wire client pings after ``k`` of silence and gives up ``2 k`` later.
        keepalive = None if self._keepalive is None else self._keepalive / 3
        return ClientConnection(
            sock, meta=meta, keepalive=keepalive, handshake_timeout=self._timeout
        )

    def current(self) -> ClientConnection:
        """The live connection, reconnecting (to the same session) if the last one died.

        Raises:
            SessionLost: the exporter no longer has the session (now, or on an earlier call).
            LeaseEnded: (through a lease) the lease is over.
            ConnectionLost: closed, or the exporter cannot be reached.
        """
        connection = self.connection
        if connection.alive and self._gone is None:
            return connection
        with self._lock:
            if self._gone is not None:
                raise copy.copy(self._gone)  # a fresh traceback each time
            if self._closed:
                raise ConnectionLost("the connection is closed")
            if self.connection.alive:
                return self.connection
            self.connection.close()  # release the dead one's socket
            ended = self.why_lost()
            if ended is not None:
                raise self._give_up(ended)
            try:
                self.connection = self._open(self.session_id)
            except (SessionLost, LeaseEnded) as exc:
                raise self._give_up(exc) from None
            except AuthenticationFailed as exc:
                lost = SessionLost(f"reconnected to {self.address}, but the session is gone: {exc}")
                raise self._give_up(lost) from exc
            except ConnectFailed as exc:
                ended = self.why_lost()  # refused: the lease may have ended meanwhile
                if ended is not None:
                    raise self._give_up(ended) from exc
                raise ConnectionLost(
                    f"the connection was lost and reconnecting failed: {exc}"
                ) from exc
            return self.connection

    def why_lost(self) -> LeaseEnded | None:
        """Called when the connection died: why it can never come back, if that is known.

        A direct session knows nothing more than its connection; a leased one asks the
        controller whether the lease is over.
        """
        return None

    @property
    def gone(self) -> ConnectionLost | None:
        """Why this session can never be reached again (every call raises it), or ``None``."""
        return self._gone

    def give_up(self, error: ConnectionLost) -> ConnectionLost:
        """Remember that the session is gone for good: every later call raises ``error`` at
        once, without connecting. Returns ``error``."""
        with self._lock:
            return self._give_up(error)

    def _give_up(self, error: ConnectionLost) -> ConnectionLost:
        self._gone = error
        self.connection.close()
        return error

    def _lost_in_flight(self, exc: ConnectionLost) -> ConnectionLost:
        """What a call whose connection died raises: why, when the session is gone for good."""
        if isinstance(exc, SessionLost | LeaseEnded):
            return exc
        ended = self.why_lost()
        if ended is None:
            return exc
        return copy.copy(self.give_up(ended))

    # -- CallTarget ---------------------------------------------------------------------------

    def call(self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        connection = self.current()
        try:
            return connection.call(node, method, args, kwargs)
        except ConnectionLost as exc:
            lost = self._lost_in_flight(exc)
            if lost is exc:
                raise
            raise lost from exc

    def streaming_call(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        items = self.current().streaming_call(node, method, args, kwargs)
        try:
            yield from items
        except ConnectionLost as exc:
            lost = self._lost_in_flight(exc)
            if lost is exc:
                raise
            raise lost from exc

    def open_stream(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> AbstractContextManager[ByteStream]:
        return self.current().open_stream(node, method, args, kwargs)

    def close(self) -> None:
        """Close the connection; the exporter ends the session after its grace period."""
        with self._lock:
            self._closed = True
            self.connection.close()


class RemoteClient(DriverClient):
    """The root of a remote client tree: a :class:`DriverClient` that owns the connection.

    Use it as a context manager (or call :meth:`close`).
    """

    _remote: RemoteSession

    def close(self) -> None:
        """Close the connection to the exporter."""
        self._remote.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def session(self) -> RemoteSession:
        """The connection and session behind this tree."""
        return self._remote

    @property
    def session_url(self) -> str:
        """A URL that re-attaches to this session (``...?session=ID``), for ``TETHER_HOST``."""
        return f"{self._remote.address}?session={self._remote.session_id}"


_REMOTE_CLASSES: dict[type[DriverClient], type[RemoteClient]] = {DriverClient: RemoteClient}


def _remote_class(cls: type[DriverClient]) -> type[RemoteClient]:
    remote = _REMOTE_CLASSES.get(cls)
    if remote is None:
        remote = type(f"Remote{cls.__name__}", (RemoteClient, cls), {"__module__": __name__})
        _REMOTE_CLASSES[cls] = remote
    return remote


def connect(
    url: str,
    token: str | None = None,
    *,
    ca: str | Path | None = None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
    allow: Sequence[str] = (),
    unsafe: bool = False,
    keepalive: float | None = 10.0,
    timeout: float = 10.0,
) -> RemoteClient:
    """Connect to an exporter and return its client tree (a context manager).

    ``token``, ``ca``, ``cert`` and ``key`` default to the environment variables
    ``TETHER_TOKEN``, ``TETHER_CA``, ``TETHER_CERT`` and ``TETHER_KEY`` when unset.

    Args:
        url: ``tls://host:port``, ``tcp://host:port`` or ``unix:///path``, optionally with
            ``?session=ID`` to join an existing session (``dut`` inside a shell or hook).
        token: the bearer token, when the exporter requires one.
        ca: CA certificate(s) to verify a ``tls://`` exporter with (default: the system's).
        cert: a client certificate, for exporters that require one (``key``: its key).
        allow: glob patterns of client classes that may be imported, beyond ``tether.*``,
            registered drivers' packages, ``TETHER_CLIENT_ALLOW`` and the client config
            file's ``allow:`` (see :func:`tether.client.client_policy`).
        unsafe: import any client class the exporter names (trusted exporters only).
        keepalive: a silent exporter is declared dead after about this many seconds (it is
            pinged after a third of it) and calls in flight fail with ``ConnectionLost``;
            ``None`` turns keepalive off.
        timeout: seconds allowed for connecting and for the handshake.

    Returns:
        The root client; nodes are its attributes (``dut.power.on()``).

    Raises:
        ConfigError: a bad URL or TLS file.
        ConnectFailed: the exporter cannot be reached or the TLS handshake failed.
        AuthenticationFailed: the token is missing or wrong, or the session is unknown.
        InterfaceVersionMismatch: a client class does not speak the offered version.
    """
    env = os.environ
    token = token if token is not None else env.get("TETHER_TOKEN") or None
    ca = ca if ca is not None else env.get("TETHER_CA") or None
    cert = cert if cert is not None else env.get("TETHER_CERT") or None
    key = key if key is not None else env.get("TETHER_KEY") or None
    base, session_id = split_session_url(url)
    address = parse_address(base)
    ssl_context = None
    if address.scheme == "tls":
        from tether.security import client_ssl_context

        ssl_context = client_ssl_context(ca, cert, key)
    meta: dict[str, Any] = {"client": "tether.connect"}
    if token:
        meta["token"] = token
    remote = RemoteSession(
        address,
        ssl_context=ssl_context,
        meta=meta,
        session_id=session_id,
        keepalive=keepalive,
        timeout=timeout,
    )
    try:
        root = build_client_tree(remote.server_meta["report"], remote, client_policy(allow, unsafe))
    except BaseException:
        remote.close()
        raise
    root.__class__ = _remote_class(type(root))
    assert isinstance(root, RemoteClient)
    root._remote = remote
    return root
