"""The client's hook-output diffing: each report is the end of a growing text; only what is
new is shown, also once the start of the output has been dropped."""

from __future__ import annotations

import io

from tether.client import hook_printer
from tether.client._watch import new_output


def test_new_output_is_what_follows_the_last_shown_tail() -> None:
    assert new_output("", "a\nb\n") == "a\nb\n"
    assert new_output("a\nb\n", "a\nb\nc\n") == "c\n"
    # The tail moved on: its start was dropped, the overlap is found anyway.
    assert new_output("a\nb\nc\n", "c\nd\n") == "d\n"
    assert new_output("a\nb\n", "a\nb\n") == ""
    # Nothing in common (more than the tail was printed meanwhile): all of it.
    assert new_output("old\n", "new\n") == "new\n"


def test_hook_printer_prefixes_each_line_and_says_how_the_hook_ended() -> None:
    out = io.StringIO()
    show = hook_printer(out)
    show({"hook": "before_lease", "state": "running"}, "flashing\n")
    show({"hook": "before_lease", "state": "failed"}, "no card\n")
    assert out.getvalue() == (
        "[before_lease] flashing\n[before_lease] no card\n[before_lease] failed\n"
    )
