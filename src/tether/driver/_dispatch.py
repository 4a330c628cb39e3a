"""``CallDispatcher``: a driver tree's answer to the wire's calls (a ``CallHandler``).

The wire server asks it for the answer to every CALL and OPEN. Here, once: find the node,
check that its driver is running, find the exported method and check its kind, bind and
convert the arguments, and run the method (sync methods on a worker thread, so they never
block the loop). And the one table that maps what a driver raised to the error the caller
gets (:data:`ERROR_TABLE`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from tether.errors import (
    CallError,
    DriverError,
    DriverNotImplemented,
    DriverNotRunning,
    DriverTimeout,
    MethodNotFound,
)

from ._driver import Driver, DriverState
from ._export import ExportedMethod, MethodKind
from ._host import DriverHost

__all__ = ["ERROR_TABLE", "CallDispatcher"]

log = logging.getLogger("tether.driver.dispatch")
#: The longest exception message logged with its traceback.
_LOGGED_TEXT = 2000


def _not_implemented(exc: Exception, method: str) -> CallError:
    return DriverNotImplemented(
        str(exc) or f"{method} is not implemented", remote_type="NotImplementedError"
    )


def _timeout(exc: Exception, method: str) -> CallError:
    return DriverTimeout(str(exc) or f"{method} timed out", remote_type="TimeoutError")


def _driver_error(exc: Exception, method: str) -> CallError:
    text = str(exc)
    if len(text) <= _LOGGED_TEXT:
        log.info("driver method %s raised %s", method, type(exc).__name__, exc_info=exc)
    else:  # a traceback would repeat the whole message: the log gets it cut (the caller too)
        cut = f"{text[:_LOGGED_TEXT]}... [{len(text) - _LOGGED_TEXT} more characters]"
        log.info("driver method %s raised %s: %s", method, type(exc).__name__, cut)
    kind = type(exc)
    return DriverError(str(exc), remote_type=f"{kind.__module__}.{kind.__qualname__}")


#: What a driver raised -> the error its caller gets; the first matching row wins.
ERROR_TABLE: tuple[tuple[type[Exception], Callable[[Exception, str], CallError]], ...] = (
    (
        CallError,
        lambda exc, method: exc if isinstance(exc, CallError) else _driver_error(exc, method),
    ),
    (NotImplementedError, _not_implemented),
    (TimeoutError, _timeout),
    (Exception, _driver_error),
)


class CallDispatcher:
    """Answers calls on the drivers of one :class:`DriverHost` (see the module docstring)."""

    __slots__ = ("host",)

    def __init__(self, host: DriverHost) -> None:
        self.host = host

    def _find(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[Driver, ExportedMethod, tuple[tuple[Any, ...], dict[str, Any]]]:
        driver = self.host.lookup(node)
        exported = type(driver).exported().get(method)
        if exported is None:
            raise MethodNotFound(
                f"{type(driver).__name__} has no exported method {method!r}", method=method
            )
        if driver.lifecycle is not DriverState.RUNNING:
            raise DriverNotRunning(
                f"{type(driver).__name__}.{method}: the driver is not running "
                f"(state: {driver.lifecycle.value})"
            )
        return driver, exported, exported.bind(args, kwargs)

    def call(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Awaitable[Any] | AsyncIterator[Any]:
        """Start a unary or streaming call (see ``tether.wire.CallHandler``).

        Raises:
            NodeNotFound, MethodNotFound, DriverNotRunning, InvalidArgument.
        """
        driver, exported, (a, k) = self._find(node, method, args, kwargs)
        kind = exported.kind
        if kind is MethodKind.BYTE_STREAM:
            raise MethodNotFound(f"{method!r} is a byte stream; open it with stream()")
        fn = getattr(driver, exported.name)
        if exported.is_async:
            return fn(*a, **k)  # type: ignore[no-any-return]
        if kind is MethodKind.UNARY:
            return asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *a, **k))
        return _iterate_in_thread(fn(*a, **k))

    def open_stream(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> AbstractAsyncContextManager[Any]:
        """Open a byte stream (see ``tether.wire.CallHandler``).

        Raises:
            NodeNotFound, MethodNotFound, DriverNotRunning, InvalidArgument.
        """
        driver, exported, (a, k) = self._find(node, method, args, kwargs)
        if exported.kind is not MethodKind.BYTE_STREAM:
            raise MethodNotFound(f"{method!r} is not a byte stream; call it instead")
        return getattr(driver, exported.name)(*a, **k)  # type: ignore[no-any-return]

    def wire_error(self, method: str, exc: Exception) -> CallError:
        """The error the caller gets for ``exc`` (the first row of :data:`ERROR_TABLE`)."""
        for kind, make in ERROR_TABLE:
            if isinstance(exc, kind):
                return make(exc, method)
        raise AssertionError("ERROR_TABLE ends with Exception")  # pragma: no cover


async def _iterate_in_thread(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    loop = asyncio.get_running_loop()
    sentinel = object()
    while True:
        item = await loop.run_in_executor(None, next, iterator, sentinel)
        if item is sentinel:
            return
        yield item
