"""DriverUnderTest: lifecycle order, failed starts, the context manager, virtual time."""

from __future__ import annotations

import asyncio
import gc
import time
from abc import abstractmethod
from collections.abc import Iterator

import pytest

from tether import Driver, Interface, export
from tether.errors import ConfigError, LifecycleError
from tether.testing import (
    DispatcherBound,
    DriverRuntime,
    DriverUnderTest,
    DriverUnderTestState,
    TestNode,
)


class Lamp(Driver):
    brightness: int = 50

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def prepare_stop(self) -> None:
        self.calls.append("prepare_stop")

    def stop(self) -> None:
        self.calls.append("stop")

    @export
    async def level(self) -> int:
        return self.brightness


class Broken(Lamp):
    async def start(self) -> None:
        await super().start()
        raise OSError("no lamp")


class Warmup(Lamp):
    """Waits 30 s before it is ready, then blinks every second."""

    async def start(self) -> None:
        await asyncio.sleep(30)
        self.blinks = 0
        self.blinker = asyncio.get_running_loop().create_task(self.blink())

    async def blink(self) -> None:
        while True:
            await asyncio.sleep(1)
            self.blinks += 1

    async def prepare_stop(self) -> None:
        self.blinker.cancel()
        await super().prepare_stop()


@pytest.fixture
def rt() -> Iterator[DriverRuntime]:
    with DriverRuntime() as runtime:
        yield runtime


def start_args() -> object:
    return TestNode("lamp").create_start_args_and_serve().start_args


def test_the_full_lifecycle(rt: DriverRuntime) -> None:
    dut = DriverUnderTest(Lamp, brightness=80)
    assert dut.state is DriverUnderTestState.CREATED
    task = dut.start(start_args())  # type: ignore[arg-type]
    assert isinstance(task, asyncio.Task)
    assert dut.state is DriverUnderTestState.STARTING
    rt.run_to_completion(task)
    assert dut.state is DriverUnderTestState.STARTED
    assert rt.run_to_completion(dut.driver.level()) == 80
    rt.run_to_completion(dut.prepare_stop())
    assert dut.state is DriverUnderTestState.PREPARED
    dut.stop()
    assert dut.state is DriverUnderTestState.STOPPED
    assert dut.driver.calls == ["start", "prepare_stop", "stop"]
    assert "stopped" in repr(dut)


@pytest.mark.parametrize(
    ("steps", "call", "message"),
    [
        ([], "stop", r"stop\(\) is not allowed in state created: the driver was never started"),
        ([], "prepare_stop", r"prepare_stop\(\) is not allowed in state created"),
        (["start"], "start", r"start\(\) is not allowed in state started: .*started once"),
        (["start"], "stop", r"stop\(\) is not allowed in state started: call prepare_stop"),
        (["start", "prepare_stop", "stop"], "stop", r"stop\(\) is not allowed in state stopped"),
    ],
)
def test_wrong_order_names_method_and_state(
    rt: DriverRuntime, steps: list[str], call: str, message: str
) -> None:
    dut = DriverUnderTest(Lamp)
    for step in steps:
        if step == "start":
            rt.run_to_completion(dut.start(start_args()))  # type: ignore[arg-type]
        elif step == "prepare_stop":
            rt.run_to_completion(dut.prepare_stop())
        else:
            dut.stop()
    with pytest.raises(LifecycleError, match=message):
        if call == "start":
            dut.start(start_args())  # type: ignore[arg-type]
        else:
            getattr(dut, call)()
    dut.close()


def test_calls_while_a_step_is_in_flight(rt: DriverRuntime) -> None:
    dut = DriverUnderTest(Lamp)
    task = dut.start(start_args())  # type: ignore[arg-type]
    with pytest.raises(LifecycleError, match="start\\(\\) has not completed"):
        dut.prepare_stop()
    rt.run_to_completion(task)
    task = dut.prepare_stop()
    with pytest.raises(LifecycleError, match="prepare_stop\\(\\) has not completed"):
        dut.stop()
    rt.run_to_completion(task)
    dut.stop()


def test_a_failed_start_gets_no_prepare_stop(rt: DriverRuntime) -> None:
    dut = DriverUnderTest(Broken)
    with pytest.raises(OSError, match="no lamp"):
        rt.run_to_completion(dut.start(start_args()))  # type: ignore[arg-type]
    assert dut.state is DriverUnderTestState.START_FAILED
    with pytest.raises(LifecycleError, match="gets no prepare_stop"):
        dut.prepare_stop()
    dut.stop()
    assert dut.driver.calls == ["start", "stop"]


def test_bad_config_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match="brightness"):
        DriverUnderTest(Lamp, brightness="very")


def test_the_context_manager_stops_a_running_driver(rt: DriverRuntime) -> None:
    with DriverUnderTest(Lamp) as dut:
        rt.run_to_completion(dut.start(start_args()))  # type: ignore[arg-type]
    assert dut.driver.calls == ["start", "prepare_stop", "stop"]
    with DriverUnderTest(Lamp) as prepared:
        rt.run_to_completion(prepared.start(start_args()))  # type: ignore[arg-type]
        rt.run_to_completion(prepared.prepare_stop())
    assert prepared.driver.calls == ["start", "prepare_stop", "stop"]
    with DriverUnderTest(Lamp) as never:
        pass
    assert never.driver.calls == []
    assert never.state is DriverUnderTestState.STOPPED
    with DriverUnderTest(Broken) as failed, pytest.raises(OSError):
        rt.run_to_completion(failed.start(start_args()))  # type: ignore[arg-type]
    assert failed.driver.calls == ["start", "stop"]


def test_closing_with_a_start_in_flight_waits_for_it(rt: DriverRuntime) -> None:
    dut = DriverUnderTest(Warmup)
    dut.start(start_args())  # type: ignore[arg-type]
    dut.close()
    assert dut.driver.calls == ["prepare_stop", "stop"]
    assert rt.now() == 30.0


def test_a_driver_waiting_thirty_seconds_starts_in_microseconds(rt: DriverRuntime) -> None:
    began = time.perf_counter()
    with DriverUnderTest(Warmup) as dut:
        rt.run_to_completion(dut.start(start_args()))  # type: ignore[arg-type]
        assert rt.now() == 30.0
        rt.advance_time(10)
        assert dut.driver.blinks == 10
        rt.run_with_timeout(3600)
        assert dut.driver.blinks == 3610
    assert time.perf_counter() - began < 1.0


def test_without_a_runtime_it_runs_on_the_running_loop() -> None:
    async def main() -> list[str]:
        dut = DriverUnderTest(Lamp)
        await dut.start(start_args())  # type: ignore[arg-type]
        await dut.prepare_stop()
        dut.stop()
        return dut.driver.calls

    assert asyncio.run(main()) == ["start", "prepare_stop", "stop"]
    with pytest.raises(LifecycleError, match="needs a DriverRuntime or a running asyncio loop"):
        DriverUnderTest(Lamp).start(start_args())  # type: ignore[arg-type]


def test_it_belongs_to_the_dispatcher_that_made_it(rt: DriverRuntime) -> None:
    bg = rt.start_background_dispatcher()
    bound = DispatcherBound(bg, DriverUnderTest, Lamp)
    stray = bound.sync_call(lambda dut: dut)
    with pytest.raises(LifecycleError, match="must be called on dispatcher 'background-1'"):
        stray.start(start_args())
    rt.run_to_completion(bound.async_call(DriverUnderTest.start, start_args()))
    assert bound.sync_call(lambda dut: dut.state) is DriverUnderTestState.STARTED
    rt.run_to_completion(bound.async_call(DriverUnderTest.prepare_stop))
    bound.sync_call(DriverUnderTest.stop)
    bound.close()


class Dimmer(Interface):
    name = "test.dimmer"

    @abstractmethod
    async def level(self) -> int: ...


class DimmerLamp(Dimmer, Lamp):
    @export
    async def level(self) -> int:
        return self.brightness


def test_stop_withdraws_what_the_driver_offered(rt: DriverRuntime) -> None:
    args, _, outgoing = TestNode("lamp").create_start_args_and_serve()
    dut = DriverUnderTest(DimmerLamp, brightness=30)
    rt.run_to_completion(dut.start(args))
    assert outgoing.services() == [("test.dimmer", "default")]
    assert rt.run_to_completion(outgoing.connect(Dimmer).level()) == 30
    rt.run_to_completion(dut.prepare_stop())
    dut.stop()
    assert outgoing.services() == []


def test_a_whole_driver_test_leaves_no_cyclic_garbage() -> None:
    # Everything is freed by reference counting: a big test process pays no full collections.
    gc.collect()
    gc.disable()
    try:
        with DriverRuntime() as runtime:
            args, _, _ = TestNode("lamp").create_start_args_and_serve()
            dut = DriverUnderTest(DimmerLamp)
            runtime.run_to_completion(dut.start(args))
            assert runtime.run_to_completion(dut.driver.level()) == 50
            runtime.run_to_completion(dut.prepare_stop())
            dut.stop()
        del runtime, args, dut
        assert gc.collect() == 0
    finally:
        gc.enable()
