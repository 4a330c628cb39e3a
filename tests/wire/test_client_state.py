"""The blocking client's lifecycle: ``ClientState`` and its one transition table."""

from __future__ import annotations

import pytest

from tether.errors import ConnectionLost, LifecycleError
from tether.wire import ClientConnection, ClientState, MockTransport
from tether.wire._state import CLIENT_TRANSITIONS, ClientEvent


def test_the_table_covers_every_state_and_event_but_leaving_closed_or_broken() -> None:
    for state in ClientState:
        for event in ClientEvent:
            expected = not (event is ClientEvent.ACCEPTED and state is not ClientState.HANDSHAKE)
            assert ((state, event) in CLIENT_TRANSITIONS) is expected, (state, event)
    assert CLIENT_TRANSITIONS[ClientState.CLOSED, ClientEvent.FAILED] is ClientState.CLOSED


def test_an_illegal_move_names_the_role_the_state_and_the_event() -> None:
    connection = ClientConnection(MockTransport(lambda *a: None), keepalive=None)
    assert connection.state is ClientState.OPEN
    with pytest.raises(LifecycleError, match=r"client connection: accepted .* state OPEN"):
        connection._advance(ClientEvent.ACCEPTED)
    connection.close()
    assert connection.state is ClientState.CLOSED


def test_a_broken_connection_fails_calls_at_once_with_the_cause() -> None:
    transport = MockTransport(lambda *a: None)
    connection = ClientConnection(transport, keepalive=None)
    connection._fail_all(ConnectionLost("the exporter went away"))
    assert connection.state is ClientState.BROKEN and not connection.alive
    with pytest.raises(ConnectionLost, match="the exporter went away"):
        connection.call("n", "m", [], {})
    connection.close()
    assert connection.state is ClientState.CLOSED
