"""The built-in drivers through a real exporter: YAML config, TLS on loopback, a bearer token,
``tether.connect``, and real devices behind them (a pty, TCP/UDP/unix servers, subprocesses).

Each driver's own behaviour is tested with the test kit in its ``test_<family>.py``; this file
checks that the pieces meet: the config builds them, the report carries them, the allow-listed
client classes load on the far side, and calls and byte streams cross TLS.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tether.drivers.network import DatagramClient, NetworkClient
from tether.drivers.power import PowerClient
from tether.drivers.serial import SerialClient
from tether.drivers.shell import ShellClient
from tether.exporter import init_lab_certs, parse_config, run_exporter_in_thread


@pytest.fixture
def pty_device() -> Iterator[tuple[int, str]]:
    """A pty pair: the test plays the device on the master, the driver opens the slave path."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    yield master, path
    os.close(master)
    os.close(slave)


@pytest.fixture
def echo_servers(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A TCP, a UDP and a unix-socket echo server, each on its own thread."""
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    unix_path = tmp_path / "echo.sock"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(unix_path))
    unix.listen()

    def serve_stream(server: socket.socket) -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    def serve_datagrams() -> None:
        with udp:
            data, peer = udp.recvfrom(65536)
            udp.sendto(data.upper(), peer)

    threads = [
        threading.Thread(target=serve_stream, args=(tcp,), daemon=True),
        threading.Thread(target=serve_stream, args=(unix,), daemon=True),
        threading.Thread(target=serve_datagrams, daemon=True),
    ]
    for thread in threads:
        thread.start()
    yield {"tcp": tcp.getsockname()[1], "udp": udp.getsockname()[1], "unix": unix_path}
    for thread in threads:
        thread.join(timeout=10)


def test_every_family_through_a_tls_exporter(
    tmp_path: Path, pty_device: tuple[int, str], echo_servers: dict[str, object]
) -> None:
    master, tty = pty_device
    certs = init_lab_certs(tmp_path / "certs")
    state = tmp_path / "power.state"
    config = parse_config(
        f"""
name: e2e
labels: {{board: e2e}}
tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}
export:
  power:
    type: tether.drivers.power.CommandPower
    config:
      on_command: echo on > {state}
      off_command: echo off > {state}
      status_command: grep -q on {state}
  serial:
    type: tether.drivers.serial.PySerial
    config: {{url: {tty}, baudrate: 57600}}
  tcp: {{type: tether.drivers.network.TcpNetwork, config: {{host: 127.0.0.1, port: {echo_servers["tcp"]}}}}}
  udp: {{type: tether.drivers.network.UdpNetwork, config: {{host: 127.0.0.1, port: {echo_servers["udp"]}}}}}
  unix: {{type: tether.drivers.network.UnixNetwork, config: {{path: {echo_servers["unix"]}}}}}
  shell:
    type: tether.drivers.shell.Shell
    config:
      commands:
        greet: {{command: "echo hello {{name}}", params: {{name: str}}}}
""",
        "e2e.yaml",
    )
    with (
        run_exporter_in_thread(config, listen="tls://127.0.0.1:0") as running,
        tether.connect(running.url, running.token, ca=certs.ca) as dut,
    ):
        assert isinstance(dut.power, PowerClient)
        assert isinstance(dut.serial, SerialClient)
        assert isinstance(dut.tcp, NetworkClient) and isinstance(dut.unix, NetworkClient)
        assert isinstance(dut.udp, DatagramClient)
        assert isinstance(dut.shell, ShellClient)

        dut.power.on()
        assert state.read_text() == "on\n" and dut.power.status() is True
        dut.power.off()
        assert dut.power.status() is False

        with dut.serial.open() as console:
            os.write(master, b"U-Boot 2026.01\r\nlogin: ")
            console.expect("login: ", timeout=10)
            console.sendline("root")
            assert os.read(master, 100) == b"root\n"

        for name in ("tcp", "unix"):
            with dut.children[name].stream("connect") as stream:
                stream.send(b"ping " + name.encode())
                assert stream.receive() == b"ping " + name.encode()
                stream.send_eof()

        with dut.udp.connect() as datagrams:
            datagrams.send(b"quiet")
            assert datagrams.receive() == b"QUIET"

        result = dut.shell.run("greet", name="lab; rm -rf /")
        assert (result.status, result.stdout) == (0, b"hello lab; rm -rf /\n")
