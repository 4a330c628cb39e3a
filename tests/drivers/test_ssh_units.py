"""The SSH driver's parts that need no sshd: config, host keys, frames, error translation,
and the connect timeout with the test kit's virtual clock."""

from __future__ import annotations

import base64
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from tether.drivers.ssh import (
    FrameDecoder,
    FrameKind,
    ShellFrame,
    Ssh,
    SshAuthFailed,
    SshCommandTimeout,
    SshDisconnected,
    SshError,
    SshForwardRefused,
    SshHostKeyRefused,
    SshInterface,
    SshTransferFailed,
    SshUnreachable,
    parse_host_key,
)
from tether.drivers.ssh._channels import Session, exit_code, pid_prefix
from tether.drivers.ssh._connection import Credentials, Target, ssh_errors
from tether.drivers.ssh._errors import remote_error
from tether.drivers.ssh._frames import encode
from tether.drivers.ssh.testing import keygen
from tether.errors import ConfigError, DriverError, DriverTimeout, error_from_wire
from tether.testing import DriverTestConfig, ForegroundDriverTest

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
TARGET = Target("board.ssh", "root", "10.0.0.2", 22)


# -- config -----------------------------------------------------------------------------------


def test_config_needs_a_key_or_a_password() -> None:
    with pytest.raises(ConfigError, match="give key_file or password"):
        Ssh(host="h", host_key=KEY)
    Ssh(host="h", host_key=KEY, key_file="/k")
    Ssh(host="h", host_key=KEY, password="pw")


def test_a_host_key_is_required_and_checked() -> None:
    with pytest.raises(ConfigError, match=r"host_key: required"):
        Ssh(host="h", password="pw")
    with pytest.raises(ConfigError, match="expected an OpenSSH public key line"):
        Ssh(host="h", password="pw", host_key="not-a-key!")
    with pytest.raises(ConfigError, match="43 base64 characters"):
        Ssh(host="h", password="pw", host_key="SHA256:short")


def test_the_password_never_shows_in_repr_or_config_errors() -> None:
    driver = Ssh(host="h", host_key=KEY, password=123456789)
    assert driver.password is not None and driver.password.get_secret_value() == "123456789"
    assert "123456789" not in repr(driver.password)
    assert "123456789" not in repr(Credentials("/k", "123456789"))
    with pytest.raises(ConfigError) as caught:
        Ssh(host="h", host_key=KEY, password="hunter2", port="not a port")
    assert "hunter2" not in str(caught.value)


def test_the_public_names() -> None:
    import tether.drivers.ssh as ssh

    for name in ssh.__all__:
        assert hasattr(ssh, name), name
    assert {"Ssh", "SshClient", "SshInterface", "SshError", "SshUnreachable"} <= set(ssh.__all__)


def test_the_interface_names_the_client() -> None:
    assert (
        SshInterface.name == "tether.ssh" and SshInterface.client == "tether.drivers.ssh.SshClient"
    )
    assert set(Ssh.exported()) == {"run", "run_stream", "put", "get", "forward", "shell", "address"}


# -- host keys --------------------------------------------------------------------------------


def test_a_key_line_and_its_fingerprint_pin_the_same_key(tmp_path: Path) -> None:
    line = keygen(tmp_path / "host")
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "host.pub")], capture_output=True, text=True
    ).stdout.split()[1]
    pin = parse_host_key(line)
    assert pin.algorithm == "ssh-ed25519" and pin.fingerprint == printed
    blob = base64.b64decode(line.split()[1])
    assert pin.matches(blob) and parse_host_key(printed).matches(blob)
    other = base64.b64decode(keygen(tmp_path / "other").split()[1])
    assert not pin.matches(other) and not parse_host_key(printed).matches(other)


def test_a_key_line_whose_data_is_another_type_is_refused() -> None:
    with pytest.raises(ValueError, match="not a ssh-rsa key"):
        parse_host_key("ssh-rsa " + KEY.split()[1])
    with pytest.raises(ValueError, match="does not decode"):
        parse_host_key("ssh-ed25519 AAAAB")


# -- shell frames -----------------------------------------------------------------------------


def test_frames_round_trip_fed_one_byte_at_a_time() -> None:
    frames = [
        ShellFrame(FrameKind.DATA, data=b"ls\r"),
        ShellFrame(FrameKind.RESIZE, cols=132, rows=43),
        ShellFrame(FrameKind.STDERR, data=b"oops"),
        ShellFrame(FrameKind.DATA, data=b""),
        ShellFrame(FrameKind.EXIT, status=-1),
    ]
    wire = b"".join(encode(frame) for frame in frames)
    decoder = FrameDecoder()
    got: list[ShellFrame] = []
    for i in range(len(wire)):
        got.extend(decoder.feed(wire[i : i + 1]))
    assert got == frames and decoder.pending == 0


def test_bad_frames_are_refused_and_the_decoder_stays_failed() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ValueError, match="unknown shell frame type 9"):
        decoder.feed(b"\x09\x00\x00\x00\x00")
    with pytest.raises(ValueError, match="already failed"):
        decoder.feed(encode(ShellFrame(FrameKind.DATA, data=b"x")))
    with pytest.raises(ValueError, match="RESIZE payload of 1 bytes"):
        FrameDecoder().feed(b"\x01\x00\x00\x00\x01x")
    with pytest.raises(ValueError, match="max"):
        FrameDecoder().feed(b"\x00\xff\xff\xff\xff")
    with pytest.raises(ValueError, match="out of range"):
        ShellFrame(FrameKind.RESIZE, cols=0, rows=24)


# -- commands' bookkeeping ----------------------------------------------------------------------


def test_exit_codes_follow_the_shell() -> None:
    assert exit_code(3, None) == 3
    assert exit_code(None, "KILL") == 137 and exit_code(None, "INT") == 130
    assert exit_code(None, "NOSUCH") == 128 and exit_code(None, None) == -1


def test_the_pid_report_is_taken_out_of_stderr_however_it_is_split() -> None:
    report = b"\x1etether-pid:4242\x1e"
    for cut in range(1, len(report) + 1):
        session = Session(report_pid=True)
        session.data_received(report[:cut], asyncssh.EXTENDED_DATA_STDERR)
        session.data_received(report[cut:] + b"real error\n", asyncssh.EXTENDED_DATA_STDERR)
        session.data_received(b"out", None)
        assert session.pid == 4242
        assert list(session.queue) == [("stderr", b"real error\n"), ("stdout", b"out")]
    # No report (the shell could not parse the command): stderr passes untouched.
    session = Session(report_pid=True)
    session.data_received(b"sh: syntax error\n", asyncssh.EXTENDED_DATA_STDERR)
    assert session.pid is None and list(session.queue) == [("stderr", b"sh: syntax error\n")]
    assert pid_prefix("exit 3").endswith("\nexit 3")


# -- error translation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "expected", "words"),
    [
        (asyncssh.PermissionDenied("Permission denied"), SshAuthFailed, "login refused"),
        (asyncssh.ChannelOpenError(2, "Connection refused"), SshForwardRefused, "refused"),
        (asyncssh.SFTPNoSuchFile("No such file"), SshTransferFailed, "No such file"),
        (asyncssh.ConnectionLost("Connection lost"), SshDisconnected, "dropped"),
        (ConnectionRefusedError(111, "Connect call failed"), SshUnreachable, "Connection refused"),
        (socket.gaierror(-2, "Name or service not known"), SshUnreachable, "not known"),
        (FileNotFoundError(2, "No such file", "/etc/key"), SshAuthFailed, "/etc/key"),
    ],
)
def test_foreign_errors_become_ssh_errors_naming_the_device(
    raised: Exception, expected: type[SshError], words: str
) -> None:
    with pytest.raises(expected) as caught, ssh_errors(TARGET, "connecting"):
        raise raised
    message = str(caught.value)
    assert "ssh board.ssh (root@10.0.0.2:22): connecting" in message and words in message
    assert isinstance(caught.value, DriverError)


def test_ssh_errors_cross_the_wire_and_come_back_as_their_class() -> None:
    for cls in (SshUnreachable, SshAuthFailed, SshHostKeyRefused, SshCommandTimeout):
        sent = cls("ssh x: what happened")
        received = error_from_wire(sent.to_wire())
        assert type(received) is DriverError
        assert received.remote_type == f"tether.drivers.ssh.{cls.__name__}"
        again = remote_error(received)
        assert type(again) is cls and again.message == "ssh x: what happened"
    other = DriverTimeout("plain", remote_type="TimeoutError")
    assert remote_error(other) is other


# -- with the test kit: a device that never answers, in virtual time ------------------------------


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (no SSH banner)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    yield server.getsockname()[1]
    server.close()


def test_a_silent_device_times_out_at_connect_timeout_in_virtual_time(black_hole: int) -> None:
    config = DriverTestConfig(
        Ssh,
        driver_config={
            "host": "127.0.0.1",
            "port": black_hole,
            "password": "pw",
            "host_key": KEY,
            "connect_timeout": 20,
        },
    )
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        ssh = test.connect(SshInterface)
        started = test.runtime.now()
        with pytest.raises(SshUnreachable, match=r"connecting: no SSH session within 20 s"):
            test.runtime.run_to_completion(ssh.run("true"))
        assert test.runtime.now() - started >= 20  # the virtual clock, not the wall clock
        # The driver still answers, and the next call tries again (and times out again).
        assert test.runtime.run_to_completion(ssh.address()) == f"root@127.0.0.1:{black_hole}"
        with pytest.raises(SshUnreachable):
            test.runtime.run_to_completion(ssh.run("true"))
        assert not test.driver.link.connected
