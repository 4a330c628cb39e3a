"""Modules stay small enough to read: the wire's client and server under 500 lines, none over 700.

A module that grows past its line has more than one job: split it along that seam (as the
server's liveness went to ``wire/_liveness.py``) rather than raise the number.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "tether"
_LIMITS = {"wire/_client.py": 500, "wire/_server.py": 500}
_ANY_MODULE = 700


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("module", sorted(_LIMITS))
def test_the_wire_client_and_server_stay_under_their_line(module: str) -> None:
    assert _lines(SRC / module) < _LIMITS[module]


def test_no_module_is_over_700_lines() -> None:
    sizes = {str(p.relative_to(SRC)): _lines(p) for p in SRC.rglob("*.py")}
    assert sizes, SRC
    assert {name: n for name, n in sizes.items() if n > _ANY_MODULE} == {}
