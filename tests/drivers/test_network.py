"""Network drivers against real local servers: TCP, unix sockets, UDP (framed datagrams)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.drivers.network import (
    DatagramClient,
    FrameDecoder,
    NetworkClient,
    TcpNetwork,
    UdpNetwork,
    UnixNetwork,
    encode_frame,
)
from tether.drivers.network._datagram import UdpStream
from tether.errors import DriverError
from tether.testing import DriverTestConfig, ForegroundDriverTest, serve

GUARD = 10.0


def upper_echo(server: socket.socket) -> threading.Thread:
    """Serve one connection: echo upper-cased until EOF, then close."""

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def round_trip(client: NetworkClient) -> None:
    with client.connect() as stream:
        stream.send(b"hello ")
        stream.send(b"device")
        got = b""
        while len(got) < 12:
            got += stream.receive()
        assert got == b"HELLO DEVICE"
        stream.send_eof()
        assert stream.receive() == b""  # the server saw EOF and closed


def test_tcp_round_trip_and_eof() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        thread = upper_echo(server)
        with serve(TcpNetwork(host="127.0.0.1", port=port)) as net:
            assert isinstance(net, NetworkClient)
            assert net.address() == f"127.0.0.1:{port}"
            round_trip(net)
        thread.join(GUARD)


def test_tcp_refused_names_the_endpoint() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    with serve(TcpNetwork(host="127.0.0.1", port=port)) as net:
        with (
            pytest.raises(DriverError, match=f"tcp 127.0.0.1:{port}: cannot connect: .*refused"),
            net.connect(),
        ):
            pass
        assert net.address().endswith(str(port))  # still serving


def test_unix_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "dut.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        thread = upper_echo(server)
        with serve(UnixNetwork(path=str(path))) as net:
            assert net.address() == str(path)
            round_trip(net)
        thread.join(GUARD)


def test_unix_missing_socket(tmp_path: Path) -> None:
    with (
        serve(UnixNetwork(path=str(tmp_path / "nope.sock"))) as net,
        pytest.raises(DriverError, match=r"unix socket .*nope.sock: cannot connect: No such file"),
        net.connect(),
    ):
        pass


# -- UDP ------------------------------------------------------------------------------------------


@pytest.fixture
def udp_server() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(GUARD)
        yield sock


def test_udp_datagrams_keep_their_boundaries(udp_server: socket.socket) -> None:
    port = udp_server.getsockname()[1]
    with serve(UdpNetwork(host="127.0.0.1", port=port)) as udp:
        assert isinstance(udp, DatagramClient)
        assert udp.address() == f"127.0.0.1:{port}"
        with udp.connect() as conn:
            conn.send(b"ping")
            conn.send(b"")
            conn.send(b"x" * 60000)
            data, peer = udp_server.recvfrom(65536)
            assert data == b"ping"
            assert udp_server.recvfrom(65536)[0] == b""
            assert udp_server.recvfrom(65536)[0] == b"x" * 60000
            udp_server.sendto(b"a", peer)
            udp_server.sendto(b"bc", peer)
            udp_server.sendto(b"", peer)
            udp_server.sendto(bytes(range(256)) * 200, peer)
            assert conn.receive() == b"a"
            assert conn.receive() == b"bc"
            assert conn.receive() == b""
            assert conn.receive() == bytes(range(256)) * 200


def test_udp_raw_stream_frames_may_be_split_anyhow(udp_server: socket.socket) -> None:
    port = udp_server.getsockname()[1]
    with serve(UdpNetwork(host="127.0.0.1", port=port)) as udp, udp.stream("connect") as stream:
        frames = encode_frame(b"one") + encode_frame(b"two")
        for byte in frames:  # one byte at a time: the exporter reassembles
            stream.send(bytes([byte]))
        assert udp_server.recvfrom(100)[0] == b"one"
        assert udp_server.recvfrom(100)[0] == b"two"


def test_udp_slow_client_drops_the_oldest(udp_server: socket.socket) -> None:
    port = udp_server.getsockname()[1]
    config = DriverTestConfig(
        UdpNetwork, driver_config={"host": "127.0.0.1", "port": port, "queue_size": 2}
    )
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        rt = test.runtime
        opener = test.driver.connect()
        stream: UdpStream = rt.run_to_completion(opener.__aenter__())
        rt.run_to_completion(stream.send(encode_frame(b"hello")))
        _, peer = udp_server.recvfrom(100)
        for n in range(5):
            udp_server.sendto(b"%d" % n, peer)
        assert rt.run_until(lambda: stream.dropped == 3, timeout=GUARD)
        assert rt.run_to_completion(stream.receive()) == encode_frame(b"3")
        assert rt.run_to_completion(stream.receive()) == encode_frame(b"4")
        rt.run_to_completion(stream.send_eof())
        assert rt.run_to_completion(stream.receive()) == b""
        rt.run_to_completion(opener.__aexit__(None, None, None))


def test_frame_decoder() -> None:
    decoder = FrameDecoder()
    data = encode_frame(b"ab") + encode_frame(b"") + encode_frame(b"c")
    out: list[bytes] = []
    for byte in data[:-1]:
        out += decoder.feed(bytes([byte]))
    assert out == [b"ab", b""]
    assert decoder.pending == 2
    assert decoder.feed(data[-1:]) == [b"c"]
    assert decoder.pending == 0
    with pytest.raises(ValueError, match=r"at most 65535 bytes \(got 65536\)"):
        encode_frame(b"x" * 65536)
