"""Storage mux and flashers end to end: real files, real sockets, a real local HTTP server."""

from __future__ import annotations

import bz2
import functools
import gzip
import hashlib
import http.server
import lzma
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

import tether
import tether.drivers.storage
from tether.cli.dut import run as dut_run
from tether.drivers.composite import Composite
from tether.drivers.power import MockPower
from tether.drivers.storage import (
    FlasherClient,
    ImageSourceError,
    ImageVerifyError,
    MockFlasher,
    MockStorageMux,
    StorageError,
    StorageModeError,
    StorageMuxClient,
    detect_compression,
)
from tether.errors import DriverError
from tether.exporter import init_lab_certs, parse_config, run_exporter_in_thread
from tether.testing import serve

MiB = 1 << 20


def _image(size: int, seed: int = 1) -> bytes:
    """Compressible but not trivial: a repeated random block followed by zeros."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    data = (block * (size // len(block) + 1))[: size // 2]
    return data + bytes(size - len(data))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(_image(3 * MiB + 123))
    return path


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_mux_switches_modes_and_refuses_writes_unless_host(image: Path) -> None:
    mux = MockStorageMux(initial="off")
    with serve(mux) as client:
        assert isinstance(client, StorageMuxClient)
        assert client.status() == "off"
        with pytest.raises(StorageModeError, match=r"off mode; call host\(\) first"):
            client.write(image)
        client.dut()
        assert client.status() == "dut"
        with pytest.raises(StorageModeError, match="dut mode"):
            client.read(image.parent / "out.img")
        client.host()
        assert client.status() == "host"
        result = client.write(image, progress=False)
        assert result.bytes == image.stat().st_size


def test_write_then_read_round_trip_reports_throughput(image: Path, tmp_path: Path) -> None:
    data = image.read_bytes()
    mux = MockStorageMux()
    with serve(mux) as client:
        result = client.write(image, progress=False)
        assert result.bytes == result.sent == len(data)
        assert result.sha256 == hashlib.sha256(data).hexdigest()
        assert result.compression == "none"
        assert result.verified is False
        assert client.write(image, verify=True, progress=False).verified is True
        assert result.seconds > 0
        assert result.mb_s == pytest.approx(len(data) / result.seconds / 1e6)
        assert result.target == mux.path
        assert Path(mux.path).read_bytes() == data
        out = tmp_path / "back.img"
        assert client.read(out, progress=False) == len(data)
        assert out.read_bytes() == data
        assert client.read(out, size=1000, progress=False) == 1000
        assert out.read_bytes() == data[:1000]
    assert not os.path.exists(mux.path)  # the temp file goes with the driver


def test_a_file_mux_never_shrinks_its_file(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\xaa" * 4096)
    small = tmp_path / "small.img"
    small.write_bytes(b"boot" * 10)
    with serve(MockStorageMux(path=str(disk), initial="host")) as client:
        client.write(small, progress=False)
    assert disk.read_bytes() == b"boot" * 10 + b"\xaa" * (4096 - 40)


_COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: (
        gzip.compress(data[: len(data) // 3]) + gzip.compress(data[len(data) // 3 :])
    ),
    "xz": lzma.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "bzip2": bz2.compress,
}


@pytest.mark.parametrize("kind", sorted(_COMPRESSORS))
def test_compressed_images_are_detected_and_decoded(kind: str, tmp_path: Path) -> None:
    data = _image(5 * MiB, seed=7)
    packed = tmp_path / f"disk.img.{kind}"
    packed.write_bytes(_COMPRESSORS[kind](data))
    assert detect_compression(packed.read_bytes()[:6]) == kind
    mux = MockStorageMux()
    with serve(mux) as client:
        result = client.write(packed, sha256=hashlib.sha256(data).hexdigest(), progress=False)
        assert result.compression == kind
        assert result.bytes == len(data)
        assert result.sent == packed.stat().st_size < len(data)
        assert Path(mux.path).read_bytes() == data


def test_a_wrong_expected_sha256_is_a_clear_error_and_the_mux_keeps_serving(image: Path) -> None:
    wrong = "0" * 64
    with serve(MockStorageMux()) as client:
        with pytest.raises(ImageVerifyError) as failure:
            client.write(image, sha256=wrong, progress=False)
        message = str(failure.value)
        assert "sha256 mismatch" in message
        assert f"expected {wrong}" in message
        assert hashlib.sha256(image.read_bytes()).hexdigest() in message
        assert client.write(image, progress=False).bytes == image.stat().st_size


def test_the_exporter_checks_the_digest_the_client_appends(tmp_path: Path) -> None:
    data = b"image bytes " * 1000
    with serve(MockStorageMux()) as client:
        with client.stream("write", "auto", None, False, True) as stream:
            stream.send(data + hashlib.sha256(b"something else").digest())
            stream.send_eof()
            with pytest.raises(DriverError, match="transfer mismatch") as failure:
                stream.receive()
        assert failure.value.remote_type.endswith("ImageVerifyError")
        assert hashlib.sha256(data).hexdigest() in str(failure.value)
        with client.stream("write", "auto", None, False, True) as stream:
            stream.send(b"short")
            stream.send_eof()
            with pytest.raises(DriverError, match="trailer is missing"):
                stream.receive()


def test_corrupt_and_truncated_images_fail_with_what_went_wrong(tmp_path: Path) -> None:
    data = _image(2 * MiB, seed=3)
    corrupt = tmp_path / "corrupt.gz"
    packed = bytearray(gzip.compress(data))
    packed[100:140] = b"\xff" * 40
    corrupt.write_bytes(bytes(packed))
    truncated = tmp_path / "truncated.xz"
    truncated.write_bytes(lzma.compress(data)[:-200])
    with serve(MockStorageMux()) as client:
        with pytest.raises(StorageError, match="gzip image is corrupt"):
            client.write(corrupt, progress=False)
        with pytest.raises(StorageError, match="xz image ends early"):
            client.write(truncated, progress=False)


def test_forced_compression_none_writes_the_bytes_as_they_are(tmp_path: Path) -> None:
    packed = tmp_path / "keep.gz"
    packed.write_bytes(gzip.compress(b"hello" * 1000))
    mux = MockStorageMux()
    with serve(mux) as client:
        result = client.write(packed, compression="none", progress=False)
    assert result.compression == "none"
    assert result.bytes == packed.stat().st_size


def test_bad_inputs_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    with serve(MockStorageMux()) as client:
        with pytest.raises(ImageSourceError, match=r"cannot open image .*missing\.img"):
            client.write(tmp_path / "missing.img")
        with pytest.raises(StorageError, match="empty image"):
            client.write(empty, progress=False)
        with pytest.raises(tether.errors.InvalidArgument, match="compression"):
            client.write(empty, compression="rar")  # type: ignore[arg-type]


def test_writes_from_an_http_url_and_reports_http_errors(http_root: tuple[Path, str]) -> None:
    root, base = http_root
    data = _image(3 * MiB, seed=11)
    (root / "disk.img.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    mux = MockStorageMux()
    with serve(mux) as client:
        result = client.write(f"{base}/disk.img.zst", progress=False)
        assert result.compression == "zstd"
        assert Path(mux.path).read_bytes() == data
        with pytest.raises(ImageSourceError, match=r"HTTP 404"):
            client.write(f"{base}/nope.img", progress=False)


def test_progress_bar_renders_without_a_terminal(
    image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(MockStorageMux()) as client:
        client.write(image, progress=True)
    assert "disk.img" in capsys.readouterr().err


def test_mock_flasher_writes_through_its_own_storage_child(image: Path) -> None:
    flasher = MockFlasher()
    with serve(flasher) as client:
        assert isinstance(client, FlasherClient)
        result = client.flash(image, progress=False)
        assert result.bytes == image.stat().st_size
        assert client.storage.status() == "dut"  # switched back after the write
        assert Path(result.target).read_bytes() == image.read_bytes()


def test_flasher_uses_power_and_mux_through_a_tls_exporter(image: Path, tmp_path: Path) -> None:
    certs = init_lab_certs(tmp_path / "certs")
    disk = tmp_path / "dut.raw"
    config = parse_config(
        "\n".join(
            [
                "name: flash-lab",
                f"tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}",
                "export:",
                "  power: {type: tether.drivers.power.MockPower}",
                "  mux:",
                "    type: tether.drivers.storage.StorageMux",
                "    config:",
                f"      path: {disk}",
                "      sync: true",
                f"      host_command: echo host > {tmp_path / 'mux-state'}",
                f"      dut_command: echo dut > {tmp_path / 'mux-state'}",
                f"      off_command: echo off > {tmp_path / 'mux-state'}",
                f"      status_command: cat {tmp_path / 'mux-state'}",
                "      initial: 'off'",
                "      wait_for_path: false",  # an image file, created by the write
                "  flasher:",
                "    type: tether.drivers.storage.Flasher",
                "    config: {power_on_after: true}",
                "    uses: {power: power, mux: mux}",
            ]
        )
        + "\n",
        "flash-lab.yaml",
    )
    with (
        run_exporter_in_thread(config, listen="tls://127.0.0.1:0") as running,
        tether.connect(running.url, running.token, ca=certs.ca) as dut,
    ):
        dut.power.on()
        result = dut.flasher.write(image, verify=True, progress=False)
        assert result.verified and result.bytes == image.stat().st_size
        assert dut.mux.status() == "dut"
        assert (tmp_path / "mux-state").read_text() == "dut\n"  # the mux's command ran
        assert dut.power.status() is True  # off for the write, on again after it
        out = tmp_path / "dump.img"
        assert dut.flasher.read(out, progress=False) == image.stat().st_size
        assert out.read_bytes() == image.read_bytes()
    assert disk.read_bytes() == image.read_bytes()


def test_a_failed_flash_leaves_the_mux_off(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b" + b"\x00" * 100)
    flasher = MockFlasher(children={"power": MockPower()})
    with serve(flasher) as client:
        with pytest.raises(StorageError, match="gzip image is corrupt"):
            client.write(bad, progress=False)
        assert client.storage.status() == "off"


def test_public_names() -> None:
    assert sorted(tether.drivers.storage.__all__) == [
        "BoardDisk",
        "Compression",
        "Flasher",
        "FlasherClient",
        "FlasherInterface",
        "ImageSourceError",
        "ImageVerifyError",
        "MockFlasher",
        "MockStorageMux",
        "RunningBoard",
        "StorageError",
        "StorageModeError",
        "StorageMux",
        "StorageMuxBase",
        "StorageMuxClient",
        "StorageMuxInterface",
        "StorageSwitchError",
        "StorageSwitchTimeout",
        "UsbSdMux",
        "WriteResult",
        "detect_compression",
    ]
    for name in tether.drivers.storage.__all__:
        assert hasattr(tether.drivers.storage, name)
    assert issubclass(tether.drivers.storage.StorageError, tether.errors.TetherError)


def test_dut_write_and_read_through_the_cli_hook(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = Composite(children={"sdmux": MockStorageMux()})
    out = tmp_path / "dump.img"
    with serve(tree) as root:
        assert dut_run(root, ["sdmux", "write", str(image), "--no-progress"]) == 0
        assert dut_run(root, ["sdmux", "read", str(out), "--size", "100"]) == 0
        assert dut_run(root, ["sdmux", "write", str(tmp_path / "gone.img")]) == 1
    captured = capsys.readouterr()
    assert f"wrote {image.stat().st_size} bytes (none, sha256 " in captured.out
    assert "MB/s" in captured.out
    assert "read 100 bytes into" in captured.out
    assert "cannot open image" in captured.err
    assert out.read_bytes() == image.read_bytes()[:100]


@pytest.mark.parametrize("kind", ["gzip", "xz", "zstd", "bzip2"])
def test_decoders_emit_bounded_pieces_of_a_disk_full_of_zeros(kind: str) -> None:
    from tether.drivers.storage._codec import make_decoder

    zeros = bytes(20 * MiB)
    fast = {"xz": lambda d: lzma.compress(d, preset=0), "bzip2": lambda d: bz2.compress(d, 1)}
    packed = fast.get(kind, _COMPRESSORS[kind])(zeros)
    assert len(packed) < MiB  # one wire chunk expands to 20 MiB
    decoder = make_decoder(kind)
    assert decoder is not None
    sizes: list[int] = []
    decoder.feed(packed, lambda piece: sizes.append(len(piece)))
    decoder.finish(lambda piece: sizes.append(len(piece)))
    assert sum(sizes) == len(zeros)
    assert max(sizes) <= 4 * MiB
