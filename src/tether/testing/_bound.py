"""``DispatcherBound``: an object that lives on one dispatcher, reached safely from others.

After Fuchsia's ``async_patterns::TestDispatcherBound``. The object is constructed, called and
destroyed on its dispatcher, in the order the calls were made (each is a post to the same loop).
The test holds only the wrapper, never the object, so it cannot touch it from the wrong thread.

Deadlock rule (see docs/testing.md): ``sync_call`` blocks the calling thread, so it raises
:class:`~tether.errors.DeadlockError` instead of blocking when

1. the caller runs on the target dispatcher itself (e.g. the test thread, which is the
   foreground's thread, sync-calling a foreground object), or
2. the target dispatcher's thread is blocked in a sync call that waits, directly or through other
   blocked dispatchers, on the caller's dispatcher, or
3. while it is blocked, the call (or a task it started) posts work to a dispatcher that is blocked
   waiting for it: the blocked ``sync_call`` then raises at once, or
4. the caller is the test thread, the call waits on a timer, and a foreground timer is due
   before it (the foreground cannot run while its thread is blocked).

A ``sync_call`` from the test thread whose work waits on background timers moves the virtual
clock to them, as a run call would (everything else must have settled first).

``async_call`` never blocks, so it never deadlocks: from the test thread, pass its future to
``DriverRuntime.run_to_completion`` (which pumps the foreground while waiting).
"""

from __future__ import annotations

import concurrent.futures
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from tether.errors import LifecycleError

from ._dispatcher import Dispatcher, _settle

__all__ = ["DispatcherBound"]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

_UNSET: Any = object()


class DispatcherBound(Generic[T]):
    """Owns an object of type ``T`` that lives on ``dispatcher``.

    ``DispatcherBound(dispatcher, factory, *args, **kwargs)`` posts ``factory(*args, **kwargs)``
    to the dispatcher; later calls are posted after it, so they always see the object.

    Args:
        dispatcher: where the object lives.
        factory: makes the object (a class or a function); runs on ``dispatcher``.
    """

    def __init__(
        self, dispatcher: Dispatcher, factory: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> None:
        self._dispatcher = dispatcher
        self._name = getattr(factory, "__qualname__", repr(factory))
        self._object: T = _UNSET
        self._error: BaseException | None = None
        self._destroyed = False
        self.constructed: concurrent.futures.Future[None] = dispatcher.submit(
            self._construct, factory, args, kwargs
        )
        """Done once the object exists (or its factory raised)."""

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher the object lives on."""
        return self._dispatcher

    def _construct(
        self, factory: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            self._object = factory(*args, **kwargs)
        except BaseException as exc:
            self._error = exc
            raise

    def _get(self) -> T:
        if self._error is not None:
            raise LifecycleError(
                f"DispatcherBound({self._name}): the factory raised {self._error!r}"
            ) from self._error
        if self._object is _UNSET:
            raise LifecycleError(f"DispatcherBound({self._name}) was destroyed")
        return self._object

    def _apply(self, fn: Callable[..., Any] | str, args: tuple[Any, ...]) -> Any:
        target = self._get()
        if isinstance(fn, str):
            return getattr(target, fn)(*args)
        return fn(target, *args)

    def _check(self, method: str) -> None:
        if self._destroyed:
            raise LifecycleError(
                f"DispatcherBound({self._name}).{method}(): the object was destroyed"
            )

    @overload
    def async_call(
        self, fn: Callable[Concatenate[T, P], Awaitable[R]], /, *args: Any
    ) -> concurrent.futures.Future[R]: ...
    @overload
    def async_call(
        self, fn: Callable[Concatenate[T, P], R], /, *args: Any
    ) -> concurrent.futures.Future[R]: ...
    @overload
    def async_call(self, fn: str, /, *args: Any) -> concurrent.futures.Future[Any]: ...

    def async_call(self, fn: Any, /, *args: Any) -> concurrent.futures.Future[Any]:
        """Call ``fn(obj, *args)`` (or ``obj.<fn>(*args)`` for a name) on the dispatcher.

        An awaitable result is awaited there. Never blocks.

        Returns:
            A thread-safe future of the result; from the test thread, wait for it with
            ``runtime.run_to_completion(future)``. Cancelling it cancels the call's task.

        Raises:
            LifecycleError: the object was destroyed.
        """
        self._check("async_call")
        return self._dispatcher.submit(self._apply, fn, args)

    @overload
    def sync_call(self, fn: Callable[Concatenate[T, P], Awaitable[R]], /, *args: Any) -> R: ...
    @overload
    def sync_call(self, fn: Callable[Concatenate[T, P], R], /, *args: Any) -> R: ...
    @overload
    def sync_call(self, fn: str, /, *args: Any) -> Any: ...

    def sync_call(self, fn: Any, /, *args: Any) -> Any:
        """Call ``fn(obj, *args)`` on the dispatcher and block until it returns its result.

        Once the dispatcher is shut down the call runs synchronously on the caller's thread.
        From the test thread, the virtual clock moves for the call's background timers.

        Raises:
            DeadlockError: blocking would never end (see the module's deadlock rule).
            LifecycleError: the object was destroyed.
            Exception: whatever ``fn`` raised.
        """
        self._check("sync_call")
        name = fn if isinstance(fn, str) else getattr(fn, "__name__", "fn")
        return self._dispatcher.call_sync(
            self._apply, fn, args, what=f"DispatcherBound({self._name}).sync_call({name})"
        )

    def destroy(self) -> concurrent.futures.Future[None]:
        """Destroy the object on its dispatcher: await/call its ``close()`` if it has one.

        Later calls raise LifecycleError; destroying twice is a no-op.

        Returns:
            A future that is done once the object is gone.
        """
        if self._destroyed:
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            _settle(done)
            return done
        self._destroyed = True
        return self._dispatcher.submit(self._destroy)

    def _destroy(self) -> Any:
        target, self._object = self._object, _UNSET
        close = getattr(target, "close", None) if target is not _UNSET else None
        return close() if callable(close) else None

    def close(self) -> None:
        """Destroy the object and wait until it is gone.

        From the test thread, a foreground object is destroyed while the foreground is pumped;
        elsewhere on the object's own thread it is destroyed right here (its ``close()`` must
        then be synchronous); from other threads the caller blocks, with the same deadlock
        checks as :meth:`sync_call`.
        """
        if self._destroyed:
            return
        dispatcher = self._dispatcher
        if not dispatcher.shut_down and dispatcher.is_current():
            runtime = dispatcher._runtime
            if dispatcher is runtime.foreground_dispatcher and not dispatcher.loop.is_running():
                runtime.run_to_completion(self.destroy())
                return
        if dispatcher.shut_down or dispatcher.is_current():
            self._destroyed = True
            result = self._destroy()
            if inspect.iscoroutine(result):
                result.close()
                raise LifecycleError(
                    f"DispatcherBound({self._name}).close(): the object's close() is async; "
                    f"use destroy() and wait for its future"
                )
            return
        self._destroyed = True
        dispatcher.call_sync(self._destroy, what=f"DispatcherBound({self._name}).close()")

    def __enter__(self) -> DispatcherBound[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "destroyed" if self._destroyed else "live"
        return f"<DispatcherBound {self._name} on {self._dispatcher.name!r} {state}>"
