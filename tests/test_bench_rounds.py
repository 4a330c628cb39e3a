"""``make bench`` merges its alternating rounds: medians of the numbers, the rest from round
one, every round kept, and a part that failed in some rounds still reports the others."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's bench package

from bench.__main__ import _merge_rounds


def test_numbers_become_medians_and_the_rounds_are_kept() -> None:
    rounds = [
        {"call_p50_us": 120.0, "count": 3, "ok": True, "versions": {"a": "1"}},
        {"call_p50_us": 98.0, "count": 5, "ok": False, "versions": {"a": "2"}},
        {"call_p50_us": 139.0, "count": 4, "ok": True, "versions": {"a": "3"}},
    ]
    merged = _merge_rounds(rounds)
    assert merged["call_p50_us"] == 120.0 and merged["count"] == 4
    assert merged["ok"] is True and merged["versions"] == {"a": "1"}  # not numbers: round one
    assert [r["call_p50_us"] for r in merged["round_results"]] == [120.0, 98.0, 139.0]
    assert "ok" not in merged["round_results"][0]  # booleans are not figures


def test_failed_rounds_are_left_out_and_all_failed_reports_the_error() -> None:
    merged = _merge_rounds([{"error": "timed out"}, {"x": 2.0}, {"x": 4.0}])
    assert merged["x"] == 3.0 and len(merged["round_results"]) == 2
    assert _merge_rounds([{"error": "a"}, {"error": "b"}]) == {"error": "b"}
    assert "round_results" not in _merge_rounds([{"x": 1.0}])  # one round: nothing to keep
