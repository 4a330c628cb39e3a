"""Fixtures for the real-socket tests of ``tether.wire``."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from tether.wire import new_event_loop

T = TypeVar("T")


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Awaitable[T]], T]]:
    """Run a coroutine to completion on a fresh loop of the parametrised kind."""
    factory = asyncio.new_event_loop if request.param == "asyncio" else new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        yield lambda coro: runner.run(asyncio.wait_for(coro, 60))


@pytest.fixture
def socket_dir() -> Iterator[str]:
    # Not tmp_path: unix socket paths must stay under ~100 bytes.
    with tempfile.TemporaryDirectory(prefix="tether-wire-") as path:
        yield path
