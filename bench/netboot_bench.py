"""Network boot figures: tether's TFTP server against Debian's tftpd-hpa, and console fan-out.

``python -m bench.netboot_bench [--quick]`` prints one JSON object:

    tftp_tether_mb_s, tftp_hpa_mb_s: a 32 MiB random file (8 MiB with ``--quick``) fetched
        by curl's ``tftp://`` client over 127.0.0.1 from tether's ``TftpServer`` (through
        ``serve()``, as a board would see it) and from ``in.tftpd`` (tftpd-hpa, started here
        as a foreground process on a free port with ``--secure`` on a directory holding the
        same file), with the same block size (``--tftp-blksize``, ``tftp_blksize``);
        MB = 10**6 bytes. Rounds alternate the servers (tether first in odd rounds, tftpd-hpa
        first in even ones), each server fetching ``tftp_transfers`` times a round; a figure
        is the median of every fetch of that server;
    tftp_ratio: the median of the rounds' ratios, tether / tftpd-hpa, each from the medians
        of one round (neighbours in time, so a load that drifts cancels out; target >= 0.8);
        ``tftp_round_ratios`` lists them and each round is printed on stderr with the load
        average;
    tftp_tether_cpu_us_per_block: the CPU time (user + system) of this process, where
        tether's server runs, per block sent: a figure the load moves much less;
    fanout_one_mb_s, fanout_two_mb_s: 8 MiB printed by a console (a pty, PySerial driver)
        read by one client, then by two at once (each must get every byte; the figure is
        the bytes one reader got per second); fanout_ratio: two / one (target >= 0.5).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench._report import median

__all__ = ["bench_tftp", "run"]

BLKSIZE = 1468


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _curl_fetch(port: int, name: str, size: int, blksize: int) -> float:
    """Seconds for curl to fetch ``name``; checks the size."""
    with tempfile.TemporaryDirectory(prefix="bench-tftp-") as tmp:
        out = os.path.join(tmp, "out")
        start = time.perf_counter()
        subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "120",
                "--tftp-blksize",
                str(blksize),
                "-o",
                out,
                f"tftp://127.0.0.1:{port}/{name}",
            ],
            check=True,
        )
        seconds = time.perf_counter() - start
        got = os.path.getsize(out)
    if got != size:
        raise RuntimeError(f"curl got {got} bytes of {size}")
    return seconds


@contextlib.contextmanager
def _tftpd_hpa(directory: str) -> Iterator[int]:
    port = _free_udp_port()
    process = subprocess.Popen(
        [
            "/usr/sbin/in.tftpd",
            "--foreground",
            "--address",
            f"127.0.0.1:{port}",
            "--secure",
            directory,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _udp_bound(port):  # in.tftpd has no readiness signal
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("in.tftpd did not start")
            time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(5)


def _udp_bound(port: int) -> bool:
    out = subprocess.run(["ss", "-Hlun", f"sport = :{port}"], capture_output=True, text=True)
    return str(port) in out.stdout


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_tftp(
    size_mib: int, rounds: int, transfers: int, blksize: int = BLKSIZE
) -> dict[str, Any]:
    """tether's TftpServer vs tftpd-hpa, same file, same client (curl), same block size."""
    from tether.drivers.netboot import TftpServer
    from tether.testing import serve

    size = size_mib << 20
    tether_s: list[float] = []
    hpa_s: list[float] = []
    ratios: list[float] = []
    cpu_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-tftpd-hpa-") as directory:
        path = os.path.join(directory, "image.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        os.chmod(directory, 0o755)
        os.chmod(path, 0o644)
        with (
            serve(TftpServer(host="127.0.0.1", port=0)) as tftp,
            _tftpd_hpa(directory) as hpa_port,
        ):
            tftp.put(path)
            port = int(tftp.address().rsplit(":", 1)[1])

            def tether_fetch() -> float:
                cpu = _cpu_seconds()
                seconds = _curl_fetch(port, "image.bin", size, blksize)
                cpu_s.append(_cpu_seconds() - cpu)
                return seconds

            servers: list[tuple[list[float], Callable[[], float]]] = [
                (tether_s, tether_fetch),
                (hpa_s, lambda: _curl_fetch(hpa_port, "image.bin", size, blksize)),
            ]
            for number in range(1, rounds + 1):
                round_s: list[list[float]] = [[], []]
                order = [0, 1] if number % 2 else [1, 0]
                for index in order:
                    samples, fetch = servers[index]
                    for _ in range(transfers):
                        round_s[index].append(fetch())
                    samples += round_s[index]
                ours, theirs = (size / median(times) / 1e6 for times in round_s)
                ratios.append(ours / theirs)
                print(
                    f"tftp round {number}/{rounds}: tether {ours:.1f} MB/s, tftpd-hpa "
                    f"{theirs:.1f} MB/s, ratio {ours / theirs:.2f} "
                    f"(load average {os.getloadavg()[0]:.1f})",
                    file=sys.stderr,
                    flush=True,
                )
    ours = size / median(tether_s) / 1e6
    theirs = size / median(hpa_s) / 1e6
    blocks = size // blksize + 1
    return {
        "tftp_tether_mb_s": ours,
        "tftp_hpa_mb_s": theirs,
        "tftp_ratio": median(ratios),
        "tftp_round_ratios": [round(ratio, 3) for ratio in ratios],
        "tftp_tether_cpu_us_per_block": median(cpu_s) / blocks * 1e6,
        "tftp_blksize": float(blksize),
        "tftp_mib": float(size_mib),
        "tftp_transfers": float(transfers),
    }


def _console_rate(readers: int, size: int) -> float:
    """MB/s one reader gets when ``readers`` clients read ``size`` bytes a pty printed."""
    import threading

    from tether.drivers.serial import PySerial
    from tether.testing import serve

    master, slave = os.openpty()
    payload = os.urandom(size)
    try:
        with serve(PySerial(url=os.ttyname(slave))) as serial, contextlib.ExitStack() as stack:
            streams = [stack.enter_context(serial.stream("connect"))]
            streams += [
                stack.enter_context(serial.stream("connect", True)) for _ in range(readers - 1)
            ]
            got = [0] * readers

            def read(index: int) -> None:
                while got[index] < size and (chunk := streams[index].receive()):
                    got[index] += len(chunk)

            threads = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            view = memoryview(payload)
            while view:
                view = view[os.write(master, view[: 1 << 16]) :]
            for thread in threads:
                thread.join(120)
            seconds = time.perf_counter() - start
            if got != [size] * readers:
                raise RuntimeError(f"readers got {got} bytes of {size}")
    finally:
        os.close(master)
        os.close(slave)
    return size / seconds / 1e6


def bench_fanout(size_mib: int, rounds: int) -> dict[str, float]:
    """Console fan-out: one reader, then two, each getting every byte."""
    size = size_mib << 20
    one: list[float] = []
    two: list[float] = []
    for _ in range(rounds):
        one.append(_console_rate(1, size))
        two.append(_console_rate(2, size))
    return {
        "fanout_one_mb_s": median(one),
        "fanout_two_mb_s": median(two),
        "fanout_ratio": median(two) / median(one),
    }


def run(quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if shutil.which("curl") and os.path.exists("/usr/sbin/in.tftpd"):
        result.update(bench_tftp(8 if quick else 32, 2 if quick else 5, 1 if quick else 2))
    else:
        result["tftp_error"] = "needs curl and tftpd-hpa (make setup)"
    result.update(bench_fanout(8, 1 if quick else 3))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    json.dump(run(args.quick), sys.stdout)
    print()


if __name__ == "__main__":
    main()
