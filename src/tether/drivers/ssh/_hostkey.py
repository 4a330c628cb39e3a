"""The configured ``host_key``: an OpenSSH public key line or a ``SHA256:`` fingerprint.

:func:`parse_host_key` checks the config value (it is a config error when it is neither);
:meth:`HostKeyPin.matches` compares the key the server presents. A mismatch is reported with
both fingerprints, as ``ssh`` does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

__all__ = ["HostKeyPin", "fingerprint", "parse_host_key"]

_FINGERPRINT = re.compile(r"^SHA256:([A-Za-z0-9+/]{43})=?$")
_KEY_LINE = re.compile(r"^([a-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,2})(\s.*)?$")


def fingerprint(key_blob: bytes) -> str:
    """The OpenSSH SHA256 fingerprint of a public key blob (``SHA256:`` + unpadded base64)."""
    digest = hashlib.sha256(key_blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class HostKeyPin:
    """What the server's host key must be.

    Attributes:
        fingerprint: the SHA256 fingerprint expected.
        algorithm: the key type when a whole key was configured (``ssh-ed25519``), else None.
        blob: the key's wire-format blob when a whole key was configured.
    """

    fingerprint: str
    algorithm: str | None = None
    blob: bytes | None = None

    def __post_init__(self) -> None:
        if not _FINGERPRINT.match(self.fingerprint):
            raise ValueError(f"not a SHA256 fingerprint: {self.fingerprint!r}")

    def matches(self, key_blob: bytes) -> bool:
        """Whether a presented key (its wire-format blob) is the pinned one."""
        if self.blob is not None:
            return key_blob == self.blob
        return fingerprint(key_blob) == self.fingerprint


def parse_host_key(value: str) -> HostKeyPin:
    """Parse a ``host_key`` config value.

    Accepts ``SHA256:<43 base64 characters>`` (what ``ssh-keygen -lf`` prints) or an OpenSSH
    public key line ``<type> <base64> [comment]`` (a ``*.pub`` file, or a ``known_hosts`` line
    without its host field).

    Raises:
        ValueError: neither form, or the key's base64 does not decode to a key of its type.
    """
    text = value.strip()
    if text.startswith("SHA256:"):
        if not _FINGERPRINT.match(text):
            raise ValueError(
                f"host_key {text!r}: a SHA256 fingerprint is 'SHA256:' and 43 base64 "
                "characters (as `ssh-keygen -lf KEY.pub` prints it)"
            )
        return HostKeyPin(text.rstrip("="))
    match = _KEY_LINE.match(text)
    if match is None:
        raise ValueError(
            f"host_key {text[:40]!r}...: expected an OpenSSH public key line "
            "('ssh-ed25519 AAAA...') or its 'SHA256:...' fingerprint"
        )
    algorithm, encoded = match.group(1), match.group(2)
    try:
        blob = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError(f"host_key: the {algorithm} key's base64 does not decode") from None
    if _blob_type(blob) != algorithm:
        raise ValueError(
            f"host_key: the key data is not a {algorithm} key (it says {_blob_type(blob)!r})"
        )
    return HostKeyPin(fingerprint(blob), algorithm, blob)


def _blob_type(blob: bytes) -> str | None:
    """The key type a wire-format blob starts with (an SSH string), or None."""
    if len(blob) < 4:
        return None
    size = int.from_bytes(blob[:4], "big")
    if size > 64 or len(blob) < 4 + size:
        return None
    try:
        return blob[4 : 4 + size].decode("ascii")
    except UnicodeDecodeError:
        return None
