"""``DriverUnderTest``: one driver's lifecycle, driven step by step by a test.

After DFv2's ``fdf_testing::DriverUnderTest``. ``start`` and ``prepare_stop`` are asynchronous
and return tasks (await them with ``DriverRuntime.run_to_completion``); ``stop`` is synchronous
and allowed only once ``prepare_stop`` completed, or after a failed start (a driver whose start
failed gets no ``prepare_stop``). Every allowed step is one row of ``_TRANSITIONS``; anything
else raises :class:`~tether.errors.LifecycleError` naming the method, the state and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import Enum
from types import TracebackType
from typing import Any, Generic, TypeVar

from tether.driver import Driver, ServiceNotFound, StartArgs
from tether.errors import LifecycleError

from ._dispatcher import Dispatcher, current_dispatcher

__all__ = ["DriverUnderTest", "DriverUnderTestState"]

D = TypeVar("D", bound=Driver)

log = logging.getLogger("tether.testing")


class DriverUnderTestState(Enum):
    """Where a :class:`DriverUnderTest` is in its lifecycle."""

    CREATED = "created"
    STARTING = "starting"
    STARTED = "started"
    START_FAILED = "start_failed"
    STOPPING = "stopping"
    PREPARED = "prepared"
    STOPPED = "stopped"


_S = DriverUnderTestState

#: (method, state) -> state entered when the method is called
_TRANSITIONS: dict[tuple[str, DriverUnderTestState], DriverUnderTestState] = {
    ("start", _S.CREATED): _S.STARTING,
    ("prepare_stop", _S.STARTED): _S.STOPPING,
    ("stop", _S.PREPARED): _S.STOPPED,
    ("stop", _S.START_FAILED): _S.STOPPED,
}

_HINTS: dict[tuple[str, DriverUnderTestState], str] = {
    ("start", _S.STARTING): "a driver is started once",
    ("start", _S.STARTED): "a driver is started once",
    ("prepare_stop", _S.CREATED): "start the driver first",
    ("prepare_stop", _S.STARTING): "start() has not completed; await it with run_to_completion()",
    ("prepare_stop", _S.START_FAILED): (
        "a driver whose start failed gets no prepare_stop (as in DFv2); call stop()"
    ),
    ("stop", _S.CREATED): "the driver was never started",
    ("stop", _S.STARTING): "start() has not completed; await it with run_to_completion()",
    ("stop", _S.STARTED): "call prepare_stop() and await it with run_to_completion() first",
    ("stop", _S.STOPPING): "prepare_stop() has not completed; await it with run_to_completion()",
}


class DriverUnderTest(Generic[D]):
    """Makes a ``driver_class(**config)`` and runs its lifecycle when the test says so.

    The driver belongs to the dispatcher that made the ``DriverUnderTest`` (the foreground,
    from the test thread; a background dispatcher inside :class:`DispatcherBound`); without a
    runtime it uses the running asyncio loop, so it also works in plain asyncio tests.

    Used as a context manager, it stops the driver on exit if that has not happened: a driver
    still running on the foreground gets ``prepare_stop`` first (pumped to completion).

    Raises:
        ConfigError: the config is invalid (from the driver's constructor).
    """

    def __init__(self, driver_class: type[D], /, **config: Any) -> None:
        self._driver: D = driver_class(**config)
        self._dispatcher: Dispatcher | None = current_dispatcher()
        self._state = _S.CREATED
        self._task: asyncio.Task[None] | None = None

    @property
    def driver(self) -> D:
        """The driver instance (touch it only on its dispatcher)."""
        return self._driver

    @property
    def state(self) -> DriverUnderTestState:
        """The lifecycle state."""
        return self._state

    def _enter(self, method: str) -> None:
        dispatcher = self._dispatcher
        if dispatcher is not None and not dispatcher.is_current() and not dispatcher.shut_down:
            raise LifecycleError(
                f"DriverUnderTest.{method}() must be called on dispatcher {dispatcher.name!r}, "
                f"where the driver lives (wrap it in DispatcherBound to reach it from elsewhere)"
            )
        state = _TRANSITIONS.get((method, self._state))
        if state is None:
            hint = _HINTS.get((method, self._state), f"{method}() was called already")
            raise LifecycleError(
                f"DriverUnderTest.{method}() is not allowed in state {self._state.value}: {hint}"
            )
        self._state = state

    def _loop(self, method: str) -> asyncio.AbstractEventLoop:
        if self._dispatcher is not None:
            return self._dispatcher.loop
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            raise LifecycleError(
                f"DriverUnderTest.{method}() needs a DriverRuntime or a running asyncio loop"
            ) from None

    def start(self, start_args: StartArgs) -> asyncio.Task[None]:
        """Start the driver with ``start_args``.

        Returns:
            A task that finishes when the driver's ``start`` did (raising its error if it
            failed); await it with ``run_to_completion``.

        Raises:
            LifecycleError: called twice, or from another dispatcher's thread.
        """
        loop = self._loop("start")
        self._enter("start")
        self._task = loop.create_task(self._start(start_args))
        return self._task

    async def _start(self, start_args: StartArgs) -> None:
        try:
            await self._driver._run_start(start_args)
        except BaseException:
            self._state = _S.START_FAILED
            raise
        self._state = _S.STARTED

    def prepare_stop(self) -> asyncio.Task[None]:
        """Run the driver's ``prepare_stop``.

        Returns:
            A task; await it with ``run_to_completion`` before calling :meth:`stop`.

        Raises:
            LifecycleError: the driver is not started, or its start failed.
        """
        loop = self._loop("prepare_stop")
        self._enter("prepare_stop")
        self._task = loop.create_task(self._prepare_stop())
        return self._task

    async def _prepare_stop(self) -> None:
        try:
            await self._driver._run_prepare_stop()
        finally:
            self._state = _S.PREPARED

    def stop(self) -> None:
        """Run the driver's ``stop`` (synchronous), then withdraw what the driver offered in its
        outgoing directory.

        Raises:
            LifecycleError: ``prepare_stop`` has not completed (and start did not fail).
        """
        self._enter("stop")
        self._stop_driver()

    def _stop_driver(self) -> None:
        driver = self._driver
        try:
            driver._run_stop()
        finally:
            # A stopped driver offers nothing; this also breaks the reference cycle
            # driver -> start args -> outgoing directory -> driver.
            args = driver._start_args
            interfaces = driver._interfaces
            if args is not None and interfaces:
                with contextlib.suppress(ServiceNotFound):
                    if args.outgoing.get(interfaces[0]) is driver:
                        args.outgoing.remove_service(interfaces[0])

    def close(self) -> None:
        """Stop the driver if that has not happened; never raises a lifecycle error."""
        state = self._state
        if state in (_S.CREATED, _S.STOPPED):
            if state is _S.CREATED:
                self._state = _S.STOPPED
            return
        if state in (_S.PREPARED, _S.START_FAILED):
            self.stop()
            return
        dispatcher = self._dispatcher
        runtime = dispatcher._runtime if dispatcher is not None else None
        on_foreground = (
            runtime is not None
            and dispatcher is runtime.foreground_dispatcher
            and dispatcher.is_current()
            and not dispatcher.shut_down
            and not dispatcher.loop.is_running()
        )
        if runtime is not None and on_foreground:
            if state is _S.STARTED:
                runtime.run_to_completion(self.prepare_stop())
            elif self._task is not None:
                runtime.run_to_completion(_finished(self._task))
            self.close()
            return
        log.warning("DriverUnderTest: stopping %r without prepare_stop (state %s)", self, state)
        if self._task is not None:
            self._task.cancel()
        self._state = _S.STOPPED
        self._stop_driver()

    def __enter__(self) -> DriverUnderTest[D]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DriverUnderTest {type(self._driver).__qualname__} {self._state.value}>"


async def _finished(task: asyncio.Task[None]) -> None:
    """Wait for ``task`` without raising (its error was the test's to see)."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await task
