"""ForegroundDriverTest / BackgroundDriverTest, the pytest plugin's fixtures, the public names.

The driver under test has what the tutorial's has: a timer, a child node, a service it uses.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import pytest

import tether.testing
from tether import Driver, Interface, export
from tether.driver import ServiceNotFound, StartArgs
from tether.errors import LifecycleError
from tether.testing import (
    BackgroundDispatcher,
    BackgroundDriverTest,
    DriverRuntime,
    DriverTestConfig,
    DriverUnderTest,
    EmptyEnvironment,
    ForegroundDriverTest,
    IncomingDirectory,
    TestNode,
)


class Thermometer(Interface):
    name = "test.thermometer"

    @abstractmethod
    async def read(self) -> float: ...


class Monitor(Interface):
    name = "test.monitor"

    @abstractmethod
    async def samples(self) -> list[float]: ...

    @abstractmethod
    async def sample_now(self) -> float: ...


class FakeThermometer:
    def __init__(self) -> None:
        self.value = 20.0
        self.reads = 0

    async def read(self) -> float:
        self.reads += 1
        return self.value


class LabEnvironment:
    def __init__(self) -> None:
        self.thermometer = FakeThermometer()

    def serve(self, incoming: IncomingDirectory) -> None:
        incoming.add_service(Thermometer, self.thermometer)


class TemperatureMonitor(Monitor, Driver):
    """Reads the thermometer every ``period`` seconds; offers the samples; adds a child."""

    period: float = 60.0

    async def start(self) -> None:
        self.thermometer = self.incoming.connect(Thermometer)
        self.history: list[float] = []
        self.display = self.node.add_child("display", properties={"unit": "C"})
        self.poller = asyncio.get_running_loop().create_task(self.poll())

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            self.history.append(await self.thermometer.read())

    async def prepare_stop(self) -> None:
        self.poller.cancel()

    @export
    async def samples(self) -> list[float]:
        return list(self.history)

    @export
    async def sample_now(self) -> float:
        value = await self.thermometer.read()
        self.history.append(value)
        return value


class FailingStart(Driver):
    async def start(self) -> None:
        raise RuntimeError("cannot start")


CONFIG = DriverTestConfig(TemperatureMonitor, environment=LabEnvironment)


def children(node: TestNode) -> dict[str, dict[str, str]]:
    return {name: child.properties for name, child in node.children.items()}


# -- ForegroundDriverTest -----------------------------------------------------------------------


def test_foreground_driver_with_timer_child_and_service() -> None:
    with ForegroundDriverTest(CONFIG) as test:
        test.start_driver()
        rt = test.runtime
        assert test.run_in_node_context(children) == {"display": {"unit": "C"}}
        rt.advance_time(60 * 5)
        assert test.driver.history == [20.0] * 5  # touched directly: it lives on the foreground

        def warm_up(env: LabEnvironment) -> None:
            env.thermometer.value = 25.0

        test.run_in_environment_context(warm_up)
        rt.run_with_timeout(120)
        assert test.driver.history[-2:] == [25.0, 25.0]
        assert rt.run_to_completion(test.connect(Monitor).samples()) == test.driver.history
        assert test.run_in_environment_context(lambda env: env.thermometer.reads) == 7
        test.stop_driver()
        test.shutdown_and_destroy_driver()
        assert test.run_in_node_context(children) == {}  # the driver's children went with it
    assert DriverRuntime.current() is None  # it made the runtime, it closed it


def test_foreground_restart_and_customized_start_args() -> None:
    with ForegroundDriverTest(CONFIG) as test:
        test.start_driver()
        first = test.driver
        test.stop_driver()
        test.shutdown_and_destroy_driver()
        seen: list[StartArgs] = []

        def customize(args: StartArgs) -> StartArgs:
            seen.append(args)
            args.config = {"variant": "b"}
            return args

        test.start_driver(customize)
        assert test.driver is not first
        assert seen[0].config == {"variant": "b"}
        assert test.run_in_node_context(children) == {"display": {"unit": "C"}}
        test.runtime.advance_time(60)
        assert test.runtime.run_to_completion(test.connect(Monitor).samples()) == [20.0]


def test_foreground_wrong_order_raises() -> None:
    with ForegroundDriverTest(CONFIG) as test:
        for call in (test.stop_driver, test.shutdown_and_destroy_driver):
            with pytest.raises(LifecycleError, match="in state idle: start_driver"):
                call()
        with pytest.raises(LifecycleError, match="in state idle"):
            test.connect(Monitor)
        with pytest.raises(LifecycleError, match=r"ForegroundDriverTest.driver\(\)"):
            _ = test.driver
        test.start_driver()
        with pytest.raises(LifecycleError, match="in state started: stop_driver"):
            test.start_driver()
        with pytest.raises(LifecycleError, match="in state started: stop_driver"):
            test.shutdown_and_destroy_driver()
        with pytest.raises(ServiceNotFound):
            test.connect(Thermometer)
        test.stop_driver()
        with pytest.raises(LifecycleError, match="in state stopped: shutdown_and_destroy"):
            test.stop_driver()
    assert "closed" in repr(test)


def test_a_failed_start_leaves_only_shutdown() -> None:
    with ForegroundDriverTest(DriverTestConfig(FailingStart)) as test:
        with pytest.raises(RuntimeError, match="cannot start"):
            test.start_driver()
        with pytest.raises(LifecycleError, match="start failed"):
            test.stop_driver()
        test.shutdown_and_destroy_driver()
        test.start_driver.__self__  # noqa: B018 - the fixture stays usable
        with pytest.raises(RuntimeError):
            test.start_driver()


def test_run_on_background_dispatcher_sync_pumps_the_foreground() -> None:
    with ForegroundDriverTest(CONFIG) as test:
        test.start_driver()
        test.runtime.advance_time(60)
        proxy = test.connect(Monitor)

        def blocking_client() -> tuple[list[float], str]:
            # A blocking call into the foreground driver, from a background thread.
            future = asyncio.run_coroutine_threadsafe(
                proxy.samples(), test.runtime.foreground_dispatcher.loop
            )
            return future.result(), threading.current_thread().name

        samples, thread = test.run_on_background_dispatcher_sync(blocking_client)
        assert samples == [20.0]
        assert thread.startswith("tether-background")


def test_an_async_environment_serve_is_awaited() -> None:
    class AsyncEnvironment(LabEnvironment):
        async def serve(self, incoming: IncomingDirectory) -> None:  # type: ignore[override]
            await asyncio.sleep(0)
            super().serve(incoming)

    with ForegroundDriverTest(DriverTestConfig(TemperatureMonitor, AsyncEnvironment)) as test:
        test.start_driver()
        test.runtime.advance_time(60)
        assert test.driver.history == [20.0]


def test_a_borrowed_runtime_stays_open() -> None:
    with DriverRuntime() as runtime:
        with ForegroundDriverTest(
            DriverTestConfig(TemperatureMonitor, LabEnvironment), runtime=runtime
        ):
            pass
        assert DriverRuntime.current() is runtime
        runtime.run_until_idle()


# -- BackgroundDriverTest -----------------------------------------------------------------------


def test_background_driver_with_timer_child_and_service() -> None:
    config = DriverTestConfig(TemperatureMonitor, LabEnvironment, {"period": 3600})
    with BackgroundDriverTest(config) as test:
        test.start_driver()
        rt = test.runtime
        assert test.run_in_node_context(children) == {"display": {"unit": "C"}}

        def driver_thread(driver: TemperatureMonitor) -> str:
            return threading.current_thread().name

        assert test.run_in_driver_context(driver_thread).startswith("tether-background")
        monitor = test.connect(Monitor)
        assert rt.run_to_completion(monitor.sample_now()) == 20.0
        assert rt.run_to_completion(monitor.samples()) == [20.0]
        assert test.run_in_driver_context(lambda d: list(d.history)) == [20.0]
        assert test.run_in_environment_context(lambda env: env.thermometer.reads) == 1
        test.stop_driver()
        test.shutdown_and_destroy_driver()
        with pytest.raises(LifecycleError, match="in state idle"):
            test.run_in_driver_context(driver_thread)


def test_a_background_drivers_timer_follows_the_virtual_clock() -> None:
    with BackgroundDriverTest(CONFIG) as test:
        test.start_driver()
        test.runtime.advance_time(60 * 5)
        assert test.run_in_driver_context(lambda d: list(d.history)) == [20.0] * 5
        assert test.run_in_environment_context(lambda env: env.thermometer.reads) == 5
        assert test.runtime.now() == 300.0


def test_starting_background_drivers_leaves_the_clock_alone() -> None:
    # The driver's start hops to the node's dispatcher (add_child) while the foreground has a
    # timer pending: at no moment may everything look settled, or the clock would jump.
    with DriverRuntime() as runtime, BackgroundDriverTest(CONFIG, runtime=runtime) as test:
        fired: list[float] = []
        runtime.foreground_dispatcher.loop.call_later(5, lambda: fired.append(runtime.now()))
        for _ in range(10):
            test.start_driver()
            test.stop_driver()
            test.shutdown_and_destroy_driver()
        assert (fired, runtime.now()) == ([], 0.0)


def test_background_failed_start_and_bad_config() -> None:
    with BackgroundDriverTest(DriverTestConfig(FailingStart)) as test:
        with pytest.raises(RuntimeError, match="cannot start"):
            test.start_driver()
        test.shutdown_and_destroy_driver()
    bad = DriverTestConfig(TemperatureMonitor, driver_config={"period": "often"})
    with BackgroundDriverTest(bad) as test:
        with pytest.raises(Exception, match="period"):
            test.start_driver()
        test.start_driver.__self__  # noqa: B018


def test_the_default_environment_offers_nothing() -> None:
    EmptyEnvironment().serve(None)  # type: ignore[arg-type]
    with (
        BackgroundDriverTest(DriverTestConfig(TemperatureMonitor)) as test,
        pytest.raises(ServiceNotFound),
    ):
        test.start_driver()


# -- the pytest plugin --------------------------------------------------------------------------


def test_plugin_fixtures_share_one_runtime(
    driver_runtime: DriverRuntime,
    foreground_driver_test: Callable[[DriverTestConfig[Any]], ForegroundDriverTest[Any]],
    background_driver_test: Callable[[DriverTestConfig[Any]], BackgroundDriverTest[Any]],
    driver_under_test: Callable[..., DriverUnderTest[Any]],
    background_dispatcher: Callable[[], BackgroundDispatcher],
) -> None:
    fg = foreground_driver_test(CONFIG)
    bg = background_driver_test(CONFIG)
    assert fg.runtime is bg.runtime is driver_runtime
    fg.start_driver()
    bg.start_driver()  # left running: the fixtures stop it at teardown
    driver_runtime.advance_time(60)
    assert fg.driver.history == [20.0]
    dut = driver_under_test(TemperatureMonitor, period=1)
    args, server, _ = TestNode("extra").create_start_args_and_serve()
    assert isinstance(background_dispatcher(), BackgroundDispatcher)
    from tether.testing import TestEnvironment

    env = TestEnvironment()
    env.initialize(server)
    env.incoming_directory().add_service(Thermometer, FakeThermometer())
    driver_runtime.run_to_completion(dut.start(args))


def test_the_plugin_module_imports_without_side_effects() -> None:
    before = {t.ident for t in threading.enumerate()}
    module = importlib.reload(importlib.import_module("tether.testing.pytest_plugin"))
    assert {t.ident for t in threading.enumerate()} == before
    assert DriverRuntime.current() is None
    assert set(module.__all__) >= {"driver_runtime", "foreground_driver_test"}


def test_public_names() -> None:
    assert set(tether.testing.__all__) == {
        "LOG_SINK_PROTOCOL",
        "BackgroundDispatcher",
        "BackgroundDriverTest",
        "ComponentDirectory",
        "Dispatcher",
        "DispatcherBound",
        "DriverRuntime",
        "DriverTestConfig",
        "DriverUnderTest",
        "DriverUnderTestState",
        "EmptyEnvironment",
        "EnvironmentType",
        "ForegroundDispatcher",
        "ForegroundDriverTest",
        "IncomingDirectory",
        "IncomingDirectoryServer",
        "LogSink",
        "OutgoingDirectoryClient",
        "StartArgsResult",
        "TestEnvironment",
        "TestNode",
        "current_dispatcher",
        "serve",
        # Record and replay (docs/testing.md).
        "Recorder",
        "RecordingTarget",
        "ReplayMismatch",
        "ReplayTarget",
        "ReplayedTrees",
        "load_recording",
        "record",
        "replay",
        "unrecorded",
    }
    for name in tether.testing.__all__:
        assert getattr(tether.testing, name) is not None
