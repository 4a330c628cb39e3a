"""What the controller's HTTP side spends on a peer before (and after) it proves who it is.

Theory of operation. Two layers, each cheap, so one slow or hostile peer costs bounded memory
and no stall for anyone else:

* **Connections** (:func:`protocol_class`, a subclass of uvicorn's h11 protocol): a request's
  headers must be complete within ``header_timeout`` counted from the connection's first byte
  (or from accept), never reset by each byte that trickles in; at most ``max_connections``
  overall and ``max_connections_per_peer`` per address. At a cap, the oldest connection with
  no request in progress (half-sent headers, idle keep-alive) is dropped to make room; when
  every connection is busy the new one is refused. Either is logged, at most every 10 s.
* **Requests** (:class:`GuardMiddleware`, ASGI): every ``/v1/`` route is authenticated from the
  ``Authorization`` header *before* a byte of the body is read; the body is refused (413) when
  its declared or actual size passes the route's limit, and (408) when it does not arrive
  within ``body_timeout``; at most ``max_requests`` requests (and ``max_waiters`` long-polls)
  run at once, past which the answer is 503 with ``Retry-After``. Failed authentications are
  counted per peer address: past a budget (``auth_failures_burst``, refilled at
  ``auth_failures_per_second``) a peer's unknown tokens get 429 without a database lookup, while
  tokens that were valid before are still looked up (a lab's real clients share addresses with
  attackers on NAT or loopback); each such 429 waits ``auth_tarpit`` first, so a connection
  makes at most one attempt that long. Refusals are logged with counts, at most every 10 s a
  peer.

The identity the middleware found goes into the ASGI ``state`` (``request.state.identity``), so
the routes do not look the token up twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field, fields
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tether.errors import ConfigError, ControllerError

from ._records import Identity

__all__ = ["GuardMiddleware", "Limits", "protocol_class"]

_log = logging.getLogger("tether.controller.limits")
_LOG_EVERY = 10.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound on what a peer may make the controller hold (docs/security.md).

    Attributes:
        header_timeout: seconds for a request's headers, from the connection's first byte.
        body_timeout: seconds for a request's whole body once its headers arrived.
        max_body: bytes of body on any route not in ``route_bodies``.
        route_bodies: bytes of body per path (``/v1/exporter/register`` carries the report).
        max_connections: open connections overall.
        max_connections_per_peer: open connections from one address.
        max_requests: requests in progress at once (long-polls aside).
        max_waiters: long-polls (``wait=`` > 0) in progress at once.
        auth_failures_burst: failed authentications a peer may make before throttling.
        auth_failures_per_second: how fast that budget refills.
        auth_tarpit: seconds a throttled peer's unknown token waits for its 429 (so one
            connection makes at most one such attempt a tarpit, at no cost to anyone else).
        max_pending_per_client: lease requests one client may have waiting at once.
        pending_poll_timeout: seconds a pending request lives after its client last polled it
            (a long-poll in progress counts as polling).
        claim_timeout: seconds a granted lease may go without its client joining the relay
            before it is released (only with the relay running).
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_body: int = 64 * 1024
    route_bodies: dict[str, int] = field(
        default_factory=lambda: {"/v1/exporter/register": 4 * 1024 * 1024}
    )
    max_connections: int = 2000
    max_connections_per_peer: int = 1000
    max_requests: int = 256
    max_waiters: int = 8192
    auth_failures_burst: int = 50
    auth_failures_per_second: float = 5.0
    auth_tarpit: float = 1.0
    max_pending_per_client: int = 100
    pending_poll_timeout: float = 300.0
    claim_timeout: float = 300.0

    @classmethod
    def parse(cls, items: Iterable[str]) -> Limits:
        """Limits from ``KEY=VALUE`` strings (``tether controller serve --limit``).

        Raises:
            ConfigError: an unknown key or a value that is not a positive number.
        """
        values: dict[str, Any] = {}
        known = {f.name: f for f in fields(cls) if f.name != "route_bodies"}
        for item in items:
            key, sep, text = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in known:
                raise ConfigError(
                    f"bad --limit {item!r}: expected KEY=VALUE with KEY one of "
                    f"{', '.join(sorted(known))}"
                )
            kind = int if known[key].type in ("int", int) else float
            try:
                value = kind(text)
            except ValueError:
                value = -1
            if value <= 0:
                raise ConfigError(f"bad --limit {item!r}: expected a positive {kind.__name__}")
            values[key] = value
        return cls(**values)

    def body_limit(self, path: str) -> int:
        """The body size limit of ``path``."""
        return self.route_bodies.get(path, self.max_body)


class _Every:
    """Rate-limits a repeated log line per key, counting what it did not say."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def __call__(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        self._count[key] = self._count.get(key, 0) + 1
        if now - self._last.get(key, -_LOG_EVERY) >= _LOG_EVERY:
            count = self._count.pop(key)
            self._last[key] = now
            if len(self._last) > 10_000:
                self._last.clear()
            _log.warning(message + " (%d time(s) in the last %g s)", *args, count, _LOG_EVERY)


_say = _Every()


# -- connections ----------------------------------------------------------------------------


def protocol_class(limits: Limits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the header deadline and connection caps of ``limits``."""

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._header_timer: asyncio.TimerHandle | None = None
            self._request_seen: object = None
            peer = self.client[0] if self.client else "?"
            self._peer = peer
            if not _make_room(self, peer, limits):
                _say(f"full:{peer}", "refused a connection from %s: too many open", peer)
                self.connections.discard(self)
                transport.abort()
                return
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(
                    limits.header_timeout, self._headers_too_slow
                )

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self._busy():
                return
            _say(f"slow:{self._peer}", "dropped a connection from %s: headers too slow", self._peer)
            self.transport.abort()

        def _busy(self) -> bool:
            cycle = self.cycle
            return cycle is not None and not cycle.response_complete

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._busy():
                self._disarm_header_timer()
            else:
                # Bytes of a next request (or a first one, still incomplete): its deadline
                # runs from the first of them, not from the last.
                self._arm_header_timer()

        def on_response_complete(self) -> None:
            unread = self.conn.their_state is h11.SEND_BODY
            super().on_response_complete()
            self._disarm_header_timer()
            if unread and self.transport.get_write_buffer_size() == 0:
                # Refused before its body was read (401, 413...): drop the connection now. A
                # graceful (TLS) close would go on reading, and decrypting, the junk.
                self.transport.abort()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

    return GuardedH11Protocol


def _idle(protocol: Any) -> bool:
    cycle = getattr(protocol, "cycle", None)
    return cycle is None or cycle.response_complete


def _make_room(new: Any, peer: str, limits: Limits) -> bool:
    """True when ``new`` may stay: under the caps, or an idle connection was dropped for it."""
    connections = new.connections
    mine = [c for c in connections if c is not new and getattr(c, "_peer", None) == peer]
    if len(mine) >= limits.max_connections_per_peer:
        return _drop_oldest_idle(mine, peer)
    if len(connections) > limits.max_connections:
        others = [c for c in connections if c is not new]
        return _drop_oldest_idle(others, peer)
    return True


def _drop_oldest_idle(candidates: list[Any], peer: str) -> bool:
    for old in candidates:  # a set keeps no order; any idle one will do
        if _idle(old) and old.transport is not None and not old.transport.is_closing():
            _say(f"evict:{peer}", "dropped an idle connection to make room for %s", peer)
            old.connections.discard(old)
            old.transport.abort()
            return True
    return False


# -- requests -------------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


class _Throttle:
    """A token bucket of failed authentications per peer address."""

    def __init__(self, burst: int, per_second: float) -> None:
        self.burst = float(burst)
        self.per_second = per_second
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, peer: str, now: float) -> float:
        level, at = self._buckets.get(peer, (self.burst, now))
        return min(self.burst, level + (now - at) * self.per_second)

    def exhausted(self, peer: str) -> bool:
        return self._level(peer, time.monotonic()) < 1.0

    def fail(self, peer: str) -> None:
        now = time.monotonic()
        if len(self._buckets) > 50_000:
            self._buckets.clear()
        self._buckets[peer] = (max(0.0, self._level(peer, now) - 1.0), now)


class GuardMiddleware:
    """Authenticate, bound the body and count requests before the application sees them.

    Args:
        app: the FastAPI application.
        identify: token to identity (None: unknown).
        known: True when a token was valid before (looked up even while its peer is
            throttled); no database work.
        limits: the bounds.
        failed: told of each failed or throttled authentication, with the peer's address
            (the audit log counts them).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        identify: Callable[[str], Awaitable[Identity | None]],
        known: Callable[[str], bool],
        limits: Limits,
        failed: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.identify = identify
        self.known = known
        self.failed = failed
        self.limits = limits
        self.throttle = _Throttle(limits.auth_failures_burst, limits.auth_failures_per_second)
        self.requests = 0
        self.waiters = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        peer = (scope.get("client") or ("?", 0))[0]
        token = _bearer(scope)
        if token is not None and self.throttle.exhausted(peer) and not self.known(token):
            # Outside the request count: a throttled peer's attempts take no slot.
            await asyncio.sleep(self.limits.auth_tarpit)
            _say(f"throttle:{peer}", "throttled failed authentications from %s", peer)
            await _answer(
                send, 429, "too_many_failures", "too many failed authentications; retry later", 5
            )
            return
        waiting = _is_long_poll(scope)
        if scope["path"].startswith("/v1/exporter/"):
            # Heartbeats and registrations (one stream per exporter) never wait behind
            # client load; unknown tokens are still throttled like anyone's.
            await self._guarded(scope, receive, send, peer)
            return
        if waiting and self.waiters >= self.limits.max_waiters:
            _say(f"busy:{peer}", "refused a long-poll from %s: too many waiting", peer)
            await _answer(send, 503, "busy", "too many requests wait; retry later", retry=1)
            return
        if not waiting and self.requests >= self.limits.max_requests:
            _say(f"busy:{peer}", "refused a request from %s: too many in progress", peer)
            await _answer(send, 503, "busy", "the controller is busy; retry later", retry=1)
            return
        if waiting:
            self.waiters += 1
        else:
            self.requests += 1
        try:
            await self._guarded(scope, receive, send, peer)
        finally:
            if waiting:
                self.waiters -= 1
            else:
                self.requests -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, peer: str) -> None:
        identity = await self._authenticate(scope, send, peer)
        if identity is None:
            return
        scope.setdefault("state", {})["identity"] = identity
        limit = self.limits.body_limit(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        try:
            body = await _read_body(receive, limit, self.limits.body_timeout)
        except _BodyTooLarge:
            await _too_large(send, limit)
            return
        except _BodyTooSlow:
            _say(f"slowbody:{peer}", "dropped a request from %s: body too slow", peer)
            await _answer(
                send,
                408,
                "timeout",
                f"the request body did not arrive within {self.limits.body_timeout:g} s",
            )
            return
        if body is None:
            return  # the peer went away
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _authenticate(self, scope: Scope, send: Send, peer: str) -> Identity | None:
        token = _bearer(scope)
        if token is None:
            await _answer(
                send,
                401,
                "unauthorized",
                "missing bearer token: send 'Authorization: Bearer <token>'",
            )
            return None
        if self.throttle.exhausted(peer) and not self.known(token):
            _say(f"throttle:{peer}", "throttled failed authentications from %s", peer)
            await self._failed(peer)
            await _answer(
                send, 429, "too_many_failures", "too many failed authentications; retry later", 5
            )
            return None
        try:
            found = await self.identify(token)
        except ControllerError as exc:
            await _answer(send, exc.status, exc.code, exc.message)
            return None
        if found is None:
            self.throttle.fail(peer)
            _say(f"auth:{peer}", "failed authentication from %s", peer)
            await self._failed(peer)
            await _answer(send, 401, "unauthorized", "unknown or revoked token")
        return found

    async def _failed(self, peer: str) -> None:
        if self.failed is not None:
            await self.failed(peer)


async def _read_body(receive: Receive, limit: int, seconds: float) -> bytes | None:
    """The whole body (at most ``limit`` bytes, within ``seconds``); None if the peer left."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _BodyTooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise _BodyTooSlow from None


def _is_long_poll(scope: Scope) -> bool:
    query = scope.get("query_string", b"")
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"wait":
            try:
                return float(value) > 0
            except ValueError:
                return False
    return False


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _bearer(scope: Scope) -> str | None:
    raw = _header(scope, b"authorization")
    if raw is None:
        return None
    scheme, _, token = raw.decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 1024:
        return None
    return token


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


async def _too_large(send: Send, limit: int) -> None:
    await _answer(
        send, 413, "too_large", f"the request body is larger than this route's {limit} bytes"
    )


async def _answer(
    send: Send, status: int, code: str, message: str, retry: int | None = None
) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry is not None:
        headers.append((b"retry-after", str(retry).encode()))
    if status in (408, 413):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
