"""Label selectors and durations: small hand-written parsers with precise errors.

Grammar (comma = AND, whitespace around tokens ignored)::

    selector    := requirement ("," requirement)*
    requirement := KEY "=" VALUE | KEY "==" VALUE | KEY "!=" VALUE
                 | KEY "in" "(" VALUE ("," VALUE)* ")" | KEY "notin" "(" ... ")"
                 | KEY | "!" KEY
    KEY, VALUE  := [A-Za-z0-9_./:-]+

Errors are :class:`~tether.errors.SelectorError` with the 0-based ``position`` of the offending
character and what was expected there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from tether.errors import ControllerError, SelectorError

__all__ = [
    "MAX_DURATION",
    "MAX_LABELS",
    "MAX_LABEL_KEY",
    "MAX_LABEL_VALUE",
    "MAX_SELECTOR",
    "MIN_DURATION",
    "Op",
    "Requirement",
    "Selector",
    "is_label_word",
    "label_problem",
    "parse_duration",
    "parse_selector",
]

_WORD = re.compile(r"[A-Za-z0-9_./:-]+")
_WORD_CHARS = "letters, digits, '-', '_', '.', '/', ':'"


#: Most labels one exporter may have (admin's and reported together count separately).
MAX_LABELS = 64
#: Longest label key and value, in characters.
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 256
#: Longest selector text, in characters.
MAX_SELECTOR = 4096
#: Shortest lease, seconds.
MIN_DURATION = 1.0


def is_label_word(text: str) -> bool:
    """True when ``text`` can be a label key or value (usable unquoted in a selector)."""
    return _WORD.fullmatch(text) is not None


def label_problem(labels: object) -> str | None:
    """What is wrong with ``labels`` as a label mapping (None: nothing).

    Keys and values must be selector words (:func:`is_label_word`) of at most
    :data:`MAX_LABEL_KEY` / :data:`MAX_LABEL_VALUE` characters; at most :data:`MAX_LABELS`.
    """
    if not isinstance(labels, Mapping):
        return "labels must be a mapping of key to value"
    if len(labels) > MAX_LABELS:
        return f"at most {MAX_LABELS} labels (got {len(labels)})"
    for key, value in labels.items():
        for part, limit, what in ((key, MAX_LABEL_KEY, "key"), (value, MAX_LABEL_VALUE, "value")):
            if not isinstance(part, str):
                return f"label {what} {part!r} is not a string"
            if len(part) > limit:
                return f"label {what} {part[:40]!r}... is longer than {limit} characters"
            if not is_label_word(part):
                return (
                    f"bad label {key!r}: {value!r}: keys and values must be "
                    f"{_WORD_CHARS} (1 to {limit} of them)"
                )
    return None


class Op(StrEnum):
    """What a requirement checks."""

    EQ = "="
    NE = "!="
    IN = "in"
    NOTIN = "notin"
    EXISTS = "exists"
    ABSENT = "!"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One comma-separated part of a selector."""

    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy this requirement."""
        value = labels.get(self.key)
        if self.op is Op.EQ:
            return value == self.values[0]
        if self.op is Op.NE:
            return value != self.values[0]
        if self.op is Op.IN:
            return value in self.values
        if self.op is Op.NOTIN:
            return value not in self.values
        if self.op is Op.EXISTS:
            return value is not None
        return value is None

    def __str__(self) -> str:
        if self.op is Op.EXISTS:
            return self.key
        if self.op is Op.ABSENT:
            return f"!{self.key}"
        if self.op in (Op.IN, Op.NOTIN):
            return f"{self.key} {self.op.value} ({', '.join(self.values)})"
        return f"{self.key}{self.op.value}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed label selector: all requirements must hold. The empty selector matches all."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy every requirement."""
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def peek(self, literal: str) -> bool:
        self.skip_space()
        return self.text.startswith(literal, self.pos)

    def take(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def fail(self, expected: str) -> SelectorError:
        self.skip_space()
        found = repr(self.text[self.pos]) if self.pos < len(self.text) else "the end"
        return SelectorError(
            f"bad selector {self.text!r}: at position {self.pos}, expected {expected}, "
            f"found {found}",
            position=self.pos,
            selector=self.text,
        )

    def word(self, what: str) -> str:
        self.skip_space()
        match = _WORD.match(self.text, self.pos)
        if match is None:
            raise self.fail(f"a {what} ({_WORD_CHARS})")
        self.pos = match.end()
        return match.group()

    def keyword(self, word: str) -> bool:
        """Take ``word`` only when it is a whole word followed by space or '('."""
        self.skip_space()
        end = self.pos + len(word)
        if self.text.startswith(word, self.pos) and (
            end == len(self.text) or self.text[end].isspace() or self.text[end] == "("
        ):
            self.pos = end
            return True
        return False


def parse_selector(text: str) -> Selector:
    """Parse a label selector such as ``board=rpi4,site in (a, b),!broken``.

    Args:
        text: the selector; empty or blank text matches every exporter.

    Returns:
        The parsed :class:`Selector`.

    Raises:
        SelectorError: the text does not parse; the message names the position and what was
            expected there.
    """
    if len(text) > MAX_SELECTOR:
        raise SelectorError(
            f"bad selector: longer than {MAX_SELECTOR} characters",
            position=MAX_SELECTOR,
            selector=text[:100],
        )
    scan = _Scanner(text)
    requirements: list[Requirement] = []
    if scan.at_end():
        return Selector()
    while True:
        requirements.append(_requirement(scan))
        if scan.at_end():
            return Selector(tuple(requirements))
        if not scan.take(","):
            raise scan.fail("',' between requirements, or the end")


def _requirement(scan: _Scanner) -> Requirement:
    if scan.take("!"):
        return Requirement(scan.word("label key after '!'"), Op.ABSENT)
    key = scan.word("label key")
    if scan.take("!="):
        return Requirement(key, Op.NE, (scan.word(f"value after '{key}!='"),))
    if scan.take("=="):
        return Requirement(key, Op.EQ, (scan.word(f"value after '{key}=='"),))
    if scan.take("="):
        return Requirement(key, Op.EQ, (scan.word(f"value after '{key}='"),))
    for word, op in (("notin", Op.NOTIN), ("in", Op.IN)):
        if scan.keyword(word):
            return Requirement(key, op, _value_set(scan, f"{key} {word}"))
    if scan.at_end() or scan.peek(","):
        return Requirement(key, Op.EXISTS)
    raise scan.fail(f"'=', '!=', 'in', 'notin', ',' or the end after label key {key!r}")


def _value_set(scan: _Scanner, what: str) -> tuple[str, ...]:
    if not scan.take("("):
        raise scan.fail(f"'(' after '{what}'")
    values = [scan.word(f"value in '{what} (...)'")]
    while scan.take(","):
        values.append(scan.word(f"value in '{what} (...)'"))
    if not scan.take(")"):
        raise scan.fail(f"',' or ')' in '{what} (...)'")
    return tuple(values)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_UNIT_ORDER = "dhms"
#: Longest duration accepted anywhere (policies cap leases further), seconds.
MAX_DURATION = 366 * 86400.0


def parse_duration(value: str | float | int, *, what: str = "duration") -> float:
    """Read a duration: seconds as a number, or text like ``90``, ``90s``, ``30m``, ``1h30m``.

    Units go from largest to smallest, each at most once (``1h30m``, not ``30m1h`` or
    ``1h1h``). The result is at least :data:`MIN_DURATION` and at most :data:`MAX_DURATION`.

    Args:
        value: the duration (a bool is not a number here).
        what: how to name the value in errors (e.g. the JSON field).

    Returns:
        Seconds.

    Raises:
        ControllerError: (``bad_duration``, 422) the value is not such a duration.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _bad_duration(value, what)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().replace(" ", "")
        if len(text) > 64:
            raise _bad_duration(value[:64] + "...", what)
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds, last = 0, 0.0, -1
            for match in _DURATION_PART.finditer(text):
                rank = _UNIT_ORDER.index(match.group(2))
                if match.start() != pos or rank <= last:
                    break
                seconds += float(match.group(1)) * _UNIT[match.group(2)]
                pos, last = match.end(), rank
            if pos != len(text) or not text:
                raise _bad_duration(value, what) from None
    if not seconds > 0 or seconds == float("inf"):
        raise _bad_duration(value, what)
    if seconds < MIN_DURATION or seconds > MAX_DURATION:
        raise ControllerError(
            f"bad {what} {value!r}: a duration is at least {MIN_DURATION:g} s and at most "
            f"{MAX_DURATION / 86400:g} days",
            code="bad_duration",
            status=422,
            field=what,
        )
    return seconds


def _bad_duration(value: object, what: str) -> ControllerError:
    return ControllerError(
        f"bad {what} {value!r}: expected a positive number of seconds or text like "
        "'90s', '30m', '1h30m', '2d'",
        code="bad_duration",
        status=422,
        field=what,
    )
