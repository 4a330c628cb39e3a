"""SSH: commands, files (SFTP), port forwards and an interactive shell on a device.

The driver :class:`Ssh` runs on the exporter with asyncssh (the ``tether[ssh]`` extra, imported
only when ``Ssh`` is, so a client host needs no asyncssh) and
keeps one SSH connection per session; :class:`SshClient` is what users call and what adds
``dut NODE run|shell|put|get|forward``. The ``shell`` stream is framed (``_frames``); the
other byte streams carry plain bytes. :mod:`tether.drivers.ssh.testing` starts a real
OpenSSH ``sshd`` for tests.
"""

from typing import TYPE_CHECKING, Any

from tether.extras import check_extra

from ._client import SshClient
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

if TYPE_CHECKING:
    from ._driver import Ssh

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


def __getattr__(name: str) -> Any:
    # The driver needs asyncssh (``tether[ssh]``); the client and the errors do not, so a
    # client host imports this package without it.
    if name == "Ssh":
        check_extra("ssh", "tether.drivers.ssh.Ssh")
        from ._driver import Ssh

        return Ssh
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
