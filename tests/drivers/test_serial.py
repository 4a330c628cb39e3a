"""PySerial against real pty pairs: the driver opens the slave, the test plays the device on
the master. Also loop:// and socket:// (the worker-thread path), the console helpers, the
interactive console on a pty "terminal", and the dut hook."""

from __future__ import annotations

import os
import re
import select
import socket
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from serial import Serial
from serial.rfc2217 import PortManager

from tether.cli.dut import run as dut_run
from tether.drivers.composite import Composite
from tether.drivers.serial import (
    ConsoleClosed,
    ExpectTimeout,
    PySerial,
    SerialClient,
    SerialSettings,
)
from tether.errors import ConfigError, DriverError
from tether.testing import DriverTestConfig, ForegroundDriverTest, serve

GUARD = 10.0  # a wait that only fails a broken test, never paces a passing one


def read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        ready, _, _ = select.select([fd], [], [], GUARD)
        assert ready, f"got {data!r}, waiting for {size} bytes"
        data += os.read(fd, size - len(data))
    return data


def read_until(fd: int, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        data += read_exactly(fd, 1)
    return data


class Device:
    """The far end of a serial line: the master side of a pty, reached through a symlink."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self.slave = os.openpty()
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.ttyname(self.slave))
        self.closed = False

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read_exactly(self, size: int) -> bytes:
        return read_exactly(self.master, size)

    def read_until(self, marker: bytes) -> bytes:
        return read_until(self.master, marker)

    def unplug(self) -> None:
        """The device goes away: its node disappears too (as /dev/ttyUSB0 does), so a new
        open cannot reach a recycled pty of another process."""
        if not self.closed:
            self.closed = True
            self.link.unlink(missing_ok=True)
            os.close(self.master)
            os.close(self.slave)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    dev = Device(tmp_path / "ttyDUT")
    yield dev
    dev.unplug()


# -- the driver on the foreground dispatcher ------------------------------------------------------


def test_line_settings_reach_the_tty(device: Device) -> None:
    config = DriverTestConfig(
        PySerial,
        driver_config={
            "url": str(device.link),
            "baudrate": 9600,
            "bytesize": 7,
            "parity": "E",
            "stopbits": 2,
            "rtscts": True,
        },
    )
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        rt = test.runtime
        opener = test.driver.connect()
        stream = rt.run_to_completion(opener.__aenter__())
        _, _, cflag, lflag, ispeed, ospeed, _ = termios.tcgetattr(device.slave)
        assert (ispeed, ospeed) == (termios.B9600, termios.B9600)
        # Linux ptys force CS8 and no parity whatever is asked (pty_set_termios), so bytesize
        # and parity cannot be seen here; the speed, stop bits and flow control can.
        assert cflag & termios.CSTOPB
        assert cflag & termios.CRTSCTS
        assert not lflag & termios.ICANON and not lflag & termios.ECHO  # raw
        device.write(b"U")
        assert rt.run_to_completion(stream.receive()) == b"U"
        rt.run_to_completion(stream.send(b"ok"))
        assert device.read_exactly(2) == b"ok"
        rt.run_to_completion(stream.send_eof())
        assert rt.run_to_completion(stream.receive()) == b""
        rt.run_to_completion(opener.__aexit__(None, None, None))


def test_other_speed_and_default_settings(device: Device) -> None:
    with ForegroundDriverTest(
        DriverTestConfig(PySerial, driver_config={"url": str(device.link)})
    ) as test:
        test.start_driver()
        rt = test.runtime
        opener = test.driver.connect()
        rt.run_to_completion(opener.__aenter__())
        _, _, cflag, _, ispeed, ospeed, _ = termios.tcgetattr(device.slave)
        assert (ispeed, ospeed) == (termios.B115200, termios.B115200)
        assert cflag & termios.CSIZE == termios.CS8
        assert not cflag & (termios.PARENB | termios.CSTOPB | termios.CRTSCTS)
        rt.run_to_completion(opener.__aexit__(None, None, None))


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"PySerial.bytesize"):
        PySerial(url="/dev/null", bytesize=9)
    with pytest.raises(ConfigError, match=r"PySerial.parity"):
        PySerial(url="/dev/null", parity="X")
    with pytest.raises(ConfigError, match=r"PySerial.url: required"):
        PySerial()


# -- the client over the wire ------------------------------------------------------------------


def test_first_bytes_are_not_eaten_either_way(device: Device) -> None:
    with serve(PySerial(url=str(device.link))) as serial, serial.stream("connect") as stream:
        stream.send(b"a")  # the very first byte sent
        assert device.read_exactly(1) == b"a"
        device.write(b"U-Boot 2024.01\r\n")  # the very first bytes received
        received = b""
        while b"\n" not in received:
            received += stream.receive()
        assert received == b"U-Boot 2024.01\r\n"


def test_expect_send_and_read_until(device: Device) -> None:
    with serve(PySerial(url=str(device.link))) as serial:
        assert isinstance(serial, SerialClient)
        with serial.open() as con:
            device.write(b"line 1\nline 2\nbuildroot login: ")
            assert con.read_until(b"\n") == b"line 1\n"
            match = con.expect(re.compile(rb"(\w+) login: $"))
            assert match.group(1) == b"buildroot"
            assert match.string[: match.start()] == b"line 2\n"  # what came before the match
            con.sendline("root")
            assert device.read_exactly(5) == b"root\n"
            device.write(b"# ")
            assert con.expect("# ").group(0) == b"# "  # a literal, not a regex
            device.write(b"a.b")
            assert con.expect(re.compile(r"a.b")).group(0) == b"a.b"  # str regexes work too


def test_expect_timeout_shows_the_last_bytes(device: Device) -> None:
    with serve(PySerial(url=str(device.link))) as serial, serial.open() as con:
        device.write(b"Starting kernel ...\r\n")
        con.expect("kernel")
        with pytest.raises(ExpectTimeout) as info:
            con.expect("login:", timeout=0.05)
        assert "expect('login:'): not seen within 0.05 s" in str(info.value)
        assert "Starting kernel ...\\r\\n" in str(info.value)
        assert info.value.tail == b"Starting kernel ...\r\n"


def test_console_log_file_appends_everything_received(device: Device, tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    with serve(PySerial(url=str(device.link))) as serial:
        with serial.open(log_file=log) as con:
            device.write(b"first\n")
            con.expect("first\n")
            device.write(b"second\n")
            con.expect("second\n")
        with serial.open(log_file=log) as con:
            device.write(b"third\n")
            con.expect("third\n")
    assert log.read_bytes() == b"first\nsecond\nthird\n"


def test_shared_console_shortcuts(device: Device, tmp_path: Path) -> None:
    with serve(PySerial(url=str(device.link))) as serial:
        serial.log_file = tmp_path / "shared.log"
        serial.sendline("help")
        assert device.read_exactly(5) == b"help\n"
        device.write(b"usage: ...\n")
        assert serial.read_until("\n") == b"usage: ...\n"
        serial.send(b"\x03")
        assert device.read_exactly(1) == b"\x03"
        serial.close()
        assert (tmp_path / "shared.log").read_bytes() == b"usage: ...\n"


def test_settings_and_one_writer_at_a_time(device: Device) -> None:
    with serve(PySerial(url=str(device.link), baudrate=57600)) as serial:
        settings = serial.settings()
        assert isinstance(settings, SerialSettings)
        assert (settings.baudrate, settings.parity, settings.url) == (57600, "N", str(device.link))
        with serial.open(), pytest.raises(DriverError, match=r"another client is writing"):
            serial.open()
        with serial.open():  # free again once the first one closed
            pass


def test_missing_device_is_a_clear_error(tmp_path: Path) -> None:
    with (
        serve(PySerial(url=str(tmp_path / "ttyNOPE"))) as serial,
        pytest.raises(DriverError, match=r"DeviceDisconnected: serial port .*ttyNOPE: cannot open"),
    ):
        serial.open()


def test_device_that_disappears_and_returns(device: Device, tmp_path: Path) -> None:
    with serve(PySerial(url=str(device.link))) as serial:
        con = serial.open()
        device.write(b"booting\n")
        con.expect("booting\n")
        device.unplug()
        with pytest.raises(
            ConsoleClosed,
            match=r"DeviceDisconnected: serial port .*ttyDUT: the device went away \(the line hung up\); last bytes received: b'booting\\n'",
        ):
            con.expect("login:", timeout=GUARD)
        assert con.closed
        con.close()
        with pytest.raises(DriverError, match=r"cannot open"):
            serial.open()  # still gone
        back = Device(device.link)  # the device returns (same path)
        try:
            with serial.open() as con:
                back.write(b"hello again")
                assert con.expect("hello again")
        finally:
            back.unplug()


def test_loop_url_uses_the_worker_thread_path() -> None:
    with serve(PySerial(url="loop://")) as serial, serial.open() as con:
        con.send(b"ping")
        assert con.expect("ping").group(0) == b"ping"


def test_socket_url_to_a_real_tcp_device() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    got: list[bytes] = []

    def device() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"=> ")
            got.append(conn.recv(100))
            conn.sendall(b"version 1.0\n")

    thread = threading.Thread(target=device)
    thread.start()
    try:
        with serve(PySerial(url=f"socket://127.0.0.1:{port}")) as serial, serial.open() as con:
            # Connected when the session started: the greeting may predate the stream, and
            # the session's log has it either way.
            con.sendline("version")
            assert con.read_until("\n").endswith(b"version 1.0\n")
            assert serial.log() == b"=> version 1.0\n"
    finally:
        thread.join(GUARD)
        server.close()
    assert got == [b"version\n"]


# -- the interactive console on a pty "terminal" ----------------------------------------------------


def test_interactive_console_raw_mode_and_escape(device: Device) -> None:
    term_master, term_slave = os.openpty()
    before = termios.tcgetattr(term_slave)
    result: list[str] = []
    with serve(PySerial(url=str(device.link))) as serial:
        thread = threading.Thread(
            target=lambda: result.append(serial.console(stdin_fd=term_slave, stdout_fd=term_slave))
        )
        thread.start()
        try:
            assert b"Ctrl-] leaves" in read_until(term_master, b"leaves.\r\n")
            assert not termios.tcgetattr(term_slave)[3] & termios.ICANON  # raw while attached
            os.write(term_master, b"ls\x03")  # Ctrl-C goes to the device, it does not stop us
            assert device.read_exactly(3) == b"ls\x03"
            device.write(b"bin etc\r\n")
            assert read_until(term_master, b"etc\r\n") == b"bin etc\r\n"
            os.write(term_master, b"q\x1d")
            assert device.read_exactly(1) == b"q"
        finally:
            thread.join(GUARD)
            after = termios.tcgetattr(term_slave)
            os.close(term_master)
            os.close(term_slave)
    assert result == ["escape"]
    assert after == before  # the terminal is restored


def test_interactive_console_ends_when_the_device_goes_away(device: Device) -> None:
    term_master, term_slave = os.openpty()
    result: list[str] = []
    with serve(PySerial(url=str(device.link))) as serial:
        thread = threading.Thread(
            target=lambda: result.append(serial.console(stdin_fd=term_slave, stdout_fd=term_slave))
        )
        thread.start()
        read_until(term_master, b"leaves.\r\n")
        device.unplug()
        thread.join(GUARD)
        os.close(term_master)
        os.close(term_slave)
    assert len(result) == 1 and "the device went away" in result[0]


# -- the dut hook ---------------------------------------------------------------------------


def test_dut_serial_expect_via_the_cli_hook(
    device: Device, capsys: pytest.CaptureFixture[str]
) -> None:
    def answer() -> None:
        device.read_until(b"version\n")
        device.write(b"tether-os 1.0\n=> ")

    thread = threading.Thread(target=answer)
    thread.start()
    tree = Composite(children={"serial": PySerial(url=str(device.link))})
    with serve(tree) as root:
        status = dut_run(root, ["serial", "expect", "--send", "version\\n", "=> "])
    thread.join(GUARD)
    assert status == 0
    assert capsys.readouterr().out == "tether-os 1.0\n=> "


def test_dut_serial_expect_timeout_exits_nonzero(
    device: Device, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = Composite(children={"serial": PySerial(url=str(device.link))})
    with serve(tree) as root:
        status = dut_run(root, ["serial", "expect", "--timeout", "0.01", "login:"])
    assert status == 1
    assert "not seen within 0.01 s" in capsys.readouterr().err


# -- rfc2217:// against pyserial's own RFC 2217 port manager, in front of a pty ----------------


class PtySerial(Serial):
    """A pyserial port on a pty, which has no modem lines (their ioctls fail there)."""

    cts = dsr = ri = cd = property(lambda self: False)

    def _update_dtr_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass


class Rfc2217Server:
    """A one-connection RFC 2217 server for the pty behind ``device`` (after pyserial's
    examples/rfc2217_server.py): telnet negotiation and line settings go to the pty."""

    def __init__(self, device: Device) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.serial = PtySerial(os.ttyname(device.slave), timeout=None)
        self.wake_r, self.wake_w = os.pipe()
        self.threads = [threading.Thread(target=self.serve, daemon=True)]
        self.threads[0].start()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        lock = threading.Lock()

        class Connection:
            @staticmethod
            def write(data: bytes) -> None:
                with lock:
                    conn.sendall(data)

        manager = PortManager(self.serial, Connection())

        def device_to_network() -> None:
            fd = self.serial.fileno()
            while True:
                ready, _, _ = select.select([fd, self.wake_r], [], [])
                if self.wake_r in ready:
                    return
                Connection.write(b"".join(manager.escape(os.read(fd, 4096))))

        reader = threading.Thread(target=device_to_network, daemon=True)
        reader.start()
        self.threads.append(reader)
        with conn:
            while data := conn.recv(4096):
                self.serial.write(b"".join(manager.filter(data)))
        os.write(self.wake_w, b"x")

    def close(self) -> None:
        os.write(self.wake_w, b"x")
        for thread in self.threads:
            thread.join(GUARD)
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
        self.listener.close()
        self.serial.close()


@pytest.mark.filterwarnings("ignore:set(Daemon|Name)\\(\\) is deprecated:DeprecationWarning")
def test_rfc2217_url_negotiates_the_line_settings(device: Device) -> None:
    server = Rfc2217Server(device)
    try:
        url = f"rfc2217://127.0.0.1:{server.port}"
        with serve(PySerial(url=url, baudrate=19200)) as serial, serial.open() as con:
            _, _, _, _, ispeed, ospeed, _ = termios.tcgetattr(device.slave)
            assert (ispeed, ospeed) == (termios.B19200, termios.B19200)  # set over the network
            device.write(b"=> ")
            con.expect("=> ")
            con.sendline("version")
            assert device.read_exactly(8) == b"version\n"
    finally:
        server.close()
