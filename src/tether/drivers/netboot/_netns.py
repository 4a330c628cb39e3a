"""Network namespaces: make sockets and open tap devices inside one, from any thread.

A socket belongs to the network namespace its creating thread was in when it called
``socket()``; so does a tap device opened with ``TUNSETIFF``. :class:`NetworkNamespace`
switches the calling thread into the namespace for exactly that call (``setns(2)``) and back,
so the event loop's thread can do it between two callbacks. Needs ``CAP_SYS_ADMIN`` (root).
Namespaces are made and removed with iproute2's ``ip netns``, which keeps their handle under
``/run/netns/NAME``.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import subprocess
from collections.abc import Iterator, Sequence

from ._errors import NetworkSetupError

__all__ = ["NetworkNamespace", "run_ip"]

_CLONE_NEWNET = 0x40000000
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetworkSetupError(f"setns: {os.strerror(err)} (needs root)")


def run_ip(args: Sequence[str], what: str, timeout: float = 10.0) -> str:
    """Run ``ip ARGS``; its stdout.

    Raises:
        NetworkSetupError: ``ip`` is missing, failed (its stderr is in the message) or hung.
    """
    try:
        done = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise NetworkSetupError(f"{what}: `ip` (iproute2) is not installed") from None
    except subprocess.TimeoutExpired:
        raise NetworkSetupError(f"{what}: `ip {' '.join(args)}` hung") from None
    if done.returncode != 0:
        raise NetworkSetupError(f"{what}: ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class NetworkNamespace:
    """A handle on the namespace ``name`` (made by ``ip netns add``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        path = f"/run/netns/{name}"
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise NetworkSetupError(f"network namespace {name}: {exc.strerror}") from exc

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread is in the namespace inside the block (keep the block short)."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(self._fd)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket in the namespace."""
        with self.entered():
            return socket.socket(family, kind)

    def open_tap(self, name: str) -> int:
        """A file descriptor on the tap device ``name`` in the namespace (for QEMU's
        ``-netdev tap,fd=N``); inheritable, the caller closes it."""
        with self.entered():
            fd = os.open("/dev/net/tun", os.O_RDWR)
            try:
                fcntl.ioctl(
                    fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TAP | _IFF_NO_PI)
                )
            except OSError as exc:
                os.close(fd)
                raise NetworkSetupError(f"tap {name} in {self.name}: {exc.strerror}") from exc
        os.set_inheritable(fd, True)
        return fd

    def close(self) -> None:
        """Drop the handle (the namespace stays until ``ip netns del``)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
