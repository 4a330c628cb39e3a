"""Booting the U-Boot board: ``transition shell`` vs a minimal hand-written expect script.

``python -m bench.boot_bench [--quick]`` prints one JSON object:

    boot_transition_s: ``dut.boot.transition("shell")`` from off on ``examples/lab-uboot.yaml``
        (the QEMU board booting real U-Boot, stopping autoboot, ``tftpboot`` of the kernel
        and initramfs from tether's TFTP server on the DUT network, ``zboot``, the Linux
        prompt found and proved with a marked command);
    boot_expect_s: the same boot driven by a minimal expect script over the same console
        (``board.console``'s client ``expect``/``sendline``): power on, wait for the autoboot
        line, a space, each boot command at the ``=> `` prompt, the Linux prompt;
    boot_ratio: boot_transition_s / boot_expect_s (the target: within 10%).

Both run against one exporter (in this process, as ``tether shell --exporter-config`` does),
alternating (ABBA), the board powered off between boots; each figure is the median of 6
boots (3 with ``--quick``). QEMU under TCG on a loaded machine varies by seconds, which the
alternation and the median even out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import tether
from tether.drivers.qemu import default_assets_dir
from tether.exporter import load_config, run_exporter_in_thread

__all__ = ["boot_by_expect", "boot_by_strategy", "run"]

LAB = Path(__file__).resolve().parents[1] / "examples" / "lab-uboot.yaml"
TIMEOUT = 180.0


def boot_by_strategy(dut: Any) -> float:
    start = time.perf_counter()
    dut.boot.transition("shell")
    elapsed = time.perf_counter() - start
    dut.boot.transition("off")
    return elapsed


def boot_by_expect(dut: Any, commands: list[str]) -> float:
    *before, last = commands
    start = time.perf_counter()
    with dut.board.console.open() as console:
        dut.board.power.on()
        console.expect(b"Hit any key to stop autoboot", timeout=TIMEOUT)
        console.send(b" ")
        console.expect(b"=> ", timeout=TIMEOUT)
        for command in before:
            console.sendline(command)
            console.expect(b"=> ", timeout=TIMEOUT)
        console.sendline(last)
        console.expect(b"tether-qemu# ", timeout=TIMEOUT)
        elapsed = time.perf_counter() - start
    dut.board.power.off()
    return elapsed


def run(quick: bool = False) -> dict[str, Any]:
    config = load_config(LAB)
    commands = list(config.export["boot"].config["boot_commands"])
    boots = 3 if quick else 6
    strategy: list[float] = []
    expect: list[float] = []
    with run_exporter_in_thread(config) as running, tether.connect(running.url) as dut:
        for name in ("vmlinuz", "initramfs.cpio.gz"):  # once: the session keeps them
            dut.tftp.put(default_assets_dir() / name)
        boot_by_expect(dut, commands)  # warm the page cache: QEMU, the ROM, the kernel
        for number in range(boots):  # ABBA order: a drifting load hits both alike
            pair = [lambda: strategy.append(boot_by_strategy(dut))]
            pair.append(lambda: expect.append(boot_by_expect(dut, commands)))
            for boot in pair if number % 2 == 0 else reversed(pair):
                boot()
    ours, theirs = statistics.median(strategy), statistics.median(expect)
    return {
        "boot_transition_s": ours,
        "boot_expect_s": theirs,
        "boot_ratio": ours / theirs,
        "boot_rounds": boots,
        "notes": [
            f"boot: transition shell {ours:.2f} s vs expect script {theirs:.2f} s "
            f"(median of {boots}; all: {[round(x, 2) for x in strategy]} vs "
            f"{[round(x, 2) for x in expect]})"
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.boot_bench")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
