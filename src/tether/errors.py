"""Every error tether raises, in one hierarchy rooted at :class:`TetherError`.

Foreign exceptions (OS, ssl, pydantic) are translated into these at a few boundaries
(``tether.wire`` for transports, ``tether.driver`` for validation), always with
``raise ... from exc`` so the original stays visible in tracebacks.

Errors that cross the wire are named by :attr:`CallError.code`; :func:`error_from_wire`
rebuilds the right class on the client.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationFailed",
    "CallCancelled",
    "CallError",
    "ClientNotAllowed",
    "ConfigError",
    "ConnectFailed",
    "ConnectionLost",
    "ControllerError",
    "DeadlockError",
    "DriverError",
    "DriverNotImplemented",
    "DriverNotRunning",
    "DriverTimeout",
    "HookFailed",
    "InterfaceVersionMismatch",
    "InvalidArgument",
    "LeaseEnded",
    "LeaseExpired",
    "LifecycleError",
    "LocalProtocolError",
    "MethodNotFound",
    "NodeNotFound",
    "ProtocolError",
    "RelayRefused",
    "RemoteProtocolError",
    "SelectorError",
    "SessionLost",
    "TetherConnectionError",
    "TetherError",
    "error_from_goaway",
    "error_from_wire",
    "goaway_code",
]


class TetherError(Exception):
    """Root of every error tether raises on purpose."""


class ConfigError(TetherError, ValueError):
    """A configuration (YAML file, driver fields, command line) is invalid.

    The message names where (file, line, key path) and what was expected.
    """


class HookFailed(TetherError):
    """An exporter hook (``before_lease``/``after_lease``) exited non-zero or timed out."""


class LifecycleError(TetherError, RuntimeError):
    """A method was called in a state that does not allow it (e.g. ``stop()`` before start)."""


class DeadlockError(TetherError, RuntimeError):
    """A blocking call would wait on the thread or dispatcher that has to answer it."""


class ClientNotAllowed(TetherError):
    """A typed driver client was used whose class is not allowed or not installed."""


class InterfaceVersionMismatch(TetherError):
    """The exporter offers an interface version the client class does not speak."""


# -- protocol ---------------------------------------------------------------------------------


class ProtocolError(TetherError):
    """The wire protocol was violated; the connection is unusable afterwards."""


class LocalProtocolError(ProtocolError):
    """This side tried to do something the protocol forbids (a bug in the caller)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids (garbage, oversize, wrong order)."""


# -- connections ------------------------------------------------------------------------------


class TetherConnectionError(TetherError, ConnectionError):
    """A connection could not be made or was lost."""


class ConnectFailed(TetherConnectionError):
    """Could not connect (refused, unreachable, TLS handshake failed, bad URL)."""


class AuthenticationFailed(ConnectFailed):
    """The peer rejected our credentials (bad or missing token)."""


class RelayRefused(ConnectFailed):
    """The controller's relay refused a dial. ``code`` says why: ``forbidden`` (not this lease's
    holder or exporter), ``lease_ended``, ``exporter_unavailable``, ``bad_preamble``..."""

    def __init__(self, message: str, *, code: str = "forbidden") -> None:
        super().__init__(message)
        self.code = code


class ConnectionLost(TetherConnectionError):
    """The connection died with calls in flight (peer killed, network cut, keepalive expired)."""


class SessionLost(ConnectionLost):
    """The exporter no longer has the session a client tree belongs to (it restarted, or it
    ended the session): the tree's nodes are gone, so every later call fails at once with
    this error instead of reaching a fresh session's drivers."""


class LeaseEnded(ConnectionLost):
    """The lease a client tree was reached through is over (released, revoked, ended by a
    hook...): every later call fails at once, without dialling the relay again.

    Attributes:
        lease_id: the lease's id (``None`` when only the message crossed the wire).
        state: what it became (``expired``, ``ended``, ``revoked``...).
        ended_at: when it ended, as the controller said (ISO 8601), or ``None``.
        reason: the controller's reason, when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        lease_id: str | None = None,
        state: str = "ended",
        ended_at: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.lease_id = lease_id
        self.state = state
        self.ended_at = ended_at
        self.reason = reason


class LeaseExpired(LeaseEnded):
    """The lease reached its end time: "the lease L expired at T"."""


# -- controller -------------------------------------------------------------------------------


class ControllerError(TetherError):
    """The controller refused a request. ``code`` and ``status`` become the HTTP error answer.

    ``details`` are extra JSON fields of the answer (e.g. ``position`` of a selector error).
    """

    def __init__(
        self, message: str, *, code: str = "bad_request", status: int = 400, **details: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details


class SelectorError(ControllerError, ValueError):
    """A label selector does not parse; ``details["position"]`` is the 0-based offset."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, code="bad_selector", status=422, **details)


# -- calls ------------------------------------------------------------------------------------


class CallError(TetherError):
    """A remote call failed. ``code`` names the kind of failure on the wire."""

    code: ClassVar[str] = "call_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class NodeNotFound(CallError):
    """The call named a node the session does not have."""

    code = "node_not_found"


class MethodNotFound(CallError, AttributeError):
    """The method does not exist or is not exported."""

    code = "method_not_found"


class InvalidArgument(CallError, TypeError):
    """An argument did not match the exported method's signature.

    ``parameter`` names the offending parameter (or ``None`` for arity errors).
    """

    code = "invalid_argument"

    @property
    def parameter(self) -> str | None:
        value = self.details.get("parameter")
        return value if isinstance(value, str) else None


class DriverError(CallError):
    """The driver method raised. ``remote_type`` is the exception's qualified type name."""

    code = "driver_error"

    @property
    def remote_type(self) -> str:
        return str(self.details.get("remote_type", "Exception"))

    def __str__(self) -> str:
        return f"{self.remote_type}: {self.message}"


class DriverNotImplemented(DriverError, NotImplementedError):
    """The driver raised ``NotImplementedError``."""

    code = "not_implemented"


class DriverTimeout(DriverError, TimeoutError):
    """The driver raised ``TimeoutError``."""

    code = "timeout"


class CallCancelled(CallError):
    """The call was cancelled (by the caller, or because the session ended)."""

    code = "cancelled"


class DriverNotRunning(CallError, LifecycleError):
    """The call reached a driver that is not running (not started yet, failed, or stopping)."""

    code = "not_running"


_BY_CODE: dict[str, type[CallError]] = {
    cls.code: cls
    for cls in (
        CallError,
        NodeNotFound,
        MethodNotFound,
        InvalidArgument,
        DriverError,
        DriverNotImplemented,
        DriverTimeout,
        CallCancelled,
        DriverNotRunning,
    )
}


def error_from_wire(payload: Any) -> CallError:
    """Rebuild a :class:`CallError` subclass from an ERROR frame's payload.

    Unknown codes become a plain :class:`CallError`; a malformed payload never raises here.
    """
    if not isinstance(payload, dict):
        return CallError(f"malformed error payload: {payload!r}")
    details = dict(payload)
    code = str(details.pop("code", "call_error"))
    message = str(details.pop("message", ""))
    cls = _BY_CODE.get(code, CallError)
    return cls(message, **{str(k): v for k, v in details.items()})


#: GOAWAY codes a server (or ``tether shell``'s relay proxy) refuses a handshake with, whose
#: error is more than "the connection was refused" (a subclass before its base).
_BY_GOAWAY: dict[str, type[TetherConnectionError]] = {
    "unauthenticated": AuthenticationFailed,
    "session_lost": SessionLost,
    "lease_expired": LeaseExpired,
    "lease_ended": LeaseEnded,
}


def error_from_goaway(code: str, message: str) -> TetherConnectionError:
    """The error for a handshake the peer refused with ``GOAWAY [code, message]``."""
    cls = _BY_GOAWAY.get(code)
    if cls is None:
        return ConnectFailed(f"server refused the connection: {code}: {message}")
    if issubclass(cls, LeaseEnded):
        return cls(message, state="expired" if cls is LeaseExpired else "ended")
    if cls is AuthenticationFailed:
        return cls(message or "authentication failed")
    return cls(message)


def goaway_code(error: BaseException) -> str | None:
    """The GOAWAY code that carries ``error`` through a refused handshake, if it has one."""
    for code, cls in _BY_GOAWAY.items():
        if isinstance(error, cls):
            return code
    return None
