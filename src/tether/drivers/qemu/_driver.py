from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tether.driver import AsyncioStream, Driver, export, export_stream
from tether.drivers.network import NetworkInterface
from tether.drivers.power import BoardPower, PowerReading
from tether.drivers.serial import ConsoleReader, SerialInterface, SerialSettings
from tether.drivers.storage import BoardDisk
from tether.errors import ConfigError

from ._firmware import Firmware, firmware_args
from ._nic import DutNic, attach_dut_nic, close_fd
from ._vm import ConsoleHub, QemuError, VirtualMachine, VmSpec

__all__ = [
    "Qemu",
    "QemuConsole",
    "QemuDisk",
    "QemuNetwork",
    "QemuPower",
    "default_assets_dir",
]

_LIMIT = 1 << 20


def default_assets_dir() -> Path:
    """Where ``make setup`` puts the board's kernel and initramfs.

    ``$TETHER_QEMU_ASSETS`` when set, else ``<venv>/share/tether-qemu``.
    """
    env = os.environ.get("TETHER_QEMU_ASSETS")
    return Path(env) if env else Path(sys.prefix) / "share" / "tether-qemu"


class Qemu(Driver):
    """A virtual board: a QEMU x86-64 VM (TCG, no KVM needed) with the usual lab wiring.

    Children: ``power`` (start/stop the VM process), ``console`` (its serial console,
    ttyS0, a :class:`~tether.drivers.serial.SerialInterface`), ``disk`` (its virtio disk
    image, a :class:`~tether.drivers.storage.StorageMuxInterface`: flash it while the board
    is off), and one :class:`~tether.drivers.network.NetworkInterface` child per ``hostfwd``
    entry (a TCP byte stream to that guest port).

    Config:
        kernel, initrd: boot files (default: ``vmlinuz`` and ``initramfs.cpio.gz`` in
            :func:`default_assets_dir`, built by ``make setup``).
        append: the kernel command line.
        memory: guest RAM in MiB.
        smp: guest CPUs.
        accel: QEMU accelerator (``tcg``; ``kvm`` where /dev/kvm exists).
        disk: the disk image file (default: a temporary file, removed at stop).
        disk_mib: the disk's size in MiB (a smaller file is grown, sparse).
        hostfwd: child name -> guest TCP port, forwarded from 127.0.0.1.
        qemu: the QEMU binary.
        extra_args: appended to the QEMU command line.
        boot_timeout: seconds QEMU gets to connect its console at power-on.
        firmware: ``direct`` (QEMU boots the kernel) or ``u-boot`` (real U-Boot boots
            first and stops at its prompt or autoboot; it can ``tftpboot`` or ``qfw load``
            the kernel, then ``zboot`` it).
        firmware_rom: the U-Boot ROM: ``qemu-x86`` (default, Debian's 32-bit build),
            ``qemu-x86_64``, or a file path.
        nic: ``user`` (QEMU's user network, with ``hostfwd``) or ``dut``: a tap on the
            :class:`~tether.drivers.netboot.DutNetwork` routed as ``uses: {network: NODE}``
            (no ``hostfwd`` children then; the board talks to the exporter's servers there).
        nic_model: the QEMU NIC device on a DUT network (``e1000``, ``virtio-net-pci``).
    """

    kernel: str = ""
    initrd: str = ""
    append: str = "console=ttyS0 quiet panic=-1"
    memory: int = 256
    smp: int = 1
    accel: str = "tcg"
    disk: str = ""
    disk_mib: int = 64
    hostfwd: dict[str, int] = {"network": 22}
    qemu: str = "qemu-system-x86_64"
    extra_args: list[str] = []
    boot_timeout: float = 30.0
    firmware: Firmware = "direct"
    firmware_rom: str = ""
    nic: str = "user"
    nic_model: str = "e1000"

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.pop("children", None):
            raise ConfigError("Qemu makes its own children (power, console, disk, network)")
        super().__init__(**kwargs)
        self.hub = ConsoleHub()
        self.vm = VirtualMachine(self.hub)
        self.power = QemuPower()
        self.console = QemuConsole()
        self.storage = QemuDisk(path=self.disk, disk_mib=self.disk_mib)
        self.children = {"power": self.power, "console": self.console, "disk": self.storage}
        if self.nic not in ("user", "dut"):
            raise ConfigError(f"Qemu.nic: expected user or dut (got {self.nic!r})")
        self._dut_nic: DutNic | None = None
        for name, port in (self.hostfwd if self.nic == "user" else {}).items():
            if name in self.children:
                raise ConfigError(f"Qemu.hostfwd: {name!r} is taken by a built-in child")
            if not 0 < port < 65536:
                raise ConfigError(f"Qemu.hostfwd.{name}: {port} is not a TCP port")
            self.children[name] = QemuNetwork(guest_port=port)
        self.power._board = self
        self.storage._board = self
        for child in self.children.values():
            if isinstance(child, _Child):
                child._board = self

    async def start(self) -> None:
        self._find_boot_files()
        firmware_args(self.firmware, self.firmware_rom)  # a missing ROM fails here, not at on
        self.hub.name = f"console {self.node.path}.console" if self.node.path else "console"
        if self.nic == "dut":
            self._dut_nic = await attach_dut_nic(self.incoming, self.nic_model, self.node.path)

    def _find_boot_files(self) -> None:
        assets = default_assets_dir()
        self.kernel = self.kernel or str(assets / "vmlinuz")
        self.initrd = self.initrd or str(assets / "initramfs.cpio.gz")
        for what in ("kernel", "initrd"):
            path = getattr(self, what)
            if not os.path.isfile(path):
                raise ConfigError(
                    f"Qemu.{what}: {path} does not exist (run `make setup`, which builds the "
                    "board's files with scripts/build-initramfs.sh)"
                )

    async def prepare_stop(self) -> None:
        await self.vm.stop()

    def stop(self) -> None:
        self.vm.kill_now()
        self.hub.close()

    def spec(self) -> VmSpec:
        """What :meth:`power_on` starts (the disk only when the mux gives it to the DUT)."""
        return VmSpec(
            qemu=self.qemu,
            kernel=self.kernel,
            initrd=self.initrd,
            append=self.append,
            memory_mib=self.memory,
            smp=self.smp,
            accel=self.accel,
            disk=self.storage.path if self.storage.mode == "dut" else None,
            forwards={
                name: child.guest_port
                for name, child in self.children.items()
                if isinstance(child, QemuNetwork)
            },
            extra_args=[*firmware_args(self.firmware, self.firmware_rom), *self.extra_args],
        )

    async def power_on(self) -> None:
        if self.vm.running:
            return
        if self.storage.mode == "host":
            await self.storage.dut()  # the VM takes its disk, as a real mux would on boot
        spec, tap_fd = self._with_nic(self.spec())
        try:
            await self.vm.start(spec, self.boot_timeout)
        except QemuError as exc:
            if "host forwarding" not in str(exc):
                raise
            # A port picked for hostfwd was taken in between: once more, with fresh ports.
            await self.vm.start(self.spec(), self.boot_timeout)
        finally:
            close_fd(tap_fd)
        self.logger.info("qemu started (pid %s)", self.vm.process and self.vm.process.pid)

    def _with_nic(self, spec: VmSpec) -> tuple[VmSpec, int | None]:
        """``spec`` with the DUT network's tap as the NIC (``nic: dut``), and its descriptor."""
        if self._dut_nic is None:
            return spec, None
        spec.netdev, fd = self._dut_nic.open()
        spec.pass_fds = [fd]
        return spec, fd

    async def power_off(self) -> None:
        await self.vm.stop()

    @property
    def running(self) -> bool:
        return self.vm.running

    def power_reading(self) -> PowerReading:
        """A nominal sample: 5 V while the VM runs, 0 V when it does not; current 0."""
        return PowerReading(voltage=5.0 if self.vm.running else 0.0, current=0.0)


class _Child(Driver):
    _board: Qemu | None = None  # set by Qemu.__init__ (private: not a config field)

    @property
    def board(self) -> Qemu:
        if self._board is None:
            raise QemuError(f"{type(self).__name__} works only as a child of a Qemu board")
        return self._board


class QemuPower(BoardPower):
    """Starts (``on``) and stops (``off``: SIGTERM, then SIGKILL) the board's QEMU process."""


class QemuConsole(SerialInterface, _Child):
    """The board's serial console (ttyS0) as a byte stream; any number of streams at once.

    Each stream gets what the guest prints from the moment it opens, across power cycles;
    what a stream sends goes to the guest (and is dropped while the board is off). Open the
    console before powering on to see the boot.
    """

    @export_stream
    @asynccontextmanager
    async def connect(self, read_only: bool = False) -> AsyncIterator[ConsoleReader]:
        """Open the console: one writer at a time, any number of ``read_only`` readers."""
        stream = self.board.hub.join(read_only)
        try:
            yield stream
        finally:
            await stream.aclose()

    @export
    async def log(self, since: int = 0, limit: int | None = None) -> bytes:
        """What the board printed this session, from byte offset ``since``."""
        return self.board.hub.log.read(since, limit)

    @export
    async def log_size(self) -> int:
        """Bytes the board printed this session."""
        return self.board.hub.log.size

    @export
    async def settings(self) -> SerialSettings:
        """Nominal line settings of the virtual UART (115200 8N1)."""
        return SerialSettings(
            url="qemu:ttyS0",
            baudrate=115200,
            bytesize=8,
            parity="N",
            stopbits=1,
            xonxoff=False,
            rtscts=False,
            dsrdtr=False,
        )


class QemuDisk(BoardDisk):
    """The board's virtio disk image as a storage mux (:class:`BoardDisk`)."""


class QemuNetwork(NetworkInterface, _Child):
    """A TCP byte stream to one guest port, through QEMU's user-mode ``hostfwd``.

    Config:
        guest_port: the TCP port in the guest.
    """

    guest_port: int = 22

    def _port(self) -> int:
        port = self.board.vm.ports.get(self.node.name)
        if port is None or not self.board.vm.running:
            raise QemuError(f"the board is off: power it on before connecting to {self.node.name}")
        return port

    @export_stream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncioStream]:
        """Connect to the guest port (QEMU accepts at once; the guest may then refuse)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self._port(), limit=_LIMIT)
        async with AsyncioStream(reader, writer) as stream:
            yield stream

    @export
    async def address(self) -> str:
        """The forwarded endpoint on the exporter host, ``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self._port()}"
