"""Every test of the kit must leave no kit thread (but serve()'s parked loop thread) and no open
runtime behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tether.testing import DriverRuntime
from tether.testing._serve import SERVE_LOOPS


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("tether-") and t.ident not in before and not SERVE_LOOPS.is_parked(t)
    ]
    assert leaked == [], f"kit threads outlived the test: {leaked}"
    runtime = DriverRuntime.current()
    assert runtime is None, f"a DriverRuntime was left open: {runtime!r}"
