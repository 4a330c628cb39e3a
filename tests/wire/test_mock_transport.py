"""``MockTransport``: the client over a function, through a real server-role Connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tether import Driver, export
from tether.driver import ClientPolicy, build_client_tree, build_report, node_for
from tether.errors import ConnectionLost, DriverError, InvalidArgument, MethodNotFound
from tether.wire import ClientConnection, ClientState, MockTransport


class Reader(Driver):
    @export
    def read(self) -> Iterator[int]:
        yield 1  # never run: the mock answers


def handler(node: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if method == "add":
        return args[0] + args[1]
    if method == "count":
        return iter(range(args[0]))
    if method == "strict":
        raise InvalidArgument("strict(): no", parameter="value")
    raise ValueError(f"no {method}")


def test_calls_streaming_calls_and_errors() -> None:
    transport = MockTransport(handler, meta={"report": []})
    with ClientConnection(transport, keepalive=None) as connection:
        assert connection.server_meta == {"report": [], "window": 4 << 20, "max_frame": 1 << 20}
        assert connection.call("n", "add", [2, 3], {}) == 5
        assert list(connection.streaming_call("n", "count", [3], {})) == [0, 1, 2]
        with pytest.raises(InvalidArgument, match="no") as info:
            connection.call("n", "strict", [], {})
        assert info.value.parameter == "value"
        with pytest.raises(DriverError, match="ValueError: no boom"):
            connection.call("n", "boom", [], {})
        with pytest.raises(MethodNotFound), connection.open_stream("n", "s", [], {}):
            pass
        assert transport.calls[0] == ("n", "add", [2, 3], {})
    assert connection.state is ClientState.CLOSED
    with pytest.raises(ConnectionLost, match="closed"):
        connection.call("n", "add", [1, 1], {})


def test_a_client_tree_over_the_mock() -> None:
    driver = Reader()
    report = build_report(node_for(driver, "root"))

    def answer(node: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Iterator[int]:
        assert (node, method) == (driver.uuid, "read")
        return iter([7])

    connection = ClientConnection(MockTransport(answer, meta={"report": report}), keepalive=None)
    try:
        tree = build_client_tree(connection.server_meta["report"], connection, ClientPolicy())
        assert list(tree.streaming_call("read")) == [7]
    finally:
        connection.close()
