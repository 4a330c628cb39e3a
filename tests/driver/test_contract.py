"""The driver contract: the interface is the export list, user names are the user's, bare groups."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tether import Driver, Interface, export, export_stream
from tether.driver import DriverState, MethodKind
from tether.errors import ConfigError, MethodNotFound
from tether.testing import serve


class Canned:
    """A byte stream that says one thing and ends."""

    def __init__(self, data: bytes) -> None:
        self._chunks = [data]

    async def send(self, data: bytes) -> None:
        pass

    async def receive(self) -> bytes:
        return self._chunks.pop() if self._chunks else b""

    async def send_eof(self) -> None:
        pass


class Lamp(Interface):
    name = "test.lamp"
    client = "tether.driver.DriverClient"

    @abstractmethod
    async def on(self) -> None: ...

    @abstractmethod
    async def level(self, percent: int) -> int: ...

    @abstractmethod
    async def readings(self) -> AsyncIterator[int]:
        yield 0  # an async generator in the interface: a streaming call

    @export_stream
    @asynccontextmanager
    async def console(self) -> AsyncIterator[Canned]:
        yield Canned(b"")  # export_stream in the interface: a byte stream


class PlainLamp(Lamp, Driver):
    """Implements the interface without repeating ``@export`` anywhere."""

    async def on(self) -> None:
        self.lit = True

    async def level(self, percent: int) -> int:
        return percent * 2

    async def readings(self) -> AsyncIterator[int]:
        for value in (1, 2, 3):
            yield value

    @asynccontextmanager
    async def console(self) -> AsyncIterator[Canned]:
        yield Canned(b"hello")

    async def helper(self) -> int:  # not in the interface, not exported
        return 1


def test_interface_methods_are_exported_without_repeating_export() -> None:
    table = PlainLamp.exported()
    assert set(table) == {"on", "level", "readings", "console"}
    assert table["on"].kind is MethodKind.UNARY
    assert table["readings"].kind is MethodKind.STREAMING
    assert table["console"].kind is MethodKind.BYTE_STREAM


def test_an_unmarked_interface_method_is_callable_remotely() -> None:
    with serve(PlainLamp()) as lamp:
        assert lamp.call("on") is None
        assert lamp.call("level", "7") == 14  # validated against the driver's hints
        assert list(lamp.streaming_call("readings")) == [1, 2, 3]
        with lamp.stream("console") as stream:
            assert stream.receive() == b"hello"
        with pytest.raises(MethodNotFound):
            lamp.call("helper")


def test_an_unimplemented_interface_method_fails_at_class_definition() -> None:
    # console has a body in the interface (a default implementation): it is not missing.
    with pytest.raises(TypeError, match=r"HalfLamp does not implement Lamp\.level, Lamp\.on"):

        class HalfLamp(Lamp, Driver):
            async def readings(self) -> AsyncIterator[int]:
                yield 1


def test_abstract_driver_classes_leave_methods_to_subclasses() -> None:
    class LampBase(Lamp, Driver, abstract=True):
        async def on(self) -> None: ...

    class FullLamp(LampBase):
        async def level(self, percent: int) -> int:
            return percent

        async def readings(self) -> AsyncIterator[int]:
            yield 1

        @asynccontextmanager
        async def console(self) -> AsyncIterator[Canned]:
            yield Canned(b"")

    assert set(FullLamp.exported()) == {"on", "level", "readings", "console"}
    with pytest.raises(TypeError, match="FullLampChild does not implement"):

        class FullLampChild(LampBase):  # abstract=True is not inherited
            pass


def test_a_field_named_state_is_the_users() -> None:
    class Relay(Driver):
        state: bool = False

        @export
        async def get(self) -> bool:
            return self.state

        @export
        async def toggle(self) -> bool:
            self.state = not self.state
            return self.state

    relay = Relay()
    assert relay.state is False
    assert relay.lifecycle is DriverState.CREATED
    with serve(Relay(state=True)) as client:
        assert client.call("get") is True
        assert client.call("toggle") is False
        assert client.call("get") is False


RESERVED = [
    "node",
    "incoming",
    "outgoing",
    "logger",
    "labels",
    "children",
    "description",
    "uuid",
    "lifecycle",
    "started",
    "extra_labels",
    "exported",
    "interfaces",
]


@pytest.mark.parametrize("name", RESERVED)
def test_a_reserved_config_field_is_refused_at_definition_naming_it(name: str) -> None:
    with pytest.raises(TypeError, match=rf"Bad: config field {name!r} is reserved"):
        type("Bad", (Driver,), {"__annotations__": {name: int}, name: 1})


@pytest.mark.parametrize("name", RESERVED)
def test_a_reserved_class_attribute_is_refused_at_definition_naming_it(name: str) -> None:
    with pytest.raises(TypeError, match=rf"Bad: class attribute {name!r} is reserved"):
        type("Bad", (Driver,), {name: "mine"})


@pytest.mark.parametrize("name", ["start", "prepare_stop", "stop"])
def test_lifecycle_hooks_are_neither_fields_nor_values(name: str) -> None:
    with pytest.raises(TypeError, match=rf"Bad: config field {name!r} is reserved"):
        type("Bad", (Driver,), {"__annotations__": {name: int}})
    with pytest.raises(TypeError, match=rf"{name!r} is the {name}\(\) lifecycle hook"):
        type("Bad", (Driver,), {name: 3})


def test_a_bare_driver_is_a_group_node() -> None:
    class Leaf(Driver):
        @export
        async def ping(self) -> str:
            return "pong"

    group = Driver(children={"a": Leaf(), "b": Leaf()}, description="two leaves")
    assert Driver.exported() == {}
    with serve(group) as tree:
        assert tree.methods == {}
        assert tree.description == "two leaves"
        assert tree.children["a"].call("ping") == "pong"
        assert tree.children["b"].call("ping") == "pong"
        with pytest.raises(MethodNotFound):
            tree.call("ping")


def test_a_bare_driver_takes_no_config() -> None:
    with pytest.raises(ConfigError, match=r"Driver.voltage: unknown config field"):
        Driver(voltage=5)
