"""The board's NIC on a DUT network (``nic: dut``): a tap on the network's bridge.

QEMU's user network answers the guest's TFTP requests itself, so a netbooting board needs a
real segment: the :class:`~tether.drivers.netboot.DutNetwork` the board ``uses:`` makes a tap
on its bridge, and each power-on opens a fresh descriptor on it (in the namespace) that QEMU
inherits (``-netdev tap,fd=N``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tether.driver import ServiceDirectory, ServiceNotFound
from tether.drivers.netboot import DutNetworkInterface, NetworkNamespace
from tether.errors import ConfigError

__all__ = ["DutNic", "attach_dut_nic"]


@dataclass
class DutNic:
    """The board's tap on a DUT network."""

    namespace: str
    tap: str
    model: str

    def open(self) -> tuple[list[str], int]:
        """QEMU arguments for the NIC and the descriptor they name (close it once QEMU runs)."""
        namespace = NetworkNamespace(self.namespace)
        try:
            fd = namespace.open_tap(self.tap)
        finally:
            namespace.close()
        return ["-netdev", f"tap,id=net0,fd={fd}", "-device", f"{self.model},netdev=net0"], fd


async def attach_dut_nic(incoming: ServiceDirectory, model: str, who: str) -> DutNic:
    """Make the board's tap on the DUT network routed to it as ``uses: {network: NODE}``.

    Raises:
        ConfigError: no DUT network is routed to the board.
    """
    try:
        network = incoming.connect(DutNetworkInterface)
    except ServiceNotFound:
        raise ConfigError(
            f"{who}: nic: dut needs a DutNetwork node in uses: (uses: {{network: NODE}})"
        ) from None
    tap = await network.add_tap()
    return DutNic(await network.namespace(), tap, model)


def close_fd(fd: int | None) -> None:
    """Close the parent's copy of the tap descriptor."""
    if fd is not None:
        os.close(fd)
