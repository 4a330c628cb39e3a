"""What the server loop asks of whoever answers calls: the call-handler protocol.

The wire knows frames, streams and flow control; it does not know drivers. For every CALL
and OPEN it asks the session's :class:`CallHandler` for an answer and sends that answer back;
for every failure it asks the handler which :class:`~tether.errors.CallError` to send.
``tether.driver.CallDispatcher`` is the implementation over a driver tree (node lookup, the
running check, argument binding, threads for sync methods, the one table of driver errors).

Error payloads stay small whatever a handler puts in them: :func:`short_error` caps every
string it carries (an argument's repr in a message must not make an ERROR frame larger than
the peer accepts, nor fill the log).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from tether.errors import CallError

__all__ = [
    "MAX_ERROR_TEXT",
    "AsyncByteStream",
    "CallHandler",
    "short_error",
    "shorten",
]

#: Longest string (characters) an ERROR frame's message or detail carries.
MAX_ERROR_TEXT = 2000


class AsyncByteStream(Protocol):
    """What an ``export_stream`` method yields: ``receive()`` returns ``b""`` at EOF."""

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes: ...


class CallHandler(Protocol):
    """Answers the calls of one session (see the module docstring).

    Both methods raise :class:`~tether.errors.CallError` (or anything, which
    :meth:`wire_error` then maps) when the call cannot start: unknown node or method, a
    driver that is not running, bad arguments.
    """

    def call(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Awaitable[Any] | AsyncIterator[Any]:
        """Start a CALL: an awaitable of the result for a unary method, an async iterator
        of the items for a streaming one."""
        ...

    def open_stream(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> AbstractAsyncContextManager[AsyncByteStream]:
        """Start an OPEN: the byte stream's context manager."""
        ...

    def wire_error(self, method: str, exc: Exception) -> CallError:
        """The error to send for ``exc``, raised by ``method`` or while starting it."""
        ...


def shorten(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def short_error(error: CallError) -> dict[str, Any]:
    """``error.to_wire()`` with every string capped and anything else non-scalar dropped."""
    payload: dict[str, Any] = {}
    for key, value in error.to_wire().items():
        if isinstance(value, str):
            payload[key] = shorten(value)
        elif value is None or isinstance(value, bool | int | float):
            payload[key] = value
        else:
            payload[key] = shorten(repr(value), 200)
    return payload
