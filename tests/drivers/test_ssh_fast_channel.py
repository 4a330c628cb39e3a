"""The fast channel-data path (``_fast_channel``) against a real OpenSSH sshd.

Each test checks the bytes that arrive, so a packet built wrong (length, padding, IV,
sequence number) shows as a dropped connection or corrupt data, and that the fast path did
(or did not) carry the data.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tether.drivers.ssh._fast_channel import sftp_channel, speed_up, supported
from tether.drivers.ssh.testing import Sshd, run_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


async def _connect(sshd: Sshd, **options: Any) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        sshd.host, sshd.port, username=sshd.user, client_keys=[str(sshd.client_key)],
        known_hosts=None, config=None, agent_path=None, **options,
    )  # fmt: skip


async def _put(sshd: Sshd, path: Path, data: bytes, **options: Any) -> tuple[int, bool]:
    """SFTP-write ``data`` in 1 MiB writes, 8 at once; (fast packets, whether keys changed)."""
    async with await _connect(sshd, **options) as conn, conn.start_sftp_client() as sftp:
        channel = sftp_channel(sftp)
        assert channel is not None and speed_up(channel)
        assert not speed_up(channel)  # once is enough
        first_key = conn._send_encryption._cipher._key  # type: ignore[attr-defined]
        async with sftp.open(str(path), "wb") as file:
            chunk = 1 << 20
            writes = [file.write(data[at : at + chunk], at) for at in range(0, len(data), chunk)]
            for start in range(0, len(writes), 8):
                await asyncio.gather(*writes[start : start + 8])
        rekeyed = conn._send_encryption._cipher._key is not first_key  # type: ignore[attr-defined]
        return channel.write.__self__.packets, rekeyed


def test_an_sftp_put_arrives_whole_through_the_fast_path(sshd: Sshd, tmp_path: Path) -> None:
    data = os.urandom(24 * 1024 * 1024 + 777)
    target = tmp_path / "fast.bin"
    packets, _ = asyncio.run(_put(sshd, target, data, encryption_algs=["aes128-gcm@openssh.com"]))
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert packets >= len(data) // 32768 // 2  # most of it went the fast way


def test_rekeys_in_the_middle_of_a_put_keep_the_stream_valid(sshd: Sshd, tmp_path: Path) -> None:
    data = os.urandom(12 * 1024 * 1024)
    target = tmp_path / "rekeyed.bin"
    packets, rekeyed = asyncio.run(
        _put(sshd, target, data, encryption_algs=["aes256-gcm@openssh.com"], rekey_bytes=2 << 20)
    )
    assert rekeyed and packets > 0
    assert target.read_bytes() == data


def test_other_ciphers_go_through_asyncssh_unchanged(sshd: Sshd, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    target = tmp_path / "chacha.bin"
    packets, _ = asyncio.run(
        _put(sshd, target, data, encryption_algs=["chacha20-poly1305@openssh.com"])
    )
    assert packets == 0 and target.read_bytes() == data


def test_a_forward_carries_data_both_ways_when_the_window_fills(sshd: Sshd) -> None:
    async def echo_through_the_device() -> tuple[bytes, bytes, int]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while chunk := await reader.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        data = os.urandom(6 * 1024 * 1024 + 3)  # three times sshd's window
        gcm = ["aes128-gcm@openssh.com"]
        async with server, await _connect(sshd, encryption_algs=gcm) as conn:
            reader, writer = await conn.open_connection("127.0.0.1", port)
            assert speed_up(writer.channel)

            async def send() -> None:
                for at in range(0, len(data), 700_000):
                    writer.write(data[at : at + 700_000])
                    await writer.drain()
                writer.write_eof()

            sending = asyncio.ensure_future(send())
            back = await reader.read(-1)
            await sending
            return data, back, writer.channel.write.__self__.packets

    sent, back, packets = asyncio.run(echo_through_the_device())
    assert back == sent and packets > 0


def test_a_channel_without_the_names_it_uses_is_left_alone() -> None:
    class Bare:
        def write(self, data: bytes) -> None:
            pass

    bare = Bare()
    assert not supported(bare) and not speed_up(bare)
    assert sftp_channel(object()) is None
