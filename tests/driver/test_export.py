"""Exported methods: kinds, argument validation, and descriptions."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import pytest
from pydantic import BaseModel

from tether import Driver, export, export_stream
from tether.driver import MethodKind, exported_methods
from tether.errors import InvalidArgument


class Point(BaseModel):
    x: int
    y: int


@dataclass
class Box:
    width: int


class Shapes(Driver):
    @export
    async def move(self, point: Point, *, speed: float = 1.0) -> Point:
        return point

    @export
    def blocking(self, box: Box) -> int:
        return box.width

    @export
    async def ticks(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @export
    def sync_ticks(self) -> Iterator[str]:
        yield "a"

    @export_stream
    @asynccontextmanager
    async def pipe(self) -> AsyncIterator[object]:
        yield object()

    async def not_exported(self) -> None: ...


def test_kinds_are_detected() -> None:
    methods = Shapes.exported()
    assert sorted(methods) == ["blocking", "move", "pipe", "sync_ticks", "ticks"]
    assert methods["move"].kind is MethodKind.UNARY and methods["move"].is_async
    assert methods["blocking"].kind is MethodKind.UNARY and not methods["blocking"].is_async
    assert methods["ticks"].kind is MethodKind.STREAMING and methods["ticks"].item_type is int
    assert methods["sync_ticks"].kind is MethodKind.STREAMING
    assert methods["pipe"].kind is MethodKind.BYTE_STREAM


def test_bind_rebuilds_models_and_dataclasses() -> None:
    args, kwargs = Shapes.exported()["move"].bind([{"x": 1, "y": 2}], {"speed": "2.5"})
    assert args == (Point(x=1, y=2),) and kwargs == {"speed": 2.5}
    args, _ = Shapes.exported()["blocking"].bind([{"width": 3}], {})
    assert args == (Box(width=3),)


@pytest.mark.parametrize(
    ("args", "kwargs", "parameter", "message"),
    [
        ([{"x": "a", "y": 1}], {}, "point", "argument 'point'"),
        ([], {}, "point", "missing a required argument: 'point'"),
        ([{"x": 1, "y": 1}], {"colour": 1}, "colour", "unexpected keyword argument 'colour'"),
        ([{"x": 1, "y": 1}, 2], {}, None, "too many positional arguments"),
        ([{"x": 1, "y": 1}], {"speed": "fast"}, "speed", "argument 'speed'"),
    ],
)
def test_bad_arguments_name_the_parameter(
    args: list[object], kwargs: dict[str, object], parameter: str | None, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        Shapes.exported()["move"].bind(args, kwargs)
    assert info.value.parameter == parameter


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (b"\0" * 300_000, "... [300000 bytes]"),
        ("x" * 300_000, "xxxx...xxxx"),
        ([b"\0" * 300_000] * 50, "... [300000 bytes], ...]"),
    ],
)
def test_a_huge_bad_argument_is_shown_cut(value: object, shown: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        Shapes.exported()["move"].bind([{"x": 1, "y": 1}], {"speed": value})
    assert len(str(info.value)) < 1000 and shown in str(info.value)


def test_describe_lists_parameters_and_doc() -> None:
    description = Shapes.exported()["move"].describe()
    assert description["kind"] == "unary"
    assert description["params"][0] == {
        "name": "point",
        "kind": "positional_or_keyword",
        "type": "Point",
    }
    assert description["params"][1]["default"] == 1.0
    assert description["signature"].startswith("move(point: ")


class _Mode(enum.Enum):
    HOST = "host"
    DUT = "dut"


class _Mux(Driver):
    @export
    async def switch(self, mode: _Mode, speed: Literal[1, 2] = 1, name: str = "") -> None: ...


def test_enum_and_literal_parameters_report_their_choices() -> None:
    params = {p["name"]: p for p in exported_methods(_Mux)["switch"].describe()["params"]}
    assert params["mode"]["choices"] == ["host", "dut"]
    assert params["speed"]["choices"] == [1, 2]
    assert "choices" not in params["name"]
