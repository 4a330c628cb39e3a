"""The QEMU board's firmware choice (the boot through real U-Boot is in test_uboot.py)."""

from __future__ import annotations

import pytest

from tether.drivers.qemu import Qemu
from tether.errors import ConfigError


def test_u_boot_boots_the_32_bit_rom_by_default() -> None:
    board = Qemu(firmware="u-boot")
    args = board.spec().extra_args
    assert list(args[:2]) == ["-bios", "/usr/lib/u-boot/qemu-x86/u-boot.rom"]
    assert list(Qemu(firmware="u-boot", firmware_rom="qemu-x86_64").spec().extra_args[:2]) == [
        "-bios",
        "/usr/lib/u-boot/qemu-x86_64/u-boot.rom",
    ]
    assert "-bios" not in Qemu().spec().extra_args


def test_a_missing_rom_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="/nowhere/u-boot.rom does not exist"):  # noqa: RUF043
        Qemu(firmware="u-boot", firmware_rom="/nowhere/u-boot.rom").spec()
    with pytest.raises(ValueError, match="firmware"):
        Qemu(firmware="grub")
