"""``tether.wire._events``: every event is frozen, slotted and validates on construction."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from tether.errors import LocalProtocolError
from tether.wire import (
    Call,
    Cancel,
    ConnectionClosed,
    Data,
    Error,
    Event,
    GoAway,
    Hello,
    Item,
    OpenStream,
    Ping,
    Pong,
    Result,
    WindowUpdate,
)

GOOD_EVENTS: list[Event] = [
    Hello(1, {"window": 10}),
    Call(1, "node", "method", [1], {"a": 2}),
    OpenStream(2, "node", "method"),
    Result(3, {"v": 1}),
    Item(4, [1, 2]),
    Error(5, {"code": "driver_error", "message": "boom"}),
    Cancel(6),
    Data(7, b"bytes", end=True),
    WindowUpdate(8, 1),
    Ping(b"12345678"),
    Pong(b"87654321"),
    GoAway("protocol_error", "why"),
    ConnectionClosed(),
]

#: Constructors of the events that carry a stream id, with otherwise valid arguments.
STREAM_EVENTS: list[tuple[type[Event], tuple[Any, ...]]] = [
    (Call, ("node", "method")),
    (OpenStream, ("node", "method")),
    (Result, (None,)),
    (Item, (1,)),
    (Error, ({"code": "c", "message": "m"},)),
    (Cancel, ()),
    (Data, (b"x",)),
    (WindowUpdate, (1,)),
]


@pytest.mark.parametrize("event", GOOD_EVENTS, ids=lambda e: type(e).__name__)
def test_events_are_frozen_and_slotted(event: Event) -> None:
    assert dataclasses.is_dataclass(event)
    assert not hasattr(event, "__dict__")
    for f in dataclasses.fields(event):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(event, f.name, getattr(event, f.name))


def test_events_compare_by_value() -> None:
    assert Call(1, "n", "m") == Call(1, "n", "m", [], {})
    assert Data(1, b"x") != Data(1, b"x", end=True)
    assert Ping() == Ping(b"\0" * 8)
    assert GoAway() == GoAway("normal", "")


@pytest.mark.parametrize("stream_id", [0, -1, 2**32, 1.0, "1", None, True], ids=lambda s: repr(s))
@pytest.mark.parametrize(("cls", "args"), STREAM_EVENTS, ids=lambda x: getattr(x, "__name__", ""))
def test_stream_ids_must_be_ints_in_u32_range(
    cls: type[Event], args: tuple[Any, ...], stream_id: object
) -> None:
    with pytest.raises(
        LocalProtocolError, match=re.escape("stream id must be an int in 1..2**32-1")
    ):
        cls(stream_id, *args)  # type: ignore[call-arg]


@pytest.mark.parametrize(("cls", "args"), STREAM_EVENTS, ids=lambda x: getattr(x, "__name__", ""))
def test_stream_id_bounds_are_inclusive(cls: type[Event], args: tuple[Any, ...]) -> None:
    assert cls(1, *args).stream_id == 1  # type: ignore[call-arg, attr-defined]
    assert cls(2**32 - 1, *args).stream_id == 2**32 - 1  # type: ignore[call-arg, attr-defined]


@pytest.mark.parametrize("cls", [Call, OpenStream])
@pytest.mark.parametrize(
    ("node", "method", "args", "kwargs"),
    [
        (1, "m", [], {}),
        (None, "m", [], {}),
        ("n", "", [], {}),
        ("n", b"m", [], {}),
        ("n", None, [], {}),
        ("n", "m", (), {}),
        ("n", "m", "args", {}),
        ("n", "m", [], []),
        ("n", "m", [], None),
    ],
)
def test_call_and_open_check_their_target(
    cls: type[Call] | type[OpenStream], node: object, method: object, args: object, kwargs: object
) -> None:
    with pytest.raises(LocalProtocolError):
        cls(1, node, method, args, kwargs)  # type: ignore[arg-type]


def test_call_allows_an_empty_node_name() -> None:
    # The root may be addressed by an empty node id; only the method must be non-empty.
    assert Call(1, "", "m").node == ""


@pytest.mark.parametrize("version", [0, -1, 1.0, "1", None, True])
def test_hello_version_must_be_a_positive_int(version: object) -> None:
    with pytest.raises(LocalProtocolError, match=re.escape("Hello.version")):
        Hello(version)  # type: ignore[arg-type]


@pytest.mark.parametrize("meta", [None, [], "meta", [("window", 1)]])
def test_hello_meta_must_be_a_dict(meta: object) -> None:
    with pytest.raises(LocalProtocolError, match=re.escape("Hello.meta must be a dict")):
        Hello(1, meta)  # type: ignore[arg-type]


@pytest.mark.parametrize("error", [None, "boom", ["code", "message"], 1])
def test_error_payload_must_be_a_dict(error: object) -> None:
    with pytest.raises(LocalProtocolError, match=re.escape("Error.error must be a dict")):
        Error(1, error)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [b"", bytearray(b"x"), memoryview(b"xy")])
def test_data_accepts_bytes_like(data: bytes) -> None:
    assert Data(1, data).data == data


@pytest.mark.parametrize("data", ["text", None, 1, [1, 2]])
def test_data_rejects_non_bytes(data: object) -> None:
    with pytest.raises(LocalProtocolError, match=re.escape("Data.data must be bytes-like")):
        Data(1, data)  # type: ignore[arg-type]


@pytest.mark.parametrize("increment", [1, 2**31 - 1])
def test_window_increment_bounds_are_inclusive(increment: int) -> None:
    assert WindowUpdate(1, increment).increment == increment


@pytest.mark.parametrize("increment", [0, -1, 2**31, 2**32, 1.0, "1", None, True])
def test_window_increment_must_be_in_1_to_2_31_minus_1(increment: object) -> None:
    with pytest.raises(
        LocalProtocolError, match=re.escape("window increment must be in 1..2**31-1")
    ):
        WindowUpdate(1, increment)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [Ping, Pong])
@pytest.mark.parametrize(
    "payload", [b"", b"1234567", b"123456789", bytearray(b"12345678"), "12345678", None]
)
def test_ping_and_pong_payloads_are_exactly_8_bytes(
    cls: type[Ping] | type[Pong], payload: object
) -> None:
    with pytest.raises(LocalProtocolError, match="payload must be 8 bytes"):
        cls(payload)  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "message"), [(None, ""), ("normal", None), (1, "m"), (b"x", "")])
def test_goaway_code_and_message_are_strings(code: object, message: object) -> None:
    with pytest.raises(LocalProtocolError, match="GoAway code and message must be strings"):
        GoAway(code, message)  # type: ignore[arg-type]


def test_default_arguments_are_not_shared() -> None:
    first, second = Call(1, "n", "m"), Call(2, "n", "m")
    assert first.args is not second.args
    assert first.kwargs is not second.kwargs
    assert Hello(1).meta is not Hello(1).meta
