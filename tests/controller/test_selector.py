"""The label selector and duration parsers (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.controller import parse_duration, parse_selector
from tether.controller._selector import Op, Requirement, Selector
from tether.errors import ControllerError, SelectorError

LABELS = {"board": "rpi4", "site": "lab-a", "rev": "1.2"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("board=rpi4", True),
        ("board==rpi4", True),
        ("board=bbb", False),
        ("board!=bbb", True),
        ("missing!=x", True),
        ("board in (bbb, rpi4)", True),
        ("board in(bbb)", False),
        ("board notin (bbb)", True),
        ("missing notin (x)", True),
        ("board", True),
        ("missing", False),
        ("!missing", True),
        ("!board", False),
        ("board=rpi4, site in (lab-a,lab-b), !broken, rev=1.2", True),
        ("board=rpi4,site=lab-b", False),
        ("  board = rpi4  ", True),
    ],
)
def test_selector_semantics(text: str, matches: bool) -> None:
    assert parse_selector(text).matches(LABELS) is matches


def test_parse_builds_requirements() -> None:
    assert parse_selector("a=1,b notin (x,y),!c,d") == Selector(
        (
            Requirement("a", Op.EQ, ("1",)),
            Requirement("b", Op.NOTIN, ("x", "y")),
            Requirement("c", Op.ABSENT),
            Requirement("d", Op.EXISTS),
        )
    )


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("board=", 6, "value after 'board='"),
        ("=rpi4", 0, "label key"),
        ("board=rpi4,", 11, "label key"),
        ("board rpi4", 6, "'=', '!=', 'in', 'notin'"),
        ("board in rpi4", 9, "'(' after 'board in'"),
        ("board in (a b)", 12, "',' or ')'"),
        ("board in ()", 10, "value in 'board in (...)'"),
        ("a=b;c=d", 3, "',' between requirements"),
        ("!", 1, "label key after '!'"),
        ("a=b c", 4, "',' between requirements"),
    ],
)
def test_bad_selectors_name_the_position_and_what_was_expected(
    text: str, position: int, expected: str
) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    assert info.value.details["position"] == position
    assert f"at position {position}" in str(info.value)
    assert expected in str(info.value)
    assert info.value.status == 422
    assert info.value.code == "bad_selector"


words = st.from_regex(r"[A-Za-z0-9_./:-]{1,8}", fullmatch=True).filter(
    lambda w: w not in ("in", "notin")
)


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    op = draw(st.sampled_from(list(Op)))
    key = draw(words)
    if op in (Op.EQ, Op.NE):
        return Requirement(key, op, (draw(words),))
    if op in (Op.IN, Op.NOTIN):
        return Requirement(key, op, tuple(draw(st.lists(words, min_size=1, max_size=3))))
    return Requirement(key, op)


@given(st.lists(requirements(), max_size=5))
def test_printing_and_parsing_round_trip(reqs: list[Requirement]) -> None:
    selector = Selector(tuple(reqs))
    assert parse_selector(str(selector)) == selector


@given(st.lists(requirements(), max_size=4), st.dictionaries(words, words, max_size=4))
def test_a_selector_matches_when_every_requirement_does(
    reqs: list[Requirement], labels: dict[str, str]
) -> None:
    selector = parse_selector(str(Selector(tuple(reqs))))
    assert selector.matches(labels) == all(r.matches(labels) for r in reqs)


@given(st.text(max_size=30))
def test_parse_never_raises_anything_but_selector_error(text: str) -> None:
    try:
        parse_selector(text)
    except SelectorError as exc:
        assert 0 <= exc.details["position"] <= len(text)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        (" 1h 1s ", 3601.0),
        ("0.5m", 30.0),
    ],
)
def test_durations(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "soon", "10x", "m", "1h-", 0, -5, "0s", True, "inf"])
def test_bad_durations(value: str | float) -> None:
    with pytest.raises(ControllerError) as info:
        parse_duration(value)
    assert info.value.code == "bad_duration"
    assert "expected a positive number of seconds" in info.value.message


@pytest.mark.parametrize("value", ["1h1h1h", "30m1h", "1s1m", "0.0001", 0.0005, "1e308", 10**12])
def test_repeated_or_unordered_units_and_absurd_lengths_are_refused(value: str | float) -> None:
    with pytest.raises(ControllerError) as info:
        parse_duration(value)
    assert info.value.code == "bad_duration"
