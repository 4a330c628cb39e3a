"""Bearer tokens: made once, shown once, stored only as hashes.

A token is ``tth_`` followed by 43 url-safe characters (32 random bytes). The exporter keeps
only ``sha256:<hex>`` hashes (in its config or a token file) and checks a presented token by
hashing it and comparing against every accepted hash with :func:`hmac.compare_digest`; the
loop never stops early, so the time taken does not say which hash (if any) matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from tether.errors import ConfigError

__all__ = [
    "TOKEN_PREFIX",
    "describe_bad_hash",
    "generate_token",
    "hash_token",
    "is_token_hash",
    "read_token_hashes",
    "verify_token",
]

#: Every token tether makes starts with this, so a leaked one is easy to recognise.
TOKEN_PREFIX = "tth_"
_HASH_PREFIX = "sha256:"
_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TOKEN_BYTES = 32


def generate_token() -> str:
    """Make a new random bearer token.

    Returns:
        ``tth_`` followed by 32 random bytes, url-safe base64 encoded (no padding).
    """
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def hash_token(token: str) -> str:
    """Hash a token for storage.

    Args:
        token: the token in clear.

    Returns:
        ``sha256:`` followed by the lowercase hex SHA-256 of the token's UTF-8 bytes.
    """
    return _HASH_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_token_hash(value: str) -> bool:
    """True when ``value`` looks like a :func:`hash_token` result (``sha256:`` + 64 hex)."""
    return bool(_HASH_RE.match(value))


def verify_token(token: str | None, hashes: Iterable[str]) -> bool:
    """Check a presented token against the accepted hashes, in constant time per hash.

    Args:
        token: the token the peer presented (``None`` or empty never matches).
        hashes: accepted ``sha256:...`` hashes.

    Returns:
        True when the token's hash is one of ``hashes``.
    """
    presented = hash_token(token or "").encode("ascii")
    matched = False
    for accepted in hashes:
        # compare_digest wants equal types; encode so non-ASCII garbage cannot raise.
        same = hmac.compare_digest(presented, accepted.strip().encode("utf-8"))
        matched = matched | same
    return matched and bool(token)


def read_token_hashes(path: str | Path) -> list[str]:
    """Read a token file: one ``sha256:...`` hash per line; blank lines and ``#`` comments skipped.

    Args:
        path: the file to read.

    Returns:
        The hashes, in file order.

    Raises:
        ConfigError: the file cannot be read, or a line is not a token hash (the message names
            the file and line; a token in clear is called out as such).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read token file ({exc})") from exc
    hashes: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not is_token_hash(line):
            raise ConfigError(f"{path}:{number}: {describe_bad_hash(line)}")
        hashes.append(line)
    return hashes


def describe_bad_hash(value: str) -> str:
    """Explain why ``value`` is not an accepted token hash (used in config errors)."""
    if value.startswith(TOKEN_PREFIX):
        return (
            "this is a token in clear; store only its hash "
            "(expected 'sha256:' followed by 64 hex digits, see hash_token)"
        )
    return "expected a token hash: 'sha256:' followed by 64 lowercase hex digits"
