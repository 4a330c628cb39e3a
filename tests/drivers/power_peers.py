"""Real protocol peers for the power drivers, started by the tests (and by ``bench.power_bench``).

- :func:`run_snmpd`: net-snmp's ``snmpd`` in the foreground on ``127.0.0.1:PORT`` with its own
  config (``-C -c CONF``: the system's config is never read), a v2c read-write and read-only
  community, a v3 authPriv user, and PDU outlet tables served by ``snmp_outlets.py``
  (``pass_persist``) whose state lives in a JSON file. :func:`snmpget` / :func:`snmpset` are
  net-snmp's own command-line client, an independent check of what tether did.
- :func:`run_modbus_server`: pymodbus's own ``ModbusTcpServer`` on a thread with its own loop.
- :func:`run_bmc`: pyghmi's BMC simulator (``pyghmi.ipmi.bmc.Bmc``) on a thread, keeping a
  chassis power state; :func:`ipmitool` is Debian's ``ipmitool`` as a second client.

Readiness is a line or an event, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SNMPD = shutil.which("snmpd") or "/usr/sbin/snmpd"

APC_BASE = "1.3.6.1.4.1.318.1.1.4.4.2.1.3"
RARITAN_BASE = "1.3.6.1.4.1.13742.6.4.1.2.1"
GENERIC_BASE = "1.3.6.1.4.1.99999.7"

COMMUNITY = "lab-rw-secret"
RO_COMMUNITY = "lab-ro"
V3_USER = "tether"
V3_AUTH = "auth-secret-123"
V3_PRIV = "priv-secret-456"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quiet_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MIBS="", MIBDIRS=str(tmp), SNMP_PERSISTENT_DIR=str(tmp / "client"), SNMPCONFPATH=str(tmp)
    )
    return env


@dataclass
class Snmpd:
    """A running snmpd: its port, state file and the files it was started with."""

    port: int
    state: Path
    directory: Path
    process: subprocess.Popen[bytes]
    log: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return _quiet_env(self.directory)


@contextlib.contextmanager
def run_snmpd(directory: Path, timeout: float = 20.0) -> Iterator[Snmpd]:
    """Start snmpd with the outlet tables; stop it (and its pass_persist helpers) after."""
    directory.mkdir(parents=True, exist_ok=True)
    state = directory / "outlets.json"
    script = HERE / "snmp_outlets.py"
    for attempt in range(5):
        port = free_udp_port()
        conf = directory / "snmpd.conf"
        handlers = "\n".join(
            f"pass_persist .{base} {sys.executable} {script} {kind} {base} {state}"
            for kind, base in (
                ("apc", APC_BASE),
                ("raritan", RARITAN_BASE),
                ("generic", GENERIC_BASE),
            )
        )
        conf.write_text(
            f"agentaddress udp:127.0.0.1:{port}\n"
            f"rwcommunity {COMMUNITY} 127.0.0.1\n"
            f"rocommunity {RO_COMMUNITY} 127.0.0.1\n"
            f'createUser {V3_USER} SHA "{V3_AUTH}" AES "{V3_PRIV}"\n'
            f"rwuser {V3_USER} priv\n"
            f"{handlers}\n"
            f"[snmp] persistentDir {directory / 'persist'}\n"
        )
        process = subprocess.Popen(
            [SNMPD, "-f", "-Lo", "-C", "-c", str(conf), "-M", str(directory), "-m", ""],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_quiet_env(directory),
        )
        agent = Snmpd(port, state, directory, process)
        if _wait_ready(agent, timeout):
            break
        process.kill()
        process.wait()
        if attempt == 4:
            raise AssertionError("snmpd did not start:\n" + "\n".join(agent.log[-20:]))
    try:
        yield agent
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def _wait_ready(agent: Snmpd, timeout: float) -> bool:
    """Read snmpd's log up to "NET-SNMP version" (it is listening then); False if it exits."""
    assert agent.process.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(agent.process.stdout, selectors.EVENT_READ)
        buffer = b""
        while sel.select(timeout):
            chunk = os.read(agent.process.stdout.fileno(), 65536)
            if not chunk:
                return False
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                agent.log.append(text)
                if text.startswith("NET-SNMP version"):
                    _drain(agent)
                    return True
                if "Error opening specified endpoint" in text:
                    return False
    return False


def _drain(agent: Snmpd) -> None:
    """Keep reading snmpd's log on a thread so a full pipe never blocks it."""
    assert agent.process.stdout is not None
    stream = agent.process.stdout

    def pump() -> None:
        for line in iter(stream.readline, b""):
            agent.log.append(line.decode(errors="replace").rstrip())

    threading.Thread(target=pump, name="snmpd-log", daemon=True).start()


def _snmp_auth(version: str) -> list[str]:
    if version == "3":
        return [
            "-v3",
            "-l",
            "authPriv",
            "-u",
            V3_USER,
            "-a",
            "SHA",
            "-A",
            V3_AUTH,
            "-x",
            "AES",
            "-X",
            V3_PRIV,
        ]
    return ["-v2c", "-c", COMMUNITY]


def snmpget(agent: Snmpd, oid: str, version: str = "2c") -> int:
    """net-snmp's ``snmpget``: the INTEGER value at ``oid``."""
    out = subprocess.run(
        [
            "snmpget",
            *_snmp_auth(version),
            "-Oqv",
            "-t",
            "5",
            "-r",
            "1",
            f"127.0.0.1:{agent.port}",
            oid,
        ],
        capture_output=True,
        text=True,
        env=agent.env(),
        check=True,
        timeout=30,
    )
    return int(out.stdout.strip())


def snmpset(agent: Snmpd, oid: str, value: int, version: str = "2c") -> None:
    """net-snmp's ``snmpset`` of an INTEGER."""
    subprocess.run(
        [
            "snmpset",
            *_snmp_auth(version),
            "-Oqv",
            "-t",
            "5",
            "-r",
            "1",
            f"127.0.0.1:{agent.port}",
            oid,
            "i",
            str(value),
        ],
        capture_output=True,
        text=True,
        env=agent.env(),
        check=True,
        timeout=30,
    )


# -- Modbus ---------------------------------------------------------------------------------


@dataclass
class ModbusServer:
    """pymodbus's server on a thread: ``port``, and ``coils()`` read through its datastore."""

    port: int
    loop: asyncio.AbstractEventLoop
    server: Any
    devices: Any

    def coils(self, unit: int = 1, count: int = 8) -> list[bool]:
        """The coils as the server holds them (read on the server's own loop)."""

        async def read() -> list[bool]:
            values = await self.server.context.async_getValues(unit, 1, 0, count)
            return [bool(v) for v in values]

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(10)


@contextlib.contextmanager
def run_modbus_server(coils: int = 8, units: tuple[int, ...] = (1,)) -> Iterator[ModbusServer]:
    """pymodbus's ``ModbusTcpServer`` on 127.0.0.1 (port 0), with ``coils`` coils per unit."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    ready = threading.Event()
    box: dict[str, Any] = {}

    def device(unit: int) -> Any:
        return SimDevice(
            id=unit,
            simdata=(
                [SimData(0, count=coils, values=False, datatype=DataType.BITS)],
                [SimData(0, count=1, values=False, datatype=DataType.BITS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
            ),
        )

    async def main() -> None:
        server = ModbusTcpServer([device(unit) for unit in units], address=("127.0.0.1", 0))
        await server.serve_forever(background=True)
        box["server"] = server
        box["port"] = server.transport.sockets[0].getsockname()[1]
        box["loop"] = asyncio.get_running_loop()
        box["stop"] = asyncio.Event()
        ready.set()
        await box["stop"].wait()
        await server.shutdown()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="modbus-server", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise AssertionError("pymodbus server did not start")
    try:
        yield ModbusServer(box["port"], box["loop"], box["server"], units)
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A TCP port whose connections complete (the kernel's backlog) and never get an answer."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield int(server.getsockname()[1])


def refused_port() -> int:
    """A TCP port on 127.0.0.1 with nobody listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- IPMI -----------------------------------------------------------------------------------

BMC_USER = "admin"
BMC_PASSWORD = "bmc-secret-789"


@dataclass
class Bmc:
    """pyghmi's BMC simulator in a child process (``ipmi_bmc.py``)."""

    port: int
    process: subprocess.Popen[str]


@contextlib.contextmanager
def run_bmc() -> Iterator[Bmc]:
    """Start the BMC simulator on 127.0.0.1 (any free UDP port); kill it after."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "ipmi_bmc.py"), "0", BMC_USER, BMC_PASSWORD],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("ready "):
        process.kill()
        raise AssertionError(f"the BMC simulator did not start: {line!r}")
    threading.Thread(target=process.stdout.read, name="bmc-out", daemon=True).start()
    try:
        yield Bmc(int(line.split()[1]), process)
    finally:
        process.kill()
        process.wait()


def ipmitool(bmc: Bmc, *args: str, password: str = BMC_PASSWORD) -> str:
    """Debian's ``ipmitool -I lanplus`` against the simulator; its stdout."""
    out = subprocess.run(
        [
            "ipmitool",
            "-I",
            "lanplus",
            "-H",
            "127.0.0.1",
            "-p",
            str(bmc.port),
            "-U",
            BMC_USER,
            "-P",
            password,
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


@contextlib.contextmanager
def run_modbus_server_process(coils: int = 8) -> Iterator[int]:
    """pymodbus's server in a child process (``modbus_server.py``); yields its port."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "modbus_server.py"), str(coils), "1"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("ready "):
        process.kill()
        raise AssertionError(f"the Modbus server did not start: {line!r}")
    try:
        yield int(line.split()[1])
    finally:
        process.kill()
        process.wait()
