"""The transfer loops the TFTP tests run the server with: each test passes on every one."""

from __future__ import annotations

import pytest

from tether.drivers.netboot._tftp_fast import NATIVE

LOOPS = [
    pytest.param("native", marks=pytest.mark.skipif(not NATIVE, reason="C pump not built")),
    "python",
    "reference",
]
