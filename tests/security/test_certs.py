"""Lab certificates and SSL contexts, checked with REAL TLS handshakes over loopback TCP.

Uses real sockets: each handshake runs the server side in a thread; every socket has a
timeout, so a failure cannot hang (nothing sleeps).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tether.errors import ConfigError
from tether.security import (
    LabCerts,
    client_ssl_context,
    init_lab_certs,
    server_ssl_context,
)

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabCerts:
    return init_lab_certs(tmp_path_factory.mktemp("lab") / "certs")


@pytest.fixture(scope="module")
def other_lab(tmp_path_factory: pytest.TempPathFactory) -> LabCerts:
    return init_lab_certs(tmp_path_factory.mktemp("other"))


@dataclass
class Outcome:
    reply: bytes | None = None
    client_error: BaseException | None = None
    server_error: BaseException | None = None
    server_saw_client_cert: dict[str, Any] | None = None
    version: str | None = None
    server_events: list[str] = field(default_factory=list)


def handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str = "localhost"
) -> Outcome:
    """Connect a TLS client to a TLS server on 127.0.0.1 and echo one message."""
    outcome = Outcome()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                outcome.server_saw_client_cert = tls.getpeercert() or None
                data = tls.recv(5)
                tls.sendall(data.upper())
        except (OSError, ssl.SSLError) as exc:
            outcome.server_error = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=TIMEOUT) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            outcome.version = tls.version()
            tls.sendall(b"hello")
            outcome.reply = tls.recv(5)
    except (OSError, ssl.SSLError) as exc:
        outcome.client_error = exc
    finally:
        thread.join(TIMEOUT)
        listener.close()
    assert not thread.is_alive()
    return outcome


def test_files_are_written_and_keys_are_private(lab: LabCerts) -> None:
    names = {p.name for p in lab.files()}
    assert names == {"ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key"}
    for path in lab.files():
        assert path.is_file() and path.stat().st_size > 0
    for key in (lab.ca_key, lab.server_key, lab.client_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_certificates_have_the_right_roles_and_names(lab: LabCerts) -> None:
    ca = x509.load_pem_x509_certificate(lab.ca.read_bytes())
    server = x509.load_pem_x509_certificate(lab.server_cert.read_bytes())
    client = x509.load_pem_x509_certificate(lab.client_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    server_usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(server_usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    client_usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(client_usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "tether-client"
    for cert in (server, client):
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert 825 <= lifetime.days <= 826


def test_contexts_require_tls_1_2_or_newer(lab: LabCerts) -> None:
    server = server_ssl_context(lab.server_cert, lab.server_key)
    client = client_ssl_context(lab.ca)
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_handshake_succeeds_by_name_and_by_ip_address(lab: LabCerts, hostname: str) -> None:
    outcome = handshake(
        server_ssl_context(lab.server_cert, lab.server_key), client_ssl_context(lab.ca), hostname
    )
    assert outcome.client_error is None and outcome.server_error is None
    assert outcome.reply == b"HELLO"
    assert outcome.version in ("TLSv1.2", "TLSv1.3")
    assert outcome.server_saw_client_cert is None


def test_mutual_tls_server_sees_the_client_certificate(lab: LabCerts) -> None:
    outcome = handshake(
        server_ssl_context(lab.server_cert, lab.server_key, lab.ca, require_client_cert=True),
        client_ssl_context(lab.ca, lab.client_cert, lab.client_key),
    )
    assert outcome.reply == b"HELLO", (outcome.client_error, outcome.server_error)
    assert outcome.server_saw_client_cert is not None
    subject = dict(rdn[0] for rdn in outcome.server_saw_client_cert["subject"])
    assert subject["commonName"] == "tether-client"


def test_client_rejects_a_server_signed_by_another_ca(lab: LabCerts, other_lab: LabCerts) -> None:
    outcome = handshake(
        server_ssl_context(other_lab.server_cert, other_lab.server_key),
        client_ssl_context(lab.ca),
    )
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)
    assert "certificate verify failed" in str(outcome.client_error)
    assert outcome.reply is None
    assert outcome.server_error is not None  # the server saw the handshake aborted


def test_client_rejects_a_name_the_certificate_does_not_cover(lab: LabCerts) -> None:
    outcome = handshake(
        server_ssl_context(lab.server_cert, lab.server_key),
        client_ssl_context(lab.ca),
        "bench.example.org",
    )
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)
    assert outcome.reply is None


def test_server_rejects_a_client_without_a_certificate(lab: LabCerts) -> None:
    outcome = handshake(
        server_ssl_context(lab.server_cert, lab.server_key, lab.ca, require_client_cert=True),
        client_ssl_context(lab.ca),
    )
    assert isinstance(outcome.server_error, ssl.SSLError)
    assert outcome.reply in (None, b"")  # TLS 1.3: the client learns it on its first read


def test_server_rejects_a_client_certificate_from_another_ca(
    lab: LabCerts, other_lab: LabCerts
) -> None:
    outcome = handshake(
        server_ssl_context(lab.server_cert, lab.server_key, lab.ca, require_client_cert=True),
        client_ssl_context(lab.ca, other_lab.client_cert, other_lab.client_key),
    )
    assert isinstance(outcome.server_error, ssl.SSLError)
    assert "certificate verify failed" in str(outcome.server_error)
    assert outcome.reply in (None, b"")


def test_init_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    first = init_lab_certs(tmp_path, server_names=["bench-1.lab", "10.0.0.5", "::1"], days=30)
    ca_before = first.ca.read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        init_lab_certs(tmp_path)
    assert first.ca.read_bytes() == ca_before
    second = init_lab_certs(tmp_path, overwrite=True)
    assert second.ca.read_bytes() != ca_before
    assert stat.S_IMODE(second.ca_key.stat().st_mode) == 0o600


def test_server_names_become_dns_and_ip_sans(tmp_path: Path) -> None:
    certs = init_lab_certs(tmp_path, server_names=["bench-1.lab", "10.0.0.5", "::1"])
    server = x509.load_pem_x509_certificate(certs.server_cert.read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["bench-1.lab"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("::1"),
    ]
    assert server.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "bench-1.lab"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"server_names": []}, "at least one host"), ({"days": 0}, "days must be positive")],
)
def test_init_rejects_bad_arguments(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        init_lab_certs(tmp_path, **kwargs)  # type: ignore[arg-type]


def test_missing_or_mismatched_files_are_config_errors(
    lab: LabCerts, other_lab: LabCerts, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"nope\.pem.*not found"):
        server_ssl_context(tmp_path / "nope.pem", lab.server_key)
    with pytest.raises(ConfigError, match="invalid server certificate and key"):
        server_ssl_context(lab.server_cert, other_lab.server_key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"garbage\.pem: invalid CA certificate"):
        client_ssl_context(garbage)
    with pytest.raises(ConfigError, match="require_client_cert needs a CA"):
        server_ssl_context(lab.server_cert, lab.server_key, require_client_cert=True)
    with pytest.raises(ConfigError, match="without a client certificate"):
        client_ssl_context(lab.ca, key=lab.client_key)
