"""QEMU: a virtual board (x86-64, TCG) with power, serial console, disk and network children.

``make setup`` installs QEMU and busybox from Debian and builds the board's kernel and
initramfs (``scripts/build-initramfs.sh``) into :func:`default_assets_dir`.
"""

from ._driver import Qemu, QemuConsole, QemuDisk, QemuNetwork, QemuPower, default_assets_dir
from ._vm import QemuError

__all__ = [
    "Qemu",
    "QemuConsole",
    "QemuDisk",
    "QemuError",
    "QemuNetwork",
    "QemuPower",
    "default_assets_dir",
]
