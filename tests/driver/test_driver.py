"""Driver config fields, lifecycle guard, and children."""

from __future__ import annotations

import asyncio

import pytest

from tether import Driver, export
from tether.driver import DriverHost, DriverState
from tether.drivers.composite import Composite
from tether.drivers.power import MockPower
from tether.errors import ConfigError, LifecycleError


class Sensor(Driver):
    rate: int
    unit: str = "C"

    @export
    async def read(self) -> int:
        return self.rate


def test_config_fields_are_validated_and_set() -> None:
    sensor = Sensor(rate="5")
    assert sensor.rate == 5
    assert sensor.unit == "C"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "Sensor.rate: required config field is missing"),
        ({"rate": "fast"}, "Sensor.rate: Input should be a valid integer"),
        ({"rate": 1, "colour": "red"}, "Sensor.colour: unknown config field"),
    ],
)
def test_bad_config_names_the_field(config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Sensor(**config)


def test_reserved_field_names_are_refused() -> None:
    with pytest.raises(TypeError, match="reserved"):

        class Bad(Driver):
            children: int = 1


def test_context_before_start_is_a_lifecycle_error() -> None:
    with pytest.raises(
        LifecycleError, match=r"Sensor.node is available once the driver is started"
    ):
        _ = Sensor(rate=1).node


def test_host_starts_children_first_and_stops_parents_first() -> None:
    order: list[str] = []

    class Tracked(Driver):
        label: str

        async def start(self) -> None:
            order.append(f"start {self.label}")

        async def prepare_stop(self) -> None:
            order.append(f"prepare_stop {self.label}")

        def stop(self) -> None:
            order.append(f"stop {self.label}")

    child = Tracked(label="child")
    root = Tracked(label="root", children={"child": child})
    host = DriverHost(root)

    async def run() -> None:
        await host.start()
        assert root.lifecycle is DriverState.RUNNING
        await host.stop()

    asyncio.run(run())
    assert order == [
        "start child",
        "start root",
        "prepare_stop root",
        "prepare_stop child",
        "stop root",
        "stop child",
    ]
    assert root.lifecycle is DriverState.STOPPED


def test_failed_start_gets_no_prepare_stop_but_started_ones_stop() -> None:
    events: list[str] = []

    class Fails(Driver):
        async def start(self) -> None:
            raise RuntimeError("no hardware")

        async def prepare_stop(self) -> None:
            events.append("prepare_stop fails")

    class Ok(Driver):
        def stop(self) -> None:
            events.append("stop ok")

    host = DriverHost(Fails(children={"ok": Ok()}))
    with pytest.raises(RuntimeError, match="no hardware"):
        asyncio.run(host.start())
    assert events == ["stop ok"]


def test_children_added_at_run_time_start_and_stop() -> None:
    class Bus(Driver):
        async def start(self) -> None:
            self.controller = self.node.add_child("power", MockPower(), {"slot": "1"})

    bus = Bus()
    host = DriverHost(bus)

    async def run() -> None:
        await host.start()
        child = bus.node.children["power"]
        assert child.properties == {"slot": "1"}
        assert child.driver is not None and child.driver.lifecycle is DriverState.RUNNING
        assert [entry["name"] for entry in host.report()] == ["root", "power"]
        bus.controller.remove()
        await asyncio.gather(*host._tasks)
        assert child.driver.lifecycle is DriverState.STOPPED
        assert "power" not in bus.node.children
        await host.stop()

    asyncio.run(run())


def test_composite_is_a_plain_group() -> None:
    group = Composite(children={"a": MockPower(), "b": MockPower()})
    assert list(group.children) == ["a", "b"]
    assert Composite.exported() == {}


def test_uses_routes_services_and_starts_providers_first() -> None:
    from tether.drivers.power import PowerInterface

    seen: list[str] = []

    class Flasher(Driver):
        async def start(self) -> None:
            power = self.incoming.connect(PowerInterface)
            await power.on()
            seen.append(f"power on: {await power.status()}")
            assert self.incoming.connect(PowerInterface, "psu") is not None

    # The user comes before its provider in tree order; the host must still start power first.
    root = Composite(children={"flasher": Flasher(), "psu": MockPower()})
    host = DriverHost(root, uses={"flasher": {"psu": "psu"}})
    asyncio.run(host.start())
    assert seen == ["power on: True"]
