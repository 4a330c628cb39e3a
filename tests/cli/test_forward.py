"""``PortForward`` (tether.client._forward): real sockets, through a real TcpNetwork driver."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from tether.client import PortForward, byte_stream_methods
from tether.driver import DriverClient
from tether.drivers.composite import Composite
from tether.drivers.network import TcpNetwork
from tether.drivers.power import MockPower
from tether.errors import ConfigError
from tether.testing import serve

from ._drivers import Gadget
from ._echo import echo_server, exchange


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    with echo_server() as port:
        yield port


@pytest.fixture(scope="module")
def net(echo_port: int) -> Iterator[DriverClient]:
    with serve(TcpNetwork(host="127.0.0.1", port=echo_port)) as client:
        yield client


def test_forwards_a_connection_through_the_driver(net: DriverClient) -> None:
    with PortForward(net) as forward:
        assert forward.method == "connect"
        assert forward.port > 0
        assert exchange(forward.port, b"hello through tether") == b"hello through tether"
        assert forward.accepted == 1


def test_large_transfer_crosses_flow_control_windows(net: DriverClient) -> None:
    payload = bytes(range(256)) * 4096 * 6  # 6 MiB each way, more than one 4 MiB window
    with PortForward(net) as forward:
        assert exchange(forward.port, payload) == payload


def test_each_connection_is_a_new_stream(net: DriverClient) -> None:
    results: dict[int, bytes] = {}

    def client(index: int, port: int) -> None:
        results[index] = exchange(port, f"client {index} ".encode() * 1000)

    with PortForward(net, "connect") as forward:
        threads = [threading.Thread(target=client, args=(i, forward.port)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert forward.accepted == 4
    assert results == {i: f"client {i} ".encode() * 1000 for i in range(4)}


def test_close_ends_open_connections(net: DriverClient) -> None:
    forward = PortForward(net).start()
    sock = socket.create_connection(("127.0.0.1", forward.port), timeout=30)
    sock.sendall(b"ping")
    assert sock.recv(4) == b"ping"  # the stream is up
    forward.close()
    assert sock.recv(100) == b""  # ended by close, not left hanging
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", forward.port), timeout=30)


def test_a_failing_stream_closes_that_connection_and_the_listener_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as unused:
        dead_port = unused.getsockname()[1]
    # nothing listens on dead_port any more: the driver's connect is refused
    with (
        serve(TcpNetwork(host="127.0.0.1", port=dead_port)) as dead,
        caplog.at_level(logging.WARNING, "tether.client.forward"),
        PortForward(dead) as forward,
    ):
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", forward.port), timeout=30) as sock:
                assert sock.recv(100) == b""
        assert forward.accepted == 2
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "-> root.connect" in messages[0] and "onnection refused" in messages[0].lower()


def test_method_must_be_a_byte_stream() -> None:
    with serve(Composite(children={"power": MockPower(), "gadget": Gadget()})) as root:
        assert byte_stream_methods(root.gadget) == ["upper"]  # type: ignore[attr-defined]
        with pytest.raises(ConfigError, match=r"'power' has no byte-stream method"):
            PortForward(root.power)  # type: ignore[attr-defined]
        with pytest.raises(ConfigError, match=r"method 'add' is a unary method"):
            PortForward(root.gadget, "add")  # type: ignore[attr-defined]
        with pytest.raises(ConfigError, match=r"method 'nope' does not exist"):
            PortForward(root.gadget, "nope")  # type: ignore[attr-defined]
        with PortForward(root.gadget) as forward:  # type: ignore[attr-defined]
            assert exchange(forward.port, b"shout") == b"SHOUT"


def test_port_in_use_raises_oserror(net: DriverClient) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        forward = PortForward(net, port=busy.getsockname()[1])
        with pytest.raises(OSError):
            forward.start()
        forward.close()
