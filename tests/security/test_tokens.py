"""Bearer tokens: generation, hashing, constant-time verification, token files."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.security import (
    generate_token,
    hash_token,
    is_token_hash,
    read_token_hashes,
    verify_token,
)


def test_generated_tokens_are_prefixed_url_safe_and_carry_32_random_bytes() -> None:
    tokens = {generate_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert token.startswith("tth_")
        body = token.removeprefix("tth_")
        assert re.fullmatch(r"[A-Za-z0-9_-]+", body)
        assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) >= 32


def test_hash_is_sha256_hex_with_prefix() -> None:
    token = "tth_example"
    expected = "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    assert hash_token(token) == expected
    assert hash_token(token) == hash_token(token)
    assert is_token_hash(expected)
    assert token not in hash_token(token)


@pytest.mark.parametrize(
    "value",
    ["", "sha256:", "sha256:" + "a" * 63, "sha256:" + "A" * 64, "md5:" + "a" * 64, "tth_x"],
)
def test_is_token_hash_rejects_other_strings(value: str) -> None:
    assert not is_token_hash(value)


def test_verify_accepts_a_listed_token_only() -> None:
    alice, bob = generate_token(), generate_token()
    hashes = [hash_token(alice), hash_token("tth_other")]
    assert verify_token(alice, hashes)
    assert not verify_token(bob, hashes)
    assert not verify_token(None, hashes)
    assert not verify_token("", [hash_token("")])
    assert not verify_token(alice, [])
    assert not verify_token(alice, ["sha256:ünicode garbage"])  # never raises


def test_verify_compares_every_hash_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    token = generate_token()
    hashes = [hash_token(token), hash_token("tth_b"), hash_token("tth_c")]
    assert verify_token(token, hashes)
    assert len(calls) == 3  # no early exit on the first match


def test_read_token_hashes_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    a, b = hash_token("tth_a"), hash_token("tth_b")
    path = tmp_path / "tokens"
    path.write_text(f"# lab users\n\n{a}   # alice\n  {b}\n")
    assert read_token_hashes(path) == [a, b]


def test_read_token_hashes_names_file_and_line_of_a_bad_entry(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{hash_token('tth_a')}\nnot-a-hash\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:2: expected a token hash"):
        read_token_hashes(path)


def test_a_token_in_clear_in_a_token_file_is_called_out(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    token = generate_token()
    path.write_text(token + "\n")
    with pytest.raises(ConfigError, match=r":1: this is a token in clear") as info:
        read_token_hashes(path)
    assert token not in str(info.value)  # the secret is not echoed into logs


def test_missing_token_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read token file"):
        read_token_hashes(tmp_path / "nope")
