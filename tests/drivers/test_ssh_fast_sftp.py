"""SFTP puts through the fast writer (``_fast_sftp``), end to end against a real sshd."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.drivers.ssh import Ssh, SshClient, SshTransferFailed
from tether.drivers.ssh._fast_channel import fast_sender, sftp_channel
from tether.drivers.ssh.testing import Sshd, run_sshd
from tether.testing import serve


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _fast_packets(driver: Ssh) -> int:
    sender = fast_sender(sftp_channel(driver._sftp))
    return sender.packets if sender is not None else 0


def test_a_put_goes_the_fast_way_and_arrives_whole(sshd: Sshd, tmp_path: Path) -> None:
    driver = Ssh(**sshd.driver_config())
    payload = os.urandom(9 * 1024 * 1024 + 4097)  # several requests a chunk, a short tail
    with serve(driver) as client:
        assert isinstance(client, SshClient)
        assert client.put(payload, str(tmp_path / "a.bin")) == len(payload)
        assert _fast_packets(driver) >= len(payload) // 32768
        assert client.put(b"", str(tmp_path / "empty.bin")) == 0
    assert (tmp_path / "a.bin").read_bytes() == payload
    assert (tmp_path / "empty.bin").read_bytes() == b""


def test_a_write_the_device_refuses_fails_the_put_and_the_session_goes_on(sshd: Sshd) -> None:
    driver = Ssh(**sshd.driver_config())
    with serve(driver) as client:
        assert isinstance(client, SshClient)
        with pytest.raises(SshTransferFailed, match=r"put /dev/full: "):
            client.put(os.urandom(3 * 1024 * 1024), "/dev/full")  # ENOSPC on every write
        assert _fast_packets(driver) > 0
        assert client.run("echo still here").output == "still here\n"
        assert client.put(b"after", "/dev/null") == 5


def test_fast_path_false_leaves_every_packet_to_asyncssh(sshd: Sshd, tmp_path: Path) -> None:
    driver = Ssh(**sshd.driver_config(), fast_path=False)
    payload = os.urandom(1024 * 1024 + 7)
    with serve(driver) as client:
        assert isinstance(client, SshClient)
        assert client.put(payload, str(tmp_path / "slow.bin")) == len(payload)
        assert fast_sender(sftp_channel(driver._sftp)) is None
    assert (tmp_path / "slow.bin").read_bytes() == payload


def test_an_untested_asyncssh_release_runs_on_its_own_code(
    sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.drivers.ssh import _fast_channel

    monkeypatch.setattr(_fast_channel, "TESTED_ASYNCSSH", frozenset({(1, 0)}))
    driver = Ssh(**sshd.driver_config())
    with serve(driver) as client:
        assert isinstance(client, SshClient)
        assert client.put(b"x" * 100_000, "/dev/null") == 100_000
        assert fast_sender(sftp_channel(driver._sftp)) is None
