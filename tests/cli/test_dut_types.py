"""Reading typed values from command-line words (tether.cli._dut_types)."""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import pytest
from pydantic import BaseModel

from tether.cli._dut_types import TypeSpec, convert, spec_from_annotation, spec_from_text


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Model(BaseModel):
    a: int


@pytest.mark.parametrize(
    ("text", "kind", "label"),
    [
        ("int", "int", "int"),
        ("float", "float", "float"),
        ("bool", "bool", "bool"),
        ("bytes", "bytes", "bytes"),
        ("str", "str", "str"),
        ("NoneType", "none", "none"),
        ("Any", "any", "any"),
        ("", "any", "any"),
        ("Color", "any", "Color"),
        ("pathlib.Path", "str", "Path"),
        ("list[int]", "list", "list[int]"),
        ("collections.abc.Sequence[float]", "list", "list[float]"),
        ("tuple[int, ...]", "list", "list[int]"),
        ("tuple[int, str]", "json", "tuple[int, str]"),
        ("dict[str, int]", "json", "dict[str, int]"),
        ("int | None", "optional", "int | None"),
        ("Optional[list[str]]", "optional", "list[str] | None"),
        ("Union[int, str]", "any", "int | str"),
        ("Annotated[int, Gt(gt=0)]", "int", "int"),
        ("Literal['a', 'b,c']", "choice", "a|b,c"),
        ("list[int", "any", "list[int"),
    ],
)
def test_spec_from_report_text(text: str, kind: str, label: str) -> None:
    spec = spec_from_text(text)
    assert (spec.kind, spec.label) == (kind, label)


@pytest.mark.parametrize(
    ("annotation", "kind", "label"),
    [
        (int, "int", "int"),
        (bool, "bool", "bool"),
        (Mode, "choice", "Mode"),
        (Literal[1, 2], "choice", "1|2"),
        (Optional[Mode], "optional", "Mode | None"),  # noqa: UP045 (the old spelling on purpose)
        (list[float] | None, "optional", "list[float] | None"),
        (Annotated[str, "doc"], "str", "str"),
        (Model, "json", "Model"),
        (dict[str, Any], "json", "dict[str, Any]"),
        (Path, "str", "Path"),
        (Union[int, str], "any", "int | str"),  # noqa: UP007
        (Any, "any", "any"),
    ],
)
def test_spec_from_annotation(annotation: Any, kind: str, label: str) -> None:
    spec = spec_from_annotation(annotation)
    assert (spec.kind, spec.label) == (kind, label)


def test_choice_values_come_from_enums_and_literals() -> None:
    assert spec_from_annotation(Mode).choices == ("fast", "slow")
    assert convert(spec_from_annotation(Literal[1, 2]), "2") == 2
    assert convert(spec_from_text("Literal[True, 'x']"), "True") is True
    with pytest.raises(ValueError, match=r"expected one of fast, slow, got 'medium'"):
        convert(spec_from_annotation(Mode), "medium")


@pytest.mark.parametrize(
    ("spec", "word", "value"),
    [
        (spec_from_text("int"), "42", 42),
        (spec_from_text("int"), "0x1f", 31),
        (spec_from_text("int"), "010", 10),
        (spec_from_text("float"), "1e3", 1000.0),
        (spec_from_text("bool"), "on", True),
        (spec_from_text("bool"), "No", False),
        (spec_from_text("bytes"), "hi", b"hi"),
        (spec_from_text("bytes"), "hex:0aff", b"\n\xff"),
        (spec_from_text("bytes"), "b64:aGk=", b"hi"),
        (spec_from_text("int | None"), "null", None),
        (spec_from_text("int | None"), "5", 5),
        (spec_from_text("list[int]"), "1,2,3", [1, 2, 3]),
        (spec_from_text("list[int]"), "[4, 5]", [4, 5]),
        (spec_from_text("list[str]"), "", []),
        (spec_from_text("dict[str, int]"), '{"a": 1}', {"a": 1}),
        (spec_from_text("Color"), "red", "red"),
        (spec_from_text("Color"), "3", 3),
        (spec_from_text("str"), "3", "3"),
    ],
)
def test_convert(spec: TypeSpec, word: str, value: Any) -> None:
    assert convert(spec, word) == value


def test_bytes_from_a_file(tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\x01")
    assert convert(spec_from_text("bytes"), f"@{blob}") == b"\x00\x01"
    with pytest.raises(ValueError, match=r"cannot read .*missing"):
        convert(spec_from_text("bytes"), f"@{tmp_path / 'missing'}")


@pytest.mark.parametrize(
    ("text", "word", "message"),
    [
        ("int", "x", "expected an integer, got 'x'"),
        ("float", "fast", "expected a number, got 'fast'"),
        ("bool", "2", "expected true or false, got '2'"),
        ("bytes", "hex:zz", "expected hex digits after 'hex:', got 'zz'"),
        ("bytes", "b64:!!", "expected base64 after 'b64:'"),
        ("list[int]", "1,x", "expected an integer, got 'x'"),
        ("dict[str, int]", "{", "expected JSON (dict[str, int])"),
        ("NoneType", "x", "expected none"),
    ],
)
def test_bad_words_say_what_was_expected(text: str, word: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        convert(spec_from_text(text), word)
