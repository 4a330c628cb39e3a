"""The test kit is as strict as the wire: proxies convert and validate as a remote call does."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pydantic
import pytest

from tether import Driver, DriverClient, Interface
from tether.errors import DriverError, InvalidArgument, LocalProtocolError
from tether.testing import (
    DriverTestConfig,
    ForegroundDriverTest,
    IncomingDirectory,
    serve,
)


class Reading(pydantic.BaseModel):
    volts: float


@dataclass
class Pair:
    left: int
    right: int


class Dimmer(Interface):
    name = "test.dimmer"
    client = f"{__name__}.DimmerClient"

    @abstractmethod
    async def level(self, percent: int) -> int: ...

    @abstractmethod
    async def read(self) -> Reading: ...

    @abstractmethod
    async def pair(self, value: Pair) -> Pair: ...

    @abstractmethod
    async def raw(self) -> object: ...

    @abstractmethod
    async def shape(self) -> tuple[int, int]: ...

    @abstractmethod
    async def readings(self, count: int) -> AsyncIterator[Reading]:
        yield Reading(volts=0)


class DimmerClient(DriverClient):
    interface = Dimmer


class Lamp(Dimmer, Driver):
    async def level(self, percent: int) -> int:
        assert type(percent) is int  # never the caller's string
        return percent

    async def read(self) -> Reading:
        return Reading(volts=1.5)

    async def pair(self, value: Pair) -> Pair:
        assert isinstance(value, Pair)
        return Pair(value.right, value.left)

    async def raw(self) -> object:
        return object()

    async def shape(self) -> tuple[int, int]:
        return (1, 2)

    async def readings(self, count: int) -> AsyncIterator[Reading]:
        for volts in range(count):
            yield Reading(volts=volts)


def test_foreground_connect_converts_and_validates_as_the_wire_does() -> None:
    with ForegroundDriverTest(DriverTestConfig(Lamp)) as test:
        test.start_driver()
        run = test.runtime.run_to_completion
        lamp = test.connect(Dimmer)
        assert run(lamp.level("7")) == 7
        with pytest.raises(InvalidArgument, match=r"level\(\): argument 'percent'") as info:
            run(lamp.level("lots"))
        assert info.value.parameter == "percent"
        with pytest.raises(InvalidArgument, match="percent"):
            run(lamp.level())
        assert run(lamp.read()) == Reading(volts=1.5)
        assert run(lamp.pair({"left": 1, "right": 2})) == Pair(2, 1)
        assert run(lamp.pair(Pair(3, 4))) == Pair(4, 3)
        with pytest.raises(DriverError, match=r"raw\(\) result cannot be sent"):
            run(lamp.raw())
        with pytest.raises(LocalProtocolError, match="cannot be sent on the wire"):
            run(lamp.level(object()))

        async def collect() -> list[Reading]:
            return [item async for item in await lamp.readings("3")]

        assert run(collect()) == [Reading(volts=0), Reading(volts=1), Reading(volts=2)]


def test_the_proxy_gives_what_a_typed_remote_client_gets() -> None:
    with serve(Lamp()) as remote:
        assert isinstance(remote, DimmerClient)
        remote_shape = remote.call("shape")
        remote_level = remote.call("level", "7")
    with ForegroundDriverTest(DriverTestConfig(Lamp)) as test:
        test.start_driver()
        lamp = test.connect(Dimmer)
        assert test.runtime.run_to_completion(lamp.shape()) == remote_shape == (1, 2)
        assert test.runtime.run_to_completion(lamp.level("7")) == remote_level == 7


class Thermometer(Interface):
    name = "test.thermometer"

    @abstractmethod
    async def read(self, channel: int) -> float: ...


class FakeThermometer:
    """Not a Driver: the interface's declaration is what the proxy checks against."""

    def __init__(self) -> None:
        self.channels: list[object] = []

    async def read(self, channel: int) -> float:
        self.channels.append(channel)
        return 20.5


class Environment:
    def __init__(self) -> None:
        self.thermometer = FakeThermometer()

    def serve(self, incoming: IncomingDirectory) -> None:
        incoming.add_service(Thermometer, self.thermometer)


class Monitor(Driver):
    async def start(self) -> None:
        self.thermometer = self.incoming.connect(Thermometer)


def test_incoming_connect_to_a_fake_validates_against_the_interface() -> None:
    with ForegroundDriverTest(DriverTestConfig(Monitor, environment=Environment)) as test:
        test.start_driver()
        run = test.runtime.run_to_completion
        assert run(test.driver.thermometer.read("2")) == 20.5
        with pytest.raises(InvalidArgument, match="channel"):
            run(test.driver.thermometer.read("left"))
        seen = test.run_in_environment_context(lambda env: env.thermometer.channels)
        assert seen == [2]


class Console(Interface):
    name = "test.console"

    @abstractmethod
    def open(self) -> object: ...


class FakeConsole:
    """A fake whose byte stream the interface does not declare with export_stream."""

    @asynccontextmanager
    async def open(self) -> AsyncIterator[str]:
        yield "stream"


class ConsoleEnvironment:
    def serve(self, incoming: IncomingDirectory) -> None:
        incoming.add_service(Console, FakeConsole())


class ConsoleUser(Driver):
    async def start(self) -> None:
        self.console = self.incoming.connect(Console)

    async def first(self) -> str:
        async with await self.console.open() as stream:
            return str(stream)


def test_a_fakes_byte_stream_passes_as_it_is() -> None:
    config = DriverTestConfig(ConsoleUser, environment=ConsoleEnvironment)
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        assert test.runtime.run_to_completion(test.driver.first()) == "stream"
