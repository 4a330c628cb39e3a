"""The shared console: several readers on one real pty, one writer, the session's log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether.cli.dut import run as dut_run
from tether.drivers.serial import ConsoleClosed, ConsoleFanout, ConsoleLog, PySerial
from tether.errors import DriverError
from tether.testing import serve

GUARD = 10.0


class Pty:
    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        link.symlink_to(os.ttyname(self.slave))
        self.link = link

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[Pty]:
    device = Pty(tmp_path / "ttyDUT")
    yield device
    device.close()


def test_two_readers_get_every_byte(pty: Pty) -> None:
    payload = os.urandom(1 << 20).replace(b"\r", b"").replace(b"\n", b"")  # no tty mangling
    with (
        serve(PySerial(url=str(pty.link))) as serial,
        serial.stream("connect") as writer,
        serial.stream("connect", True) as watcher,
    ):
        got: dict[str, bytes] = {}

        def collect(name: str, stream: Any) -> None:
            data = b""
            while len(data) < len(payload) and (chunk := stream.receive()):
                data += chunk
            got[name] = data

        threads = [
            threading.Thread(target=collect, args=("w", writer)),
            threading.Thread(target=collect, args=("r", watcher)),
        ]
        for thread in threads:
            thread.start()
        view = memoryview(payload)
        while view:
            view = view[os.write(pty.master, view[: 1 << 16]) :]
        for thread in threads:
            thread.join(GUARD * 3)
        assert got["w"] == payload and got["r"] == payload


def test_one_writer_at_a_time_and_read_only_streams(pty: Pty) -> None:
    with serve(PySerial(url=str(pty.link))) as serial:
        with serial.open() as writer:
            with pytest.raises(DriverError, match="another client is writing to this console"):
                serial.open()
            watcher = serial.open(read_only=True)
            writer.send("hello")
            assert os.read(pty.master, 100) == b"hello"
            watcher.send("nope")
            with pytest.raises(ConsoleClosed, match="this console stream is read-only"):
                watcher.expect("never", GUARD)
            with contextlib.suppress(DriverError):
                watcher.close()
            writer.send("still here")  # the writer is unaffected
            assert os.read(pty.master, 100) == b"still here"
        with serial.open():  # the writer's place is free again
            pass


def test_the_session_keeps_the_console_log(
    pty: Pty, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    with serve(PySerial(url=str(pty.link))) as serial:
        assert serial.log() == b"" and serial.log_size() == 0
        with serial.open() as console:
            os.write(pty.master, b"U-Boot 2023.01\r\n=> ")
            console.expect("=> ", GUARD)
        mark = serial.log_size()
        assert serial.log() == b"U-Boot 2023.01\r\n=> "
        with serial.open() as console:
            os.write(pty.master, b"again\r\n")
            console.expect("again", GUARD)
        assert serial.log(since=mark) == b"again\r\n"
        capfdbinary.readouterr()
        assert dut_run(serial, ["log"]) == 0
        assert capfdbinary.readouterr().out == b"U-Boot 2023.01\r\n=> again\r\n"


def write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to the pty's master on a thread: it blocks while nobody reads the port
    (a pty holds a few KiB), so its finishing proves that somebody did."""

    def write() -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[: 1 << 16]) :]

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(GUARD * 3)
    assert not thread.is_alive(), "nobody read the port"


def test_the_log_keeps_what_the_board_printed_while_no_stream_was_open(
    pty: Pty, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    before = os.urandom(1 << 20).replace(b"\r", b"").replace(b"\n", b"")  # no tty mangling
    between = b"U-Boot 2023.01\r\n" * 20_000  # 320 KB, more than a pty holds
    with serve(PySerial(url=str(pty.link))) as serial:
        write_all(pty.master, before)  # the session started; no stream is open yet
        with serial.open() as console:
            os.write(pty.master, b"MARK1")
            console.expect("MARK1", GUARD)  # in order: everything before it is logged
        assert serial.log() == before + b"MARK1"
        write_all(pty.master, between)  # the stream has closed; the board goes on
        with serial.open(read_only=True) as console:
            os.write(pty.master, b"MARK2")
            console.expect("MARK2", GUARD)
        mark = len(before) + len(b"MARK1")
        assert serial.log(since=mark) == between + b"MARK2"
        capfdbinary.readouterr()
        assert dut_run(serial, ["log", "--since", str(mark)]) == 0
        assert capfdbinary.readouterr().out == between + b"MARK2"


def test_log_is_bounded_and_rotated() -> None:
    log = ConsoleLog(segment_bytes=10, segments=3)
    try:
        for index in range(10):
            log.append(bytes([65 + index]) * 7)  # 70 bytes in all
        assert log.size == 70
        assert log.start == 40  # three files of ten bytes kept: 40..69
        everything = b"".join(bytes([65 + index]) * 7 for index in range(10))
        assert log.read() == everything[40:]
        assert log.read(since=65) == b"JJJJJ"
        assert log.read(since=0, limit=5) == log.read()[:5]
        assert len(os.listdir(log.directory)) == 3  # type: ignore[arg-type]
    finally:
        directory = log.directory
        log.close()
    assert directory is not None and not os.path.exists(directory)


def test_a_stalled_reader_does_not_hold_up_the_others() -> None:
    async def scenario() -> tuple[bytes, int, bytes]:
        async def discard(data: bytes) -> None:
            return None

        fanout = ConsoleFanout("console", discard, reader_limit=10, stall_timeout=0.05)
        stalled = fanout.join(read_only=True)
        active = fanout.join()
        received = b""
        for _ in range(5):
            publishing = asyncio.ensure_future(fanout.publish(b"0123456789"))
            received += await active.receive()
            await publishing  # returns: the stalled reader stops holding it up
        note = await stalled.receive()
        fanout.close()
        return received, stalled.dropped, note

    received, dropped, first = asyncio.run(scenario())
    assert received == b"0123456789" * 5
    assert dropped == 40  # it kept what fit, and is told about the rest
    assert b"[tether: 40 bytes dropped" in first and first.endswith(b"0123456789")


def test_a_second_writer_on_the_command_line_gets_a_clear_error(
    pty: Pty, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    read_end, write_end = os.pipe()
    os.close(write_end)  # the "keyboard" ends at once
    monkeypatch.setattr("sys.stdin", os.fdopen(read_end, "r"))
    with serve(PySerial(url=str(pty.link))) as serial, serial.open():
        assert dut_run(serial, ["console"]) == 1
        assert "another client is writing to this console" in capfd.readouterr().err
        assert dut_run(serial, ["console", "--read-only"]) == 0  # watching is fine
