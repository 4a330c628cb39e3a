"""The board's firmware: QEMU's own direct kernel boot, or real U-Boot first.

With ``firmware: u-boot`` QEMU runs Debian's U-Boot build (``u-boot-qemu``) as the BIOS.
The kernel and initramfs are still handed to QEMU (``-kernel``/``-initrd``), so U-Boot can
load them with ``qfw load`` when nothing serves them over the network. The 32-bit build is
the default: it ``zboot``\\ s the project's 64-bit kernel, the 64-bit build's ``zboot``
hangs.
"""

from __future__ import annotations

import os
from typing import Literal

from tether.errors import ConfigError

__all__ = ["UBOOT_ROMS", "Firmware", "firmware_args"]

#: Firmware a board can boot first.
Firmware = Literal["direct", "u-boot"]

#: Debian's U-Boot builds for QEMU x86, by name (``firmware_rom`` takes these or a path).
UBOOT_ROMS = {
    "qemu-x86": "/usr/lib/u-boot/qemu-x86/u-boot.rom",
    "qemu-x86_64": "/usr/lib/u-boot/qemu-x86_64/u-boot.rom",
}


def firmware_args(firmware: Firmware, rom: str = "") -> list[str]:
    """The QEMU arguments that boot ``firmware`` (none for ``direct``).

    Raises:
        ConfigError: the ROM file does not exist (install ``u-boot-qemu``).
    """
    if firmware == "direct":
        return []
    path = UBOOT_ROMS.get(rom or "qemu-x86", rom)
    if not os.path.isfile(path):
        raise ConfigError(
            f"Qemu.firmware_rom: {path} does not exist (install Debian's u-boot-qemu, "
            "which `make setup` does)"
        )
    return ["-bios", path]
