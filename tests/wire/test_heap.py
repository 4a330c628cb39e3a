"""``tune_heap()``: large frames reuse heap memory instead of landing on fresh pages.

Each check runs in a fresh interpreter: the settings are process-wide and last for the
process's life.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)

# Decodes a 300 kB frame, fed in 256 KiB reads as the server gets it, 200 times; prints
# whether the settings took and the page faults per frame.
DECODE = """
import resource, sys
from tether.wire import Call, encode_event, tune_heap
from tether.wire._frames import FrameDecoder

tuned = tune_heap() if sys.argv[1] == "tune" else None
frame = encode_event(Call(1, "n" * 32, "cycle", [b"\\0" * 300_000], {}))
decoder = FrameDecoder(1 << 24)
read = memoryview(bytearray(1 << 18))

def once():
    for start in range(0, len(frame), len(read)):
        piece = frame[start : start + len(read)]
        read[: len(piece)] = piece
        decoder.feed(read[: len(piece)], borrowed=True)
        while (found := decoder.next_frame()) is not None:
            assert len(found[0].args[0]) == 300_000

for _ in range(20):
    once()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    once()
print(tuned, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 200)
"""


def _decode(mode: str, **env: str) -> tuple[str, float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", DECODE, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    return out[0], float(out[1])


def test_a_tuned_process_decodes_large_frames_without_page_faults() -> None:
    tuned, faults = _decode("tune")
    assert tuned == "True"
    assert faults < 5  # glibc's defaults here: about 170 a frame (two 300 kB buffers)


def test_the_users_own_malloc_setting_wins() -> None:
    tuned, _ = _decode("tune", MALLOC_TOP_PAD_="0")
    assert tuned == "False"
