"""Parameter types for generated ``dut`` commands: what a command-line word may become.

Theory of operation. Each exported method parameter gets a :class:`TypeSpec`, built from the
best source available:

1. the real annotation, when the node's client class names an ``interface`` that declares the
   method (typed clients, allow-listed and installed here);
2. otherwise the type *text* the driver report carries (``"int"``, ``"list[int]"``,
   ``"Literal['a', 'b']"``, ``"int | None"``), parsed here without ever evaluating it.

Names the text does not explain (an enum, a pydantic model) become ``any``: the word is read as
JSON when it parses, else kept as a string, and the exporter's validation (pydantic) has the last
word; its :class:`~tether.errors.InvalidArgument` becomes a usage error.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import enum
import inspect
import json
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pydantic

__all__ = [
    "SpecType",
    "TypeSpec",
    "convert",
    "spec_from_annotation",
    "spec_from_text",
]

_SCALARS = ("int", "float", "str", "bool", "bytes")
_LISTS = {
    "list",
    "List",
    "tuple",
    "Tuple",
    "set",
    "Set",
    "frozenset",
    "FrozenSet",
    "Sequence",
    "MutableSequence",
    "Iterable",
    "Collection",
    "AbstractSet",
}
_MAPPINGS = {"dict", "Dict", "Mapping", "MutableMapping", "TypedDict"}
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}
_NULL = {"none", "null"}


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """How to read one parameter from the command line.

    ``kind`` is one of ``int float str bool bytes none any json choice list optional``;
    ``choices`` holds the allowed values of a ``choice``, ``item`` the element type of a
    ``list`` or the inner type of an ``optional``; ``label`` is what help shows.
    """

    kind: str
    label: str
    choices: tuple[Any, ...] = ()
    item: TypeSpec | None = None


ANY = TypeSpec("any", "any")


def _scalar(kind: str) -> TypeSpec:
    return TypeSpec(kind, kind)


def _optional(inner: TypeSpec) -> TypeSpec:
    if inner.kind in ("optional", "none", "any"):
        return inner
    return TypeSpec("optional", f"{inner.label} | None", item=inner)


def _list(item: TypeSpec) -> TypeSpec:
    return TypeSpec("list", f"list[{item.label}]", item=item)


def _choice(values: tuple[Any, ...], label: str | None = None) -> TypeSpec:
    return TypeSpec("choice", label or "|".join(str(v) for v in values), choices=values)


# -- from annotations -----------------------------------------------------------------------


def spec_from_annotation(annotation: Any) -> TypeSpec:
    """The spec for a real type annotation (from a typed client's interface)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return ANY
    if annotation is None or annotation is type(None):
        return _scalar("none")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return spec_from_annotation(args[0])
    if origin is typing.Literal:
        return _choice(tuple(args))
    if origin is typing.Union or origin is types.UnionType:
        rest = [a for a in args if a is not type(None)]
        inner = spec_from_annotation(rest[0]) if len(rest) == 1 else _union(rest)
        return _optional(inner) if len(rest) < len(args) else inner
    if origin is not None:
        name = getattr(origin, "__name__", "")
        if name in _LISTS:
            if name in ("tuple", "Tuple") and not (len(args) == 2 and args[1] is Ellipsis):
                return TypeSpec("json", _label(annotation)) if args else _list(ANY)
            return _list(spec_from_annotation(args[0]) if args else ANY)
        return TypeSpec("json", _label(annotation))
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return _choice(tuple(m.value for m in annotation), annotation.__name__)
        for kind in ("bool", "int", "float", "str", "bytes"):  # bool before int
            if issubclass(annotation, _BUILTINS[kind]):
                return _scalar(kind)
        if issubclass(annotation, Path):
            return TypeSpec("str", annotation.__name__)
        if (
            issubclass(annotation, (dict, list, pydantic.BaseModel))
            or dataclasses.is_dataclass(annotation)
            or typing.is_typeddict(annotation)
        ):
            return TypeSpec("json", annotation.__name__)
        return TypeSpec("any", annotation.__name__)
    return TypeSpec("any", _label(annotation))


_BUILTINS: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str, "bytes": bytes}


def _union(options: list[Any]) -> TypeSpec:
    return TypeSpec("any", " | ".join(_label(o) for o in options))


def _label(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


# -- from the report's type text --------------------------------------------------------------


def spec_from_text(text: str | None) -> TypeSpec:
    """The spec for the type text of a driver report (never evaluated, only parsed)."""
    if not text:
        return ANY
    try:
        return _parse_union(text.strip())
    except ValueError:
        return TypeSpec("any", text)


def _parse_union(text: str) -> TypeSpec:
    parts = [p.strip() for p in _split_top(text, "|")]
    if len(parts) == 1:
        return _parse_atom(parts[0])
    rest = [p for p in parts if p not in ("None", "NoneType")]
    inner = _parse_atom(rest[0]) if len(rest) == 1 else TypeSpec("any", " | ".join(rest))
    return _optional(inner) if len(rest) < len(parts) else inner


def _parse_atom(text: str) -> TypeSpec:
    if text.endswith("]") and "[" in text:
        head, _, inner = text[:-1].partition("[")
        name = head.strip().rsplit(".", 1)[-1]
        args = [a.strip() for a in _split_top(inner, ",")]
        if name == "Literal":
            return _choice(tuple(ast.literal_eval(a) for a in args))
        if name == "Optional":
            return _optional(_parse_union(args[0]))
        if name == "Union":
            return _parse_union(" | ".join(args))
        if name == "Annotated":
            return _parse_union(args[0])
        if name in _LISTS:
            if name in ("tuple", "Tuple") and not (len(args) == 2 and args[1] == "..."):
                return TypeSpec("json", text)
            return _list(_parse_union(args[0]))
        return TypeSpec("json", text)
    name = text.rsplit(".", 1)[-1]
    if name in _SCALARS:
        return _scalar(name)
    if name in ("None", "NoneType"):
        return _scalar("none")
    if name == "Any" or not name:
        return ANY
    if name in _MAPPINGS or name in _LISTS:
        return TypeSpec("json", name)
    if name in ("Path", "PurePath", "PosixPath"):
        return TypeSpec("str", name)
    return TypeSpec("any", name)


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets and quotes."""
    parts: list[str] = []
    depth = 0
    quote = ""
    start = 0
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced brackets in {text!r}")
        elif char == sep and depth == 0:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    if depth or quote:
        raise ValueError(f"unbalanced brackets or quotes in {text!r}")
    parts.append(text[start:])
    return parts


# -- converting words ---------------------------------------------------------------------------


def convert(spec: TypeSpec, word: str) -> Any:
    """Convert one command-line word to a value of ``spec``.

    Raises:
        ValueError: the word is not a valid value; the message says what was expected.
    """
    kind = spec.kind
    if kind == "str":
        return word
    if kind == "int":
        try:
            return int(word, 0)
        except ValueError:
            try:
                return int(word)
            except ValueError:
                raise ValueError(f"expected an integer, got {word!r}") from None
    if kind == "float":
        try:
            return float(word)
        except ValueError:
            raise ValueError(f"expected a number, got {word!r}") from None
    if kind == "bool":
        lowered = word.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {word!r}")
    if kind == "bytes":
        return _bytes(word)
    if kind == "none":
        if word.lower() in _NULL:
            return None
        raise ValueError(f"expected none, got {word!r}")
    if kind == "choice":
        for value in spec.choices:
            if word == str(value) or (isinstance(value, enum.Enum) and word == value.name):
                return value.value if isinstance(value, enum.Enum) else value
        options = ", ".join(str(v) for v in spec.choices)
        raise ValueError(f"expected one of {options}, got {word!r}")
    if kind == "optional":
        assert spec.item is not None
        if word.lower() in _NULL:
            return None
        return convert(spec.item, word)
    if kind == "list":
        assert spec.item is not None
        try:
            values = json.loads(word)
        except ValueError:
            values = None
        if not isinstance(values, list):
            values = [w for w in word.split(",") if w] if word else []
            return [convert(spec.item, str(w).strip()) for w in values]
        return [v if not isinstance(v, str) else convert(spec.item, v) for v in values]
    if kind == "json":
        try:
            return json.loads(word)
        except ValueError as exc:
            raise ValueError(f"expected JSON ({spec.label}): {exc}") from None
    try:  # any: JSON when it parses, else the word itself
        return json.loads(word)
    except ValueError:
        return word


def _bytes(word: str) -> bytes:
    if word.startswith("hex:"):
        try:
            return bytes.fromhex(word[4:])
        except ValueError:
            raise ValueError(f"expected hex digits after 'hex:', got {word[4:]!r}") from None
    if word.startswith("b64:"):
        try:
            return base64.b64decode(word[4:], validate=True)
        except ValueError:
            raise ValueError(f"expected base64 after 'b64:', got {word[4:]!r}") from None
    if word == "@-":
        return sys.stdin.buffer.read()
    if word.startswith("@"):
        try:
            return Path(word[1:]).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {word[1:]!r}: {exc.strerror}") from None
    return word.encode()


class SpecType(click.ParamType[Any]):
    """A click parameter type backed by a :class:`TypeSpec`."""

    def __init__(self, spec: TypeSpec) -> None:
        self.spec = spec
        self.name = spec.label

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str | None:
        if self.spec.kind == "choice":
            return "[" + "|".join(str(v) for v in self.spec.choices) + "]"
        return None

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return convert(self.spec, value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[click.shell_completion.CompletionItem]:
        from click.shell_completion import CompletionItem

        if self.spec.kind == "choice":
            words = [str(v) for v in self.spec.choices]
        elif self.spec.kind == "bool":
            words = ["true", "false"]
        else:
            return []
        return [CompletionItem(w) for w in words if w.startswith(incomplete)]
