"""Config problems: where they are (YAML lines by key path) and how they are worded.

``compose`` parses YAML with a SafeLoader whose booleans are YAML 1.2's (only ``true`` and
``false``; ``on``/``off``/``yes``/``no`` stay strings) into plain data plus a table *key path ->
line*, and reports duplicate keys, which PyYAML would otherwise resolve silently to the last
one. A :class:`Reporter` turns *(key path, message)* into a :class:`ConfigProblem` with the
line of the key, or of its nearest ancestor for a key that is missing. ``describe`` words a
pydantic error as "expected X (got Y)".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import ErrorDetails

from tether.errors import ConfigError

__all__ = [
    "ConfigFileError",
    "ConfigProblem",
    "KeyPath",
    "Reporter",
    "compose",
    "describe",
    "fields_at",
    "format_path",
    "show",
    "unknown_key",
]

KeyPath = tuple[str | int, ...]

_PLAIN_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


# -- problems -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config file.

    Attributes:
        file: the file name (``<string>`` for text given directly).
        line: 1-based line of the offending key or value (``None`` when unknown).
        path: the key path, e.g. ``export.serial.config.baudrate`` (``""``: the whole file).
        message: what was expected, and what was found.
    """

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigFileError(ConfigError):
    """A config file is invalid. ``problems`` lists every problem found, by line.

    The message is one ``FILE:LINE: KEY.PATH: expected ...`` line per problem.
    """

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: p.line or 0))
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(path: KeyPath) -> str:
    """``("export", "a.b", "labels", 0)`` -> ``export['a.b'].labels[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY_RE.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


class Reporter:
    """Collects problems, finding each one's line from the key path."""

    def __init__(self, file: str, lines: Mapping[KeyPath, int]) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[ConfigProblem] = []

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``; for a missing key, the line of its nearest ancestor."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def add(self, path: KeyPath, message: str) -> None:
        """Record a problem at ``path``."""
        self.problems.append(ConfigProblem(self.file, self.line(path), format_path(path), message))

    def raise_if_any(self) -> None:
        """Raise every problem recorded so far as one :class:`ConfigFileError`."""
        if self.problems:
            raise ConfigFileError(self.problems)


# -- YAML with lines ------------------------------------------------------------------------

_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


#: Most values a config may expand to: aliases can make a few lines expand exponentially
#: (the "billion laughs"), so expansion stops here with a problem.
MAX_CONFIG_VALUES = 100_000
#: Largest config text, in characters.
MAX_CONFIG_CHARS = 4 * 1024 * 1024


class _TooBig(Exception):
    pass


class _Composer:
    """Turns a composed YAML node graph into plain data, recording each key's line."""

    def __init__(self, loader: _Loader, reporter: Reporter, lines: dict[KeyPath, int]) -> None:
        self.loader = loader
        self.reporter = reporter
        self.lines = lines
        self._active: set[int] = set()
        self._count = 0

    def value(self, node: yaml.Node, path: KeyPath) -> Any:
        self._count += 1
        if self._count > MAX_CONFIG_VALUES:
            raise _TooBig
        if id(node) in self._active:
            self._problem(path, node, "recursive YAML alias (an anchor used inside itself)")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                items = []
                for index, item in enumerate(node.value):
                    self.lines[(*path, index)] = _line(item)
                    items.append(self.value(item, (*path, index)))
                return items
            return self.scalar(node, path)
        finally:
            self._active.discard(id(node))

    def scalar(self, node: yaml.Node, path: KeyPath) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self._problem(path, node, f"invalid value: {exc.problem}")
            return None

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        # Merge keys (<<: *anchor) first, earlier sources winning; explicit keys override.
        for source in reversed(self._merge_sources(node, path)):
            result.update(self.mapping(source, path))
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            line = _line(key_node)
            if key in first_seen:
                self.reporter.problems.append(
                    ConfigProblem(
                        self.reporter.file,
                        line,
                        format_path((*path, key)),
                        f"duplicate key (first defined on line {first_seen[key]}); "
                        "each key may appear once",
                    )
                )
                continue
            first_seen[key] = line
            self.lines[(*path, key)] = line
            result[key] = self.value(value_node, (*path, key))
        return result

    def _merge_sources(self, node: yaml.MappingNode, path: KeyPath) -> list[yaml.MappingNode]:
        sources: list[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            if isinstance(value_node, yaml.MappingNode):
                sources.append(value_node)
            elif isinstance(value_node, yaml.SequenceNode) and all(
                isinstance(item, yaml.MappingNode) for item in value_node.value
            ):
                sources.extend(value_node.value)
            else:
                self._problem(path, key_node, "a merge key (<<) takes a mapping or a list of them")
        return sources

    def _key(self, node: yaml.Node, path: KeyPath) -> str | None:
        key = self.scalar(node, path) if isinstance(node, yaml.ScalarNode) else node
        if isinstance(key, str):
            return key
        if isinstance(key, int) and not isinstance(key, bool):
            return str(key)
        message = f"keys must be strings (got {show(key)}); quote the key"
        self.reporter.problems.append(
            ConfigProblem(self.reporter.file, _line(node), format_path(path), message)
        )
        return None

    def _problem(self, path: KeyPath, node: yaml.Node, message: str) -> None:
        self.reporter.problems.append(
            ConfigProblem(
                self.reporter.file,
                self.lines.get(path, _line(node)),
                format_path(path),
                message,
            )
        )


def compose(text: str, reporter: Reporter, lines: dict[KeyPath, int]) -> Any:
    """Parse ``text`` into plain data, filling ``lines`` and reporting problems.

    Returns ``None`` for an empty document or when the YAML is invalid (then a problem was
    reported).
    """
    loader: _Loader | None = None
    if len(text) > MAX_CONFIG_CHARS:
        message = f"the config is larger than {MAX_CONFIG_CHARS} characters"
        reporter.problems.append(ConfigProblem(reporter.file, None, "", message))
        return None
    try:
        loader = _Loader(text)  # the reader rejects control characters already here
        root = loader.get_single_node()
        if root is None:
            return None
        lines[()] = _line(root)
        return _Composer(loader, reporter, lines).value(root, ())
    except _TooBig:
        message = f"the YAML expands to more than {MAX_CONFIG_VALUES} values (aliases of aliases?)"
        reporter.problems.append(ConfigProblem(reporter.file, None, "", message))
        return None
    except yaml.MarkedYAMLError as exc:
        reporter.problems.append(_syntax_problem(reporter.file, exc))
        return None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        message = f"invalid YAML: unacceptable character #x{exc.character:04x} ({exc.reason})"
        reporter.problems.append(ConfigProblem(reporter.file, line, "", message))
        return None
    except yaml.YAMLError as exc:
        reporter.problems.append(ConfigProblem(reporter.file, None, "", f"invalid YAML: {exc}"))
        return None
    finally:
        if loader is not None:
            loader.dispose()


def _syntax_problem(file: str, exc: yaml.MarkedYAMLError) -> ConfigProblem:
    mark = exc.problem_mark or exc.context_mark
    message = "invalid YAML: "
    if exc.context and exc.context_mark is not None and exc.problem:
        message += f"{exc.context} (line {int(exc.context_mark.line) + 1}), "
    message += str(exc.problem or exc.context)
    if "\\t" in message or "\t" in message:
        message += " (tabs cannot indent YAML; use spaces)"
    return ConfigProblem(file, None if mark is None else int(mark.line) + 1, "", message)


# -- pydantic errors -> problems ------------------------------------------------------------

_EXPECTED = {
    "string_type": "expected a string",
    "string_too_short": "expected a non-empty string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected a boolean (true or false)",
    "bool_parsing": "expected a boolean (true or false)",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
}


def show(value: Any) -> str:
    """A found value as a message shows it: YAML words for null and booleans, short reprs."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(err: ErrorDetails) -> str:
    """Word a pydantic error as ``expected X (got Y)``."""
    kind = err["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    text = _EXPECTED.get(kind)
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        text = "expected a number " + str(err["msg"]).removeprefix("Input should be ")
    elif text is None:
        text = str(err["msg"])
        text = (
            "expected " + text.removeprefix("Input should be ")
            if text.startswith("Input should be ")
            else text[:1].lower() + text[1:]
        )
    value = err.get("input")
    text += f" (got {show(value)})"
    if kind == "string_type" and isinstance(value, int | float):
        text += "; quote it to make it a string"
    return text


def fields_at(model: Any, loc: Sequence[str | int]) -> list[str]:
    """The keys the model accepts at ``loc`` (for "unknown key" messages)."""
    current = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif getattr(current, "__origin__", None) in (dict, tuple, list):
            current = current.__args__[-1 if current.__origin__ is dict else 0]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    # Optional[X] / X | None -> X; Annotated[X, ...] -> X
    while True:
        args = getattr(annotation, "__args__", None)
        metadata = getattr(annotation, "__metadata__", None)
        if metadata is not None:
            annotation = annotation.__origin__
        elif args and type(None) in args and len(args) == 2:
            annotation = next(a for a in args if a is not type(None))
        else:
            return annotation


def unknown_key(key: str, allowed: Sequence[str], what: str = "key") -> str:
    """The message for an unknown key: what is allowed, and the closest match."""
    message = f"unknown {what}"
    if allowed:
        message += f" (expected one of: {', '.join(allowed)})"
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
    return message
