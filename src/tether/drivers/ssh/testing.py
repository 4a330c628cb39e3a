"""A real OpenSSH ``sshd`` for tests and benchmarks, with its own keys and config.

::

    from tether.drivers.ssh.testing import run_sshd

    with run_sshd(tmp_path) as sshd:
        config = sshd.driver_config()          # host, port, user, key_file, host_key
        subprocess.run(sshd.ssh_command("uname -a"))

``sshd -D -e -f CONFIG`` runs on 127.0.0.1 with a host key, a client key and an
``authorized_keys`` file made in ``directory``; nothing system-wide is read or changed, except
that ``/run/sshd`` (sshd's privilege-separation directory) is created when missing. The user
is whoever runs the tests (root may log in: ``PermitRootLogin yes``). Readiness is sshd's
"Server listening" line on stderr; everything it logs is kept in :attr:`Sshd.log`.
"""

from __future__ import annotations

import collections
import getpass
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SSHD", "Sshd", "free_port", "keygen", "run_sshd"]

#: OpenSSH's server, as Debian installs it.
SSHD = "/usr/sbin/sshd"
_START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def keygen(path: Path, kind: str = "ed25519") -> str:
    """Make a key pair at ``path`` (no passphrase); return the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "tether-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


@dataclass
class Sshd:
    """A running sshd (see :func:`run_sshd`)."""

    process: subprocess.Popen[bytes]
    directory: Path
    port: int
    user: str
    host_key: str
    client_key: Path
    log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=500))
    host: str = "127.0.0.1"

    def driver_config(self, **extra: Any) -> dict[str, Any]:
        """Config for :class:`tether.drivers.ssh.Ssh` that logs in with the client key."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": str(self.client_key),
            "host_key": self.host_key,
            **extra,
        }

    def ssh_options(self) -> list[str]:
        """Options for OpenSSH's ``ssh``/``scp`` that reach this server and trust its key."""
        known = self.directory / "known_hosts"
        if not known.exists():
            known.write_text(f"[{self.host}]:{self.port} {self.host_key}\n")
        return [
            "-F", "/dev/null",
            "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-i", str(self.client_key),
        ]  # fmt: skip

    def ssh_command(self, *command: str) -> list[str]:
        """An ``ssh`` command line running ``command`` on this server."""
        where = f"{self.user}@{self.host}"
        return ["ssh", *self.ssh_options(), "-p", str(self.port), where, *command]

    def children(self) -> list[int]:
        """Pids of sshd's per-connection processes (to cut connections in tests)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except OSError:
            return []


def _config(directory: Path, port: int, host_key: Path, authorized: Path) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            "PidFile none",
            f"AuthorizedKeysFile {authorized}",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin yes",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "AllowTcpForwarding yes",
            "PrintMotd no",
            "PrintLastLog no",
            "MaxSessions 64",
            "MaxStartups 64:30:128",
            "LogLevel INFO",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


@contextmanager
def run_sshd(directory: Path, *, attempts: int = 3) -> Iterator[Sshd]:
    """Start sshd with keys and config in ``directory``; stop it (SIGTERM) at exit.

    Raises:
        RuntimeError: sshd is not installed, or did not start (its log is in the message).
    """
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        raise RuntimeError(f"{SSHD} and ssh-keygen are needed (apt-get install openssh-server)")
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key_path = directory / "ssh_host_ed25519_key"
    host_key = keygen(host_key_path)
    client_key = directory / "id_ed25519"
    (directory / "authorized_keys").write_text(keygen(client_key) + "\n")
    problem = "did not start"
    for _ in range(attempts):
        port = free_port()
        config = directory / "sshd_config"
        config.write_text(_config(directory, port, host_key_path, directory / "authorized_keys"))
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        sshd = Sshd(process, directory, port, getpass.getuser(), host_key, client_key)
        ready = threading.Event()
        listening: list[bool] = []
        reader = threading.Thread(target=_read_log, args=(sshd, ready, listening), daemon=True)
        reader.start()
        try:
            ready.wait(_START_TIMEOUT)
            if listening and process.poll() is None:
                yield sshd
                return
            problem = " | ".join(sshd.log) or "no output"
            if "Address already in use" not in problem:
                break
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            reader.join(10)
            if process.stderr is not None:
                process.stderr.close()
    raise RuntimeError(f"sshd {problem}")


def _read_log(sshd: Sshd, ready: threading.Event, listening: list[bool]) -> None:
    stream = sshd.process.stderr
    assert stream is not None
    try:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            sshd.log.append(line)
            if "Server listening on" in line:
                listening.append(True)
                ready.set()
    finally:
        ready.set()  # ended: whoever waits looks at the process and the log
