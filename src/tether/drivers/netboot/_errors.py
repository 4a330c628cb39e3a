from __future__ import annotations

from tether.errors import TetherError

__all__ = ["NetbootError", "NetbootFileNotFound", "NetbootPathRefused", "NetworkSetupError"]


class NetbootError(TetherError):
    """A network boot service failed (the message names the server, the file and why)."""


class NetbootFileNotFound(NetbootError, FileNotFoundError):
    """No file of that name was put in this session's files."""


class NetbootPathRefused(NetbootError, PermissionError):
    """A file name that would leave the served directory (``..``, absolute, a symlink out)."""


class NetworkSetupError(NetbootError):
    """The DUT network (namespace, bridge, tap) could not be set up or used."""
