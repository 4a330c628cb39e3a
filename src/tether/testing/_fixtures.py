"""All-in-one driver test fixtures: ``ForegroundDriverTest`` and ``BackgroundDriverTest``.

After DFv2's ``fdf_testing::ForegroundDriverTest`` / ``BackgroundDriverTest``. Each fixture owns
(or borrows) a :class:`DriverRuntime` and puts the :class:`TestNode` and the environment
(a :class:`TestEnvironment` plus the test's own ``EnvironmentType``, whose ``serve`` adds the
fakes) on a background dispatcher. The driver lives on the foreground (``ForegroundDriverTest``:
the test touches it directly through ``.driver``) or on a background dispatcher of its own
(``BackgroundDriverTest``: the test reaches it with ``run_in_driver_context``).

Every call that has to wait for another dispatcher pumps the foreground meanwhile
(``run_to_completion``), so the fixtures never block the foreground and cannot deadlock on it.
The fixture's own lifecycle is a small table (``_ALLOWED``): calling in the wrong order raises
:class:`~tether.errors.LifecycleError` naming the method, the state and what to do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from tether.driver import Driver, Interface, ServiceDirectory, ServiceProxy, StartArgs
from tether.errors import LifecycleError

from ._bound import DispatcherBound
from ._dispatcher import BackgroundDispatcher
from ._driver_under_test import DriverUnderTest
from ._environment import IncomingDirectory, TestEnvironment
from ._node import IncomingDirectoryServer, OutgoingDirectoryClient, TestNode
from ._runtime import DriverRuntime

__all__ = [
    "BackgroundDriverTest",
    "DriverTestConfig",
    "EmptyEnvironment",
    "EnvironmentType",
    "ForegroundDriverTest",
]

D = TypeVar("D", bound=Driver)
T = TypeVar("T")


class EnvironmentType(Protocol):
    """What a driver test's environment class implements.

    It is constructed without arguments on the environment's background dispatcher; ``serve``
    adds its fakes to the driver's incoming directory (it may be ``async``). Keep the fakes as
    attributes, and reach them later with ``run_in_environment_context``.
    """

    def serve(self, incoming: IncomingDirectory) -> Awaitable[None] | None: ...


class EmptyEnvironment:
    """An environment offering nothing (the default)."""

    def serve(self, incoming: IncomingDirectory) -> None:
        """Add nothing."""


@dataclass(frozen=True)
class DriverTestConfig(Generic[D]):
    """What a driver test runs.

    Attributes:
        driver: the driver class under test.
        environment: makes the environment whose ``serve(incoming)`` adds the fakes.
        driver_config: keyword arguments for the driver's constructor (its typed config).
        node_name: the name of the node the driver is bound to.
        node_properties: that node's properties (the driver's ``labels``).
    """

    driver: type[D]
    environment: Callable[[], EnvironmentType] = EmptyEnvironment
    driver_config: Mapping[str, Any] = field(default_factory=dict)
    node_name: str = "root"
    node_properties: Mapping[str, str] = field(default_factory=dict)


class _State(Enum):
    IDLE = "idle"
    STARTED = "started"
    START_FAILED = "start_failed"
    STOPPED = "stopped"
    CLOSED = "closed"


_ALLOWED: dict[str, frozenset[_State]] = {
    "start_driver": frozenset({_State.IDLE}),
    "stop_driver": frozenset({_State.STARTED}),
    "shutdown_and_destroy_driver": frozenset({_State.STOPPED, _State.START_FAILED}),
    "connect": frozenset({_State.STARTED, _State.STOPPED}),
    "driver": frozenset({_State.STARTED, _State.STOPPED, _State.START_FAILED}),
    "run_in_driver_context": frozenset({_State.STARTED, _State.STOPPED, _State.START_FAILED}),
}

_HINTS: dict[_State, str] = {
    _State.IDLE: "start_driver() first",
    _State.STARTED: "stop_driver() first",
    _State.START_FAILED: "the start failed; shutdown_and_destroy_driver() next",
    _State.STOPPED: "shutdown_and_destroy_driver() next",
    _State.CLOSED: "the fixture is closed",
}


class _EnvironmentHost:
    """Lives on the environment dispatcher: the TestEnvironment and the test's environment."""

    def __init__(
        self, make: Callable[[], EnvironmentType], server: IncomingDirectoryServer
    ) -> None:
        self.test_environment = TestEnvironment()
        self.test_environment.initialize(server)
        self.environment = make()

    def serve(self) -> Awaitable[None] | None:
        return self.environment.serve(self.test_environment.incoming_directory())


class _DriverTest(Generic[D]):
    def __init__(
        self, config: DriverTestConfig[D], *, runtime: DriverRuntime | None = None
    ) -> None:
        self.config = config
        self._owns_runtime = runtime is None
        self.runtime = runtime if runtime is not None else DriverRuntime()
        self._state = _State.IDLE
        self._runs = 0
        try:
            self._env_dispatcher = self.runtime.start_background_dispatcher()
            self._node: DispatcherBound[TestNode] = DispatcherBound(
                self._env_dispatcher, TestNode, config.node_name, config.node_properties
            )
            args, server, outgoing = self.runtime.run_to_completion(
                self._node.async_call(TestNode.create_start_args_and_serve)
            )
            self._start_args: StartArgs = args
            self._outgoing: OutgoingDirectoryClient = outgoing
            self._environment: DispatcherBound[_EnvironmentHost] = DispatcherBound(
                self._env_dispatcher, _EnvironmentHost, config.environment, server
            )
            self.runtime.run_to_completion(self._environment.async_call(_EnvironmentHost.serve))
        except BaseException:
            if self._owns_runtime:
                self.runtime.close()
            raise

    # -- lifecycle ------------------------------------------------------------------------------

    def _require(self, method: str) -> None:
        if self._state not in _ALLOWED[method]:
            raise LifecycleError(
                f"{type(self).__name__}.{method}() is not allowed in state "
                f"{self._state.value}: {_HINTS[self._state]}"
            )

    def start_driver(
        self, customize: Callable[[StartArgs], StartArgs | None] | None = None
    ) -> None:
        """Start the driver and wait until its ``start`` finished.

        Args:
            customize: called with the start arguments before the start; may change them in
                place or return replacements (e.g. another ``config``).

        Raises:
            LifecycleError: a driver is started already.
            Exception: whatever the driver's ``start`` raised (then only
                :meth:`shutdown_and_destroy_driver` is allowed).
        """
        self._require("start_driver")
        args = self._start_args
        if self._runs:
            # A restart: a fresh outgoing directory, the same node and incoming directory.
            outgoing = ServiceDirectory()
            args = dataclasses.replace(args, outgoing=outgoing)
            self._outgoing = OutgoingDirectoryClient(outgoing)
        if customize is not None:
            args = customize(args) or args
        self._make_driver()
        self._runs += 1
        try:
            self._start(args)
        except BaseException:
            self._state = _State.START_FAILED
            raise
        self._state = _State.STARTED

    def stop_driver(self) -> None:
        """Run the driver's ``prepare_stop`` and wait for it.

        Raises:
            LifecycleError: the driver is not running.
        """
        self._require("stop_driver")
        self._state = _State.STOPPED
        self._prepare_stop()

    def shutdown_and_destroy_driver(self) -> None:
        """Run the driver's ``stop``, drop it, and remove the children it added to its node.

        Afterwards :meth:`start_driver` may start a new driver instance.

        Raises:
            LifecycleError: :meth:`stop_driver` was not called (and the start did not fail).
        """
        self._require("shutdown_and_destroy_driver")
        self._state = _State.IDLE
        try:
            self._destroy()
        finally:
            self.run_in_node_context(TestNode.remove_children)

    def connect(self, interface: type[Interface], instance: str = "default") -> ServiceProxy:
        """A proxy for a service the driver offers (its methods are awaitable: pass their
        coroutines to ``runtime.run_to_completion``).

        Raises:
            LifecycleError: no driver is running.
            ServiceNotFound: the driver offers nothing under that interface and instance.
        """
        self._require("connect")
        return self._outgoing.connect(interface, instance)

    def run_in_node_context(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        """Run ``fn(test_node, *args)`` on the node's dispatcher; return its result."""
        return self.runtime.run_to_completion(self._node.async_call(fn, *args))

    def run_in_environment_context(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        """Run ``fn(environment, *args)`` on the environment's dispatcher; return its result.

        ``environment`` is the instance of ``config.environment`` (holding the fakes).
        """

        def call(host: _EnvironmentHost, *rest: Any) -> Any:
            return fn(host.environment, *rest)

        return self.runtime.run_to_completion(self._environment.async_call(call, *args))

    def close(self) -> None:
        """Stop and destroy the driver if needed, destroy node and environment, and close the
        runtime if the fixture made it. Idempotent."""
        if self._state is _State.CLOSED:
            return
        if self.runtime._closed:
            self._state = _State.CLOSED
            return
        try:
            if self._state is _State.STARTED:
                self.stop_driver()
        finally:
            try:
                if self._state in (_State.STOPPED, _State.START_FAILED):
                    self.shutdown_and_destroy_driver()
            finally:
                self._state = _State.CLOSED
                try:
                    self._environment.close()
                    self._node.close()
                finally:
                    if self._owns_runtime:
                        self.runtime.close()

    def __enter__(self) -> _DriverTest[D]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config.driver.__qualname__} {self._state.value}>"

    # -- per placement --------------------------------------------------------------------------

    def _make_driver(self) -> None:
        raise NotImplementedError

    def _start(self, args: StartArgs) -> None:
        raise NotImplementedError

    def _prepare_stop(self) -> None:
        raise NotImplementedError

    def _destroy(self) -> None:
        raise NotImplementedError


class ForegroundDriverTest(_DriverTest[D]):
    """Driver on the foreground (touch it directly via :attr:`driver`); node and environment
    on a background dispatcher.

    Args:
        config: what to test.
        runtime: the runtime to use; by default the fixture makes one and closes it in
            :meth:`close`.
    """

    def __init__(
        self, config: DriverTestConfig[D], *, runtime: DriverRuntime | None = None
    ) -> None:
        self._dut: DriverUnderTest[D] | None = None
        self._helper: BackgroundDispatcher | None = None
        super().__init__(config, runtime=runtime)

    @property
    def driver(self) -> D:
        """The driver instance (it lives on the foreground, i.e. the test's thread)."""
        self._require("driver")
        assert self._dut is not None
        return self._dut.driver

    def run_on_background_dispatcher_sync(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        """Run ``fn(*args)`` on a helper background dispatcher while pumping the foreground.

        For code that blocks on the foreground driver (a sync call into it), which would
        deadlock on the test's thread.
        """
        if self._helper is None:
            self._helper = self.runtime.start_background_dispatcher()
        return self.runtime.run_to_completion(self._helper.submit(fn, *args))

    def _make_driver(self) -> None:
        self._dut = DriverUnderTest(self.config.driver, **self.config.driver_config)

    def _start(self, args: StartArgs) -> None:
        assert self._dut is not None
        self.runtime.run_to_completion(self._dut.start(args))

    def _prepare_stop(self) -> None:
        assert self._dut is not None
        self.runtime.run_to_completion(self._dut.prepare_stop())

    def _destroy(self) -> None:
        dut, self._dut = self._dut, None
        if dut is not None:
            dut.stop()


class BackgroundDriverTest(_DriverTest[D]):
    """Driver on a background dispatcher of its own (reach it with
    :meth:`run_in_driver_context`); node and environment on another.

    Args:
        config: what to test.
        runtime: the runtime to use; by default the fixture makes one and closes it in
            :meth:`close`.
    """

    def __init__(
        self, config: DriverTestConfig[D], *, runtime: DriverRuntime | None = None
    ) -> None:
        self._dut: DispatcherBound[DriverUnderTest[D]] | None = None
        super().__init__(config, runtime=runtime)
        self._driver_dispatcher = self.runtime.start_background_dispatcher()

    def run_in_driver_context(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        """Run ``fn(driver, *args)`` on the driver's dispatcher; return its result.

        Raises:
            LifecycleError: no driver was started.
        """
        self._require("run_in_driver_context")
        assert self._dut is not None

        def call(dut: DriverUnderTest[D], *rest: Any) -> Any:
            return fn(dut.driver, *rest)

        return self.runtime.run_to_completion(self._dut.async_call(call, *args))

    def _make_driver(self) -> None:
        dut: DispatcherBound[DriverUnderTest[D]] = DispatcherBound(
            self._driver_dispatcher,
            DriverUnderTest,
            self.config.driver,
            **self.config.driver_config,
        )
        try:
            self.runtime.run_to_completion(dut.constructed)
        except BaseException:
            dut.destroy()
            raise
        self._dut = dut

    def _start(self, args: StartArgs) -> None:
        assert self._dut is not None
        self.runtime.run_to_completion(self._dut.async_call(DriverUnderTest.start, args))

    def _prepare_stop(self) -> None:
        assert self._dut is not None
        self.runtime.run_to_completion(self._dut.async_call(DriverUnderTest.prepare_stop))

    def _destroy(self) -> None:
        dut, self._dut = self._dut, None
        if dut is not None:
            try:
                self.runtime.run_to_completion(dut.async_call(DriverUnderTest.stop))
            finally:
                self.runtime.run_to_completion(dut.destroy())
