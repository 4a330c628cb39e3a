"""Large frames without fresh pages: glibc's heap settings for a process that serves the wire.

glibc hands an allocation of 128 KiB or more (a threshold it moves with use) its own ``mmap``
and unmaps it on free, and gives free memory at the top of a heap back to the kernel once
there is a little of it. Every large frame (an argument of 300 kB, a byte stream's 1 MiB DATA,
an SFTP write) then lands on fresh pages, twice: once assembled, once decoded, and every 4 KiB
page is a fault. Measured here, decoding one 300 kB frame took 169-179 page faults and 550 us of
CPU; with :func:`tune_heap`, none and 75 us.

:func:`tune_heap` asks glibc to serve allocations up to ``MMAP_THRESHOLD`` from the heap and to
keep ``TOP_PAD`` of free memory at a heap's top (``mallopt``): such a process holds up to that
much more memory per heap, and its large frames reuse it. The exporter's runners and
``tether.testing.serve()`` call it. A ``MALLOC_*`` or ``GLIBC_TUNABLES`` setting in the
environment is the user's choice and wins: nothing is changed then. Not glibc: nothing to do.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading

__all__ = ["MMAP_THRESHOLD", "TOP_PAD", "tune_heap"]

#: Allocations below this come from the heap (4 MiB: above the 1 MiB default frame).
MMAP_THRESHOLD = 4 << 20
#: Free memory a heap keeps at its top instead of returning it to the kernel.
TOP_PAD = 8 << 20

# mallopt's parameter numbers (<malloc.h>).
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_USER_SETTINGS = (
    "GLIBC_TUNABLES",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_TRIM_THRESHOLD_",
)

_lock = threading.Lock()
_tuned: bool | None = None


def tune_heap() -> bool:
    """Apply the heap settings to this process, once; True when they are in effect."""
    global _tuned
    with _lock:
        if _tuned is None:
            _tuned = _apply()
        return _tuned


def _apply() -> bool:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always has it
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TOP_PAD, TOP_PAD))
