"""The lease queue as pure functions: grants, fairness, atomicity, policies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.controller import parse_selector
from tether.controller._scheduler import (
    OPEN_MAX_DURATION,
    Grant,
    LabIndex,
    Policy,
    RequestView,
    Slot,
    assign,
    decide_policy,
    queue_order,
    schedule,
    unsatisfiable_reason,
)

Ex = tuple[str, dict[str, str], bool]


def ex(name: str, grantable: bool = True, **labels: str) -> Ex:
    return (name, labels, grantable)


def lab(exporters: list[Ex]) -> tuple[LabIndex, set[str]]:
    index = LabIndex({name: labels for name, labels, _ in exporters})
    return index, {name for name, _, grantable in exporters if not grantable}


def run(requests: list[RequestView], exporters: list[Ex]) -> tuple[list[Grant], dict[str, int]]:
    index, unavailable = lab(exporters)
    return schedule(requests, index, unavailable)


def fits(request: RequestView, slot: Slot, index: LabIndex, name: str) -> bool:
    return name in index.candidates(slot, request.allowed)


def req(id: str, *selectors: str, priority: int = 0, seq: int = 0) -> RequestView:
    slots = tuple(
        Slot(exporter=s[1:]) if s.startswith("@") else Slot(selector=parse_selector(s))
        for s in selectors
    )
    return RequestView(id, priority, seq, slots)


def test_queue_order_is_priority_then_arrival() -> None:
    requests = [req("a", "", seq=1), req("b", "", priority=5, seq=3), req("c", "", seq=0)]
    assert [r.id for r in queue_order(requests)] == ["b", "c", "a"]


def test_first_come_first_served_within_a_priority() -> None:
    grants, positions = run(
        [req("late", "b=x", seq=2), req("early", "b=x", seq=1)], [ex("e1", b="x")]
    )
    assert [(g.request_id, g.exporters) for g in grants] == [("early", ("e1",))]
    assert positions == {"late": 1}


def test_higher_priority_goes_first() -> None:
    grants, _ = run(
        [req("low", "b=x", seq=1), req("high", "b=x", priority=1, seq=2)], [ex("e1", b="x")]
    )
    assert [g.request_id for g in grants] == ["high"]


def test_a_later_request_cannot_take_what_an_earlier_waiter_could_use() -> None:
    # "big" needs two rpi4 and only one is free: it waits, and keeps that one for itself.
    exporters = [ex("r1", b="rpi4"), ex("r2", False, b="rpi4"), ex("o1", b="other")]
    grants, positions = run(
        [req("big", "b=rpi4", "b=rpi4", seq=1), req("small", "b=rpi4", seq=2)], exporters
    )
    assert grants == []
    assert positions == {"big": 1, "small": 2}
    # A later request for something the waiter cannot use is served.
    grants, _ = run(
        [req("big", "b=rpi4", "b=rpi4", seq=1), req("other", "b=other", seq=2)], exporters
    )
    assert [g.request_id for g in grants] == ["other"]


def test_several_exporters_are_assigned_distinctly_and_atomically() -> None:
    index, _ = lab([ex("a", b="x", c="1"), ex("b", b="x")])
    pool = index.names
    # Greedy would give the first slot 'a' and leave "c=1" without; matching finds the way.
    assert assign(req("r", "b=x", "c=1"), index, pool) == ("b", "a")
    assert assign(req("r", "b=x", "b=x", "b=x"), index, pool) is None
    assert assign(req("r", "@b", "b=x"), index, pool) == ("b", "a")
    assert assign(req("r", "b=x"), index, {"b"}) == ("b",)


def test_unavailable_exporters_are_never_granted() -> None:
    grants, positions = run([req("r", "b=x")], [ex("e1", False, b="x")])
    assert grants == []
    assert positions == {"r": 1}


def test_unsatisfiable_reasons() -> None:
    exporters, _ = lab([ex("e1", False, b="x"), ex("e2", b="y")])
    assert unsatisfiable_reason(req("r", "b=x"), exporters) is None  # busy is not hopeless
    assert unsatisfiable_reason(req("r", "b=z"), exporters) == "no exporter matches selector 'b=z'"
    assert "2 distinct exporters" in str(unsatisfiable_reason(req("r", "b=x", "b=x"), exporters))
    assert (
        unsatisfiable_reason(req("r", "@ghost"), exporters) == "no exporter matches exporter ghost"
    )


def test_policies() -> None:
    exporters, _ = lab([ex("e1", site="a"), ex("e2", site="b")])
    slots = [Slot(selector=parse_selector("site=a"))]
    assert decide_policy("alice", [], slots, exporters).max_duration == OPEN_MAX_DURATION  # type: ignore[union-attr]
    policies = [
        Policy("lab", ("*",), parse_selector("site=a"), 0, 3600),
        Policy("ci", ("ci",), parse_selector("site=a"), 10, 600),
        Policy("b-side", ("ci",), parse_selector("site=b"), 50, 60),
    ]
    alice = decide_policy("alice", policies, slots, exporters)
    assert alice is not None
    assert (alice.priority, alice.max_duration) == (0, 3600)
    ci = decide_policy("ci", policies, slots, exporters)
    assert ci is not None
    # b-side allows nothing matching site=a, so it does not lend its priority.
    assert (ci.priority, ci.max_duration, ci.policies) == (10, 3600, ("lab", "ci"))
    assert decide_policy("x", [policies[1]], slots, exporters) is None
    request = RequestView("r", 0, 0, (Slot(selector=parse_selector("site=b")),), alice.allowed)
    assert "no access policy" in str(unsatisfiable_reason(request, exporters))


# -- properties -----------------------------------------------------------------------------

BOARDS = ["a", "b", "c"]


@st.composite
def labs(draw: st.DrawFn) -> tuple[list[Ex], list[RequestView]]:
    exporters = [
        (f"e{i}", {"b": draw(st.sampled_from(BOARDS))}, draw(st.booleans()))
        for i in range(draw(st.integers(0, 8)))
    ]
    requests = []
    for i in range(draw(st.integers(0, 10))):
        selectors = draw(
            st.lists(
                st.sampled_from(["b=a", "b=b", "b=c", "b!=a", "", "@e0", "@e3"]),
                min_size=1,
                max_size=3,
            )
        )
        requests.append(
            req(f"r{i}", *selectors, priority=draw(st.integers(0, 2)), seq=draw(st.integers(0, 99)))
        )
    return exporters, requests


@settings(max_examples=300, deadline=None)
@given(labs())
def test_schedule_properties(lab_and_queue: tuple[list[Ex], list[RequestView]]) -> None:
    exporters, requests = lab_and_queue
    index, unavailable = lab(exporters)
    grants, positions = schedule(requests, index, unavailable)
    by_id = {r.id: r for r in requests}
    handed = [name for g in grants for name in g.exporters]
    # No exporter twice; only available ones; each fits its slot; all slots served at once.
    assert len(handed) == len(set(handed))
    assert not set(handed) & unavailable
    for grant in grants:
        request = by_id[grant.request_id]
        assert len(grant.exporters) == len(request.slots)
        pairs = zip(request.slots, grant.exporters, strict=True)
        assert all(fits(request, slot, index, name) for slot, name in pairs)
    # Everyone is either granted or has a position, positions are 1..n in queue order.
    assert {g.request_id for g in grants} | set(positions) == set(by_id)
    waiting = [r.id for r in queue_order(requests) if r.id in positions]
    assert [positions[i] for i in waiting] == list(range(1, len(waiting) + 1))
    # No overtaking: nothing granted to a later request could serve an earlier waiting one.
    order = {r.id: k for k, r in enumerate(queue_order(requests))}
    for grant in grants:
        for earlier in waiting:
            if order[earlier] < order[grant.request_id]:
                blocker = by_id[earlier]
                for name in grant.exporters:
                    assert not any(fits(blocker, s, index, name) for s in blocker.slots)
    # The head of the queue cannot be served from what is left.
    if waiting:
        left = index.names - unavailable - set(handed)
        assert assign(by_id[waiting[0]], index, left) is None


@settings(max_examples=200, deadline=None)
@given(labs())
def test_unsatisfiable_means_no_lab_state_could_grant_it(
    lab_and_queue: tuple[list[Ex], list[RequestView]],
) -> None:
    exporters, requests = lab_and_queue
    index, _ = lab(exporters)
    for request in requests:
        hopeless = unsatisfiable_reason(request, index) is not None
        assert hopeless == (assign(request, index, index.names) is None)


@pytest.mark.parametrize("waiters", [500])
def test_a_long_queue_of_identical_requests_is_cheap(waiters: int) -> None:
    index = LabIndex({f"e{i}": {"pool": str(i % 10)} for i in range(5000)})
    busy = {f"e{i}" for i in range(0, 5000, 10)}
    requests = [req(f"r{i}", "pool=0", seq=i) for i in range(waiters)]
    requests.append(req("free", "pool=3", seq=waiters))
    grants, positions = schedule(requests, index, busy)
    assert [g.request_id for g in grants] == ["free"]
    assert len(positions) == waiters
