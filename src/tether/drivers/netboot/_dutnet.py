"""The DUT network: a network namespace with a bridge, the exporter's address on it, and one
tap device per board.

Theory of operation. A lab keeps its boards off the office network: each bench has its own
segment with the exporter's DHCP/TFTP/HTTP services on it. Here that segment is a network
namespace made at the session's start (``ip netns add``), named uniquely per process and
driver (``tether-<pid>-<random>``), so any number of labs (and test runs) on one host never
see each other. In it: a bridge with the server address, and a tap per board (``add_tap``)
enslaved to the bridge. Servers that ``uses:`` this node open their sockets inside the
namespace (:class:`~._netns.NetworkNamespace`); a QEMU board gets a descriptor on its tap.
Deleting the namespace at the end removes the bridge and the taps with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
from typing import Any

from tether.driver import Driver, export
from tether.errors import ConfigError

from ._errors import NetworkSetupError
from ._interface import DutNetworkInterface
from ._netns import run_ip

__all__ = ["DutNetwork"]


class DutNetwork(DutNetworkInterface, Driver):
    """An isolated network for the board, set up by the exporter for each session.

    Config:
        subnet: the network (the first host address is the exporter's, the second the
            board's). Every lab has its own namespace, so labs may use the same subnet.
        bridge: the bridge's name inside the namespace.
        uplink: a host network interface wired to the boards (the NIC on the bench's own
            switch), moved into the namespace and onto the bridge for the session; the
            driver gives it back to the host when the session ends. Empty: none
            (the boards are virtual and use taps).
    """

    subnet: str = "192.168.77.0/24"
    bridge: str = "br0"
    uplink: str = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            network = ipaddress.IPv4Network(self.subnet, strict=True)
        except ValueError as exc:
            raise ConfigError(f"DutNetwork.subnet: {exc}") from exc
        if network.num_addresses < 4:
            raise ConfigError(f"DutNetwork.subnet: {self.subnet} has no room for two hosts")
        self._network = network
        hosts = network.hosts()
        self._server = str(next(hosts))
        self._board = str(next(hosts))
        self._name = ""
        self._taps: list[str] = []

    async def _ip(self, *args: str) -> str:
        return await asyncio.to_thread(run_ip, args, f"DutNetwork {self._name or '(new)'}")

    async def start(self) -> None:
        if os.geteuid() != 0:
            raise NetworkSetupError("DutNetwork needs root (it makes a network namespace)")
        self._name = f"tether-{os.getpid()}-{secrets.token_hex(3)}"
        await self._ip("netns", "add", self._name)
        try:
            ns = ("-n", self._name)
            await self._ip(*ns, "link", "set", "lo", "up")
            await self._ip(*ns, "link", "add", self.bridge, "type", "bridge")
            prefix = f"{self._server}/{self._network.prefixlen}"
            await self._ip(*ns, "addr", "add", prefix, "dev", self.bridge)
            await self._ip(*ns, "link", "set", self.bridge, "up")
            if self.uplink:
                await self._ip("link", "set", self.uplink, "netns", self._name)
                await self._ip(*ns, "link", "set", self.uplink, "master", self.bridge)
                await self._ip(*ns, "link", "set", self.uplink, "up")
        except NetworkSetupError:
            await self._delete()
            raise
        self.logger.info("dut network %s: %s on %s", self._name, prefix, self.bridge)

    async def _delete(self) -> None:
        with contextlib.suppress(NetworkSetupError):
            await self._ip("netns", "del", self._name)

    async def prepare_stop(self) -> None:
        if self._name:
            if self.uplink:  # back to the host (a virtual one would be deleted with the ns)
                with contextlib.suppress(NetworkSetupError):
                    ns = ("-n", self._name)
                    await self._ip(*ns, "link", "set", self.uplink, "nomaster")
                    await self._ip(*ns, "link", "set", self.uplink, "netns", str(os.getpid()))
            await self._delete()
            self.logger.info("dut network %s removed", self._name)
            self._name = ""

    @export
    async def namespace(self) -> str:
        """The network namespace's name."""
        return self._name

    @export
    async def server_address(self) -> str:
        """The exporter's address on the bridge (the board's ``serverip``)."""
        return self._server

    @export
    async def board_address(self) -> str:
        """The board's address (its ``ipaddr``)."""
        return self._board

    @export
    async def netmask(self) -> str:
        """The network's mask."""
        return str(self._network.netmask)

    @export
    async def add_tap(self) -> str:
        """Make a tap device on the bridge; its name (inside the namespace)."""
        name = f"tap{len(self._taps)}"
        ns = ("-n", self._name)
        await self._ip(*ns, "tuntap", "add", "dev", name, "mode", "tap")
        await self._ip(*ns, "link", "set", name, "master", self.bridge)
        await self._ip(*ns, "link", "set", name, "up")
        self._taps.append(name)
        return name

    @export
    async def remove_tap(self, name: str) -> None:
        """Remove a tap made by :meth:`add_tap`."""
        if name not in self._taps:
            raise NetworkSetupError(f"DutNetwork {self._name}: no tap {name!r} was made here")
        self._taps.remove(name)
        await self._ip("-n", self._name, "link", "del", name)
