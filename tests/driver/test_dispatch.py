"""``CallDispatcher``: lookup, the running check, binding, offload, and the error table."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tether import Driver, export
from tether.driver import CallDispatcher, DriverHost
from tether.errors import (
    DriverError,
    DriverNotImplemented,
    DriverNotRunning,
    DriverTimeout,
    InvalidArgument,
    MethodNotFound,
    NodeNotFound,
    error_from_wire,
)


class Probe(Driver):
    @export
    async def level(self, value: int) -> int:
        return value

    @export
    def where(self) -> str:
        return threading.current_thread().name

    @export
    def count(self, n: int) -> Iterator[int]:
        yield from range(n)

    @export
    async def acount(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i


async def _collect(answer: Any) -> list[Any]:
    return [item async for item in answer]


def test_calls_bind_arguments_and_run_sync_methods_off_the_loop() -> None:
    async def main() -> None:
        driver = Probe()
        host = DriverHost(driver)
        await host.start()
        dispatcher = CallDispatcher(host)
        assert await dispatcher.call(driver.uuid, "level", ["7"], {}) == 7  # type: ignore[misc]
        loop_thread = threading.current_thread().name
        assert await dispatcher.call(driver.uuid, "where", [], {}) != loop_thread  # type: ignore[misc]
        assert await _collect(dispatcher.call(driver.uuid, "count", [3], {})) == [0, 1, 2]
        assert await _collect(dispatcher.call(driver.uuid, "acount", [2], {})) == [0, 1]
        with pytest.raises(InvalidArgument, match="value"):
            dispatcher.call(driver.uuid, "level", ["lots"], {})
        with pytest.raises(MethodNotFound, match="nope"):
            dispatcher.call(driver.uuid, "nope", [], {})
        with pytest.raises(NodeNotFound):
            dispatcher.call("no-such-uuid", "level", [1], {})
        await host.stop()

    asyncio.run(main())


def test_a_driver_that_is_not_running_gets_a_clear_error() -> None:
    async def main() -> None:
        driver = Probe()
        host = DriverHost(driver)
        dispatcher = CallDispatcher(host)
        with pytest.raises(DriverNotRunning, match=r"Probe\.level.*not running.*created"):
            dispatcher.call(driver.uuid, "level", [1], {})
        await host.start()
        assert await dispatcher.call(driver.uuid, "level", [1], {}) == 1  # type: ignore[misc]
        await host.stop()
        with pytest.raises(DriverNotRunning, match="stopped"):
            dispatcher.call(driver.uuid, "level", [1], {})

    asyncio.run(main())


@pytest.mark.parametrize(
    ("raised", "expected", "code"),
    [
        (NotImplementedError(), DriverNotImplemented, "not_implemented"),
        (TimeoutError("slow"), DriverTimeout, "timeout"),
        (ValueError("bad"), DriverError, "driver_error"),
        (InvalidArgument("x"), InvalidArgument, "invalid_argument"),
        (DriverNotRunning("off"), DriverNotRunning, "not_running"),
    ],
)
def test_the_error_table(raised: Exception, expected: type[Exception], code: str) -> None:
    error = CallDispatcher(DriverHost(Probe())).wire_error("m", raised)
    assert type(error) is expected and error.code == code
    assert type(error_from_wire(error.to_wire())) is expected  # and it survives the wire


def test_a_huge_driver_message_is_logged_cut(caplog: pytest.LogCaptureFixture) -> None:
    dispatcher = CallDispatcher(DriverHost(Probe()))
    with caplog.at_level("INFO", logger="tether.driver.dispatch"):
        error = dispatcher.wire_error("m", ValueError("x" * 1_000_000))
        dispatcher.wire_error("m", ValueError("short"))
    assert type(error) is DriverError
    huge, short = caplog.records
    assert len(huge.getMessage()) < 3000 and "more characters" in huge.getMessage()
    assert huge.exc_info is None and short.exc_info is not None  # tracebacks for short ones
