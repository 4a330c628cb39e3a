"""Return values are rebuilt from the exported method's own annotation, not only the interface's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pydantic

from tether import Driver, DriverClient, export
from tether.driver import ClientPolicy, build_client_tree, build_report, node_for
from tether.testing import serve


class Reading(pydantic.BaseModel):
    volts: float
    channel: int


@dataclass
class Sample:
    at: float
    value: int


class Meter(Driver):
    """No interface at all: every result type comes from the method's own annotation."""

    @export
    async def read(self) -> Reading:
        return Reading(volts=3.3, channel=1)

    @export
    def sample(self) -> Sample:
        return Sample(at=1.5, value=7)

    @export
    async def readings(self) -> AsyncIterator[Reading]:
        for channel in range(2):
            yield Reading(volts=1.0, channel=channel)

    @export
    async def plain(self) -> dict[str, int]:
        return {"a": 1}


def test_report_names_the_result_class() -> None:
    methods = Meter.exported()
    assert methods["read"].describe()["returns"] == f"{__name__}.Reading"
    assert methods["readings"].describe()["returns"] == f"{__name__}.Reading"
    assert methods["sample"].describe()["returns"] == f"{__name__}.Sample"
    assert "returns" not in methods["plain"].describe()


def test_a_drivers_own_methods_return_rebuilt_models_and_dataclasses() -> None:
    with serve(Meter()) as meter:
        assert meter.call("read") == Reading(volts=3.3, channel=1)
        assert meter.call("sample") == Sample(at=1.5, value=7)
        assert [r.channel for r in meter.streaming_call("readings")] == [0, 1]
        assert meter.call("plain") == {"a": 1}


class Recorder:
    """A call target that answers with what the wire would deliver (plain data)."""

    def call(self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        return {"volts": 5.0, "channel": 2}

    def streaming_call(self, *_: Any) -> Any:
        return iter(())

    def open_stream(self, *_: Any) -> Any:
        raise NotImplementedError


def test_a_result_type_off_the_allow_list_stays_plain_data() -> None:
    report = build_report(node_for(Meter(), "root"))
    denied = build_client_tree(report, Recorder(), ClientPolicy())
    assert denied.call("read") == {"volts": 5.0, "channel": 2}
    allowed = build_client_tree(report, Recorder(), ClientPolicy(allow=[f"{__name__}.*"]))
    assert allowed.call("read") == Reading(volts=5.0, channel=2)


def test_an_unimportable_result_type_stays_plain_data() -> None:
    report = build_report(node_for(Meter(), "root"))
    report[0]["methods"]["read"]["returns"] = "nowhere.to.be.Found"
    tree = build_client_tree(report, Recorder(), ClientPolicy(unsafe=True))
    assert isinstance(tree, DriverClient)
    assert tree.call("read") == {"volts": 5.0, "channel": 2}
