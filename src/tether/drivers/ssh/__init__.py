"""SSH: commands, files (SFTP), port forwards and an interactive shell on a device.

The driver :class:`Ssh` runs on the exporter with asyncssh (the ``tether[ssh]`` extra) and
keeps one SSH connection per session; :class:`SshClient` is what users call and what adds
``dut NODE run|shell|put|get|forward``. The ``shell`` stream is framed (``_frames``); the
other byte streams carry plain bytes. :mod:`tether.drivers.ssh.testing` starts a real
OpenSSH ``sshd`` for tests.
"""

from ._client import SshClient
from ._driver import Ssh
from ._errors import (
    SshAuthFailed,
    SshCommandTimeout,
    SshDisconnected,
    SshError,
    SshForwardRefused,
    SshHostKeyRefused,
    SshTransferFailed,
    SshUnreachable,
)
from ._frames import FrameDecoder, FrameKind, ShellFrame
from ._hostkey import HostKeyPin, parse_host_key
from ._interface import SshInterface, SshOutput
from ._terminal import ShellChannel

__all__ = [
    "FrameDecoder",
    "FrameKind",
    "HostKeyPin",
    "ShellChannel",
    "ShellFrame",
    "Ssh",
    "SshAuthFailed",
    "SshClient",
    "SshCommandTimeout",
    "SshDisconnected",
    "SshError",
    "SshForwardRefused",
    "SshHostKeyRefused",
    "SshInterface",
    "SshOutput",
    "SshTransferFailed",
    "SshUnreachable",
    "parse_host_key",
]
