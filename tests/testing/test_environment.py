"""TestEnvironment: the driver's incoming directory, protocols, the log sink, affinity."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from tether import Driver, Interface
from tether.driver import ServiceNotFound
from tether.errors import LifecycleError
from tether.testing import (
    LOG_SINK_PROTOCOL,
    DispatcherBound,
    DriverRuntime,
    DriverUnderTest,
    IncomingDirectory,
    LogSink,
    TestEnvironment,
    TestNode,
)


class Thermometer(Interface):
    name = "test.thermometer"

    async def read(self) -> float:
        raise NotImplementedError


class FakeThermometer:
    def __init__(self, value: float = 21.5) -> None:
        self.value = value
        self.threads: list[int] = []

    async def read(self) -> float:
        self.threads.append(threading.get_ident())
        return self.value


class Reader(Driver):
    instance: str = "default"

    async def start(self) -> None:
        self.thermometer = self.incoming.connect(Thermometer, self.instance)
        self.logger.info("connected to %s", self.instance)

    async def read(self) -> float:
        return float(await self.thermometer.read())


@pytest.fixture
def rt() -> Iterator[DriverRuntime]:
    with DriverRuntime() as runtime:
        yield runtime


def test_services_by_interface_and_instance(rt: DriverRuntime) -> None:
    args, server, _ = TestNode().create_start_args_and_serve()
    env = TestEnvironment()
    env.initialize(server)
    incoming = env.incoming_directory()
    assert isinstance(incoming, IncomingDirectory)
    incoming.add_service(Thermometer, FakeThermometer(1.0))
    incoming.add_service(Thermometer, FakeThermometer(2.0), "outside")
    with pytest.raises(ValueError, match="offered already"):
        incoming.add_service(Thermometer, FakeThermometer())
    assert ("test.thermometer", "outside") in incoming.services()
    with DriverUnderTest(Reader, instance="outside") as dut:
        rt.run_to_completion(dut.start(args))
        assert rt.run_to_completion(dut.driver.read()) == 2.0
    incoming.remove_service(Thermometer, "outside")
    with pytest.raises(ServiceNotFound):
        incoming.remove_service("test.thermometer", "outside")


def test_a_removed_service_is_not_found_by_the_driver(rt: DriverRuntime) -> None:
    args, server, _ = TestNode().create_start_args_and_serve()
    env = TestEnvironment()
    env.initialize(server)
    env.incoming_directory().add_service(Thermometer, FakeThermometer())
    env.incoming_directory().remove_service(Thermometer)
    dut = DriverUnderTest(Reader)
    with pytest.raises(ServiceNotFound, match=r"no service 'test\.thermometer'"):
        rt.run_to_completion(dut.start(args))
    dut.close()


def test_plain_protocols_go_through_component(rt: DriverRuntime) -> None:
    args, server, _ = TestNode().create_start_args_and_serve()
    env = TestEnvironment()
    env.initialize(server)
    component = env.incoming_directory().component()
    fake = FakeThermometer(3.0)
    component.add_protocol("test.raw", fake)
    assert args.incoming.get("test.raw") is fake
    assert args.incoming.get(LOG_SINK_PROTOCOL) is env.log_sink
    component.remove_protocol("test.raw")
    with pytest.raises(ServiceNotFound):
        args.incoming.get("test.raw")


def test_initialize_once_and_before_use() -> None:
    _, server, _ = TestNode().create_start_args_and_serve()
    env = TestEnvironment()
    with pytest.raises(LifecycleError, match="call initialize"):
        env.incoming_directory()
    env.initialize(server)
    with pytest.raises(LifecycleError, match="called already"):
        env.initialize(server)
    other = TestEnvironment()
    with pytest.raises(LifecycleError, match="served already"):
        other.initialize(server)


def test_the_log_sink_forwards_driver_logs_to_caplog(
    rt: DriverRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tether.driver")
    args, server, _ = TestNode("probe").create_start_args_and_serve()
    env = TestEnvironment()
    env.initialize(server)
    env.incoming_directory().add_service(Thermometer, FakeThermometer())
    with DriverUnderTest(Reader) as dut:
        rt.run_to_completion(dut.start(args))
    assert env.log_sink.messages() == ["connected to default"]
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("tether.driver.probe", "connected to default")
    ]


def test_the_log_sink_respects_logger_levels() -> None:
    sink = LogSink()
    logging.getLogger("test.sink").setLevel(logging.ERROR)
    try:
        record = logging.LogRecord("test.sink", logging.INFO, __file__, 1, "quiet", None, None)
        sink.write(record)
    finally:
        logging.getLogger("test.sink").setLevel(logging.NOTSET)
    assert sink.records == [record]  # kept, though not re-emitted


def test_an_environment_on_a_background_dispatcher_serves_there(rt: DriverRuntime) -> None:
    bg = rt.start_background_dispatcher()
    node = DispatcherBound(bg, TestNode, "root")
    args, server, _ = node.sync_call(TestNode.create_start_args_and_serve)
    env = DispatcherBound(bg, TestEnvironment)
    assert env.sync_call(lambda e: e.dispatcher) is bg
    fake = FakeThermometer(4.0)
    env.sync_call(TestEnvironment.initialize, server)
    env.sync_call(lambda e: e.incoming_directory().add_service(Thermometer, fake))
    with DriverUnderTest(Reader) as dut:  # on the foreground
        rt.run_to_completion(dut.start(args))
        assert rt.run_to_completion(dut.driver.read()) == 4.0
    assert fake.threads == [bg.thread.ident]  # the proxy hopped to the environment's loop


def test_the_environment_is_touched_only_on_its_dispatcher(rt: DriverRuntime) -> None:
    bg = rt.start_background_dispatcher()
    _, server, _ = TestNode().create_start_args_and_serve()
    env = rt.run_to_completion(bg.submit(TestEnvironment))
    with pytest.raises(LifecycleError, match="must be called on dispatcher 'background-1'"):
        env.initialize(server)
    with pytest.raises(LifecycleError, match="must be called on dispatcher"):
        env.incoming_directory()
