"""How a queued request's reason to wait is worded (the pure part of ``_waiting``)."""

from __future__ import annotations

from tether.controller._scheduler import LabIndex
from tether.controller._waiting import waiting_reasons

LAB = LabIndex({f"b{i}": {"board": "rpi4"} for i in range(5)} | {"x1": {"board": "imx8"}})


def test_nothing_is_said_while_a_matching_exporter_is_in_the_pool() -> None:
    down = {"b0": "offline", "b1": "in maintenance (reflash)"}
    assert waiting_reasons(LAB, down, [("l1", [{"selector": "board=rpi4"}], None)]) == {}
    assert waiting_reasons(LAB, {}, [("l1", [{"exporter": "b0"}], None)]) == {}


def test_three_are_named_and_the_rest_counted_and_slots_are_told_apart() -> None:
    down = {f"b{i}": "offline" for i in range(5)}
    reasons = waiting_reasons(
        LAB,
        down,
        [
            ("l1", [{"selector": "board=rpi4"}], None),
            ("l2", [{"selector": "board=imx8"}, {"selector": "board=rpi4"}], None),
            ("l3", [{"selector": "board=rpi4"}], ["board=imx8"]),  # its policy allows none
        ],
    )
    assert reasons == {
        "l1": "waiting: the only matching exporters are offline: b0, b1, b2 and 2 more",
        "l2": "waiting: the only exporters matching selector 'board=rpi4' are offline: "
        "b0, b1, b2 and 2 more",
    }
