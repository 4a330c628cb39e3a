"""A lab's TLS material: a private CA, a server and a client certificate, and SSL contexts.

``init_lab_certs`` writes everything a small lab needs (what ``tether certs init`` runs): the
CA signs one server certificate (names and IP addresses as subject alternative names, so
``tls://127.0.0.1:7443`` verifies as well as ``tls://localhost:7443``) and one client
certificate for mutual TLS. Keys are P-256 EC keys (fast handshakes), written 0600.

``SessionIdentity`` is the per-process certificate of relayed sessions, checked by its digest
(``pinned_client_context``, ``certificate_sha256``) instead of a CA.

The context helpers pin TLS 1.2 as the minimum and turn file and ssl errors into
:class:`~tether.errors.ConfigError` naming the file, in one place (``_map_ssl_errors``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tether.errors import ConfigError

__all__ = [
    "LabCerts",
    "SessionIdentity",
    "certificate_sha256",
    "client_ssl_context",
    "init_lab_certs",
    "pinned_client_context",
    "server_ssl_context",
]


@dataclass(frozen=True, slots=True)
class LabCerts:
    """Paths of the files :func:`init_lab_certs` wrote."""

    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def files(self) -> tuple[Path, ...]:
        """Every file, certificates and keys."""
        return (
            self.ca,
            self.ca_key,
            self.server_cert,
            self.server_key,
            self.client_cert,
            self.client_key,
        )


def init_lab_certs(
    directory: str | Path,
    *,
    server_names: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 825,
    client_name: str = "tether-client",
    overwrite: bool = False,
) -> LabCerts:
    """Create a lab CA and a server and client certificate signed by it.

    Writes ``ca.pem``, ``ca.key``, ``server.pem``, ``server.key``, ``client.pem`` and
    ``client.key`` into ``directory`` (created if missing). Keys are written with mode 0600.

    Args:
        directory: where to write the files.
        server_names: DNS names and IP addresses the server certificate is valid for; the
            first is also its common name.
        days: validity of every certificate, from now (minus five minutes for clock skew).
        client_name: the client certificate's common name.
        overwrite: replace existing files instead of refusing.

    Returns:
        The paths written.

    Raises:
        ConfigError: a file exists and ``overwrite`` is false, ``server_names`` is empty, or
            ``days`` is not positive.
    """
    if not server_names:
        raise ConfigError("init_lab_certs: server_names must name at least one host")
    if days <= 0:
        raise ConfigError(f"init_lab_certs: days must be positive (got {days})")
    directory = Path(directory)
    paths = LabCerts(
        ca=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    if not overwrite:
        existing = [str(p) for p in paths.files() if p.exists()]
        if existing:
            raise ConfigError(
                f"{', '.join(existing)} already exist(s); refusing to overwrite a lab's "
                "certificates (pass overwrite=True to replace them)"
            )
    directory.mkdir(parents=True, exist_ok=True)

    from ._certgen import write_lab  # lazily: cryptography is slow to import

    write_lab(paths, server_names=server_names, days=days, client_name=client_name)
    return paths


def server_ssl_context(
    cert: str | Path,
    key: str | Path,
    ca: str | Path | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """An SSL context for an exporter's TLS listener.

    Args:
        cert: the server certificate (PEM; may include the chain).
        key: the server's private key (PEM).
        ca: CA certificates to verify client certificates with. Given alone, a client
            certificate is checked when presented but not required.
        require_client_cert: reject clients without a certificate signed by ``ca``.

    Returns:
        A server-side context, TLS 1.2 or newer.

    Raises:
        ConfigError: a file is missing or unreadable, the key does not match the certificate,
            or ``require_client_cert`` is set without ``ca``.
    """
    if require_client_cert and ca is None:
        raise ConfigError("require_client_cert needs a CA to verify client certificates with")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with _map_ssl_errors(f"{cert} / {key}", "server certificate and key"):
        context.load_cert_chain(os.fspath(cert), os.fspath(key))
    if ca is not None:
        with _map_ssl_errors(ca, "CA certificate"):
            context.load_verify_locations(cafile=os.fspath(ca))
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def client_ssl_context(
    ca: str | Path | None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
) -> ssl.SSLContext:
    """An SSL context for connecting to an exporter (hostname checked, certificate required).

    Args:
        ca: CA certificates that signed the server's certificate; ``None`` uses the system's.
        cert: a client certificate, for exporters that require one.
        key: the client certificate's key (``None``: the key is in ``cert``).

    Returns:
        A client-side context, TLS 1.2 or newer.

    Raises:
        ConfigError: a file is missing or unreadable, or ``key`` is given without ``cert``.
    """
    if key is not None and cert is None:
        raise ConfigError("a client key was given without a client certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        with _map_ssl_errors(ca, "CA certificate"):
            context.load_verify_locations(cafile=os.fspath(ca))
    if cert is not None:
        with _map_ssl_errors(cert if key is None else f"{cert} / {key}", "client certificate"):
            context.load_cert_chain(os.fspath(cert), None if key is None else os.fspath(key))
    return context


@dataclass(frozen=True, slots=True)
class SessionIdentity:
    """The certificate an exporter presents in the end-to-end TLS of relayed sessions.

    Made fresh per exporter process (:meth:`generate`): a self-signed P-256 certificate whose
    SHA-256 (``cert_sha256``) the exporter tells the router when it dials; the router passes
    it to the lease holder, who checks it. The key lives in memory (and, while it is loaded, in
    a private temporary file: ``ssl`` loads keys from files only).
    """

    server_context: ssl.SSLContext
    cert_sha256: str

    @classmethod
    def generate(cls, name: str = "tether exporter") -> SessionIdentity:
        """A new key and certificate, and a TLS 1.3 server context using them."""
        from ._certgen import self_signed_pem  # lazily: cryptography is slow to import

        cert_pem, key_pem = self_signed_pem(name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        # A private (0700) directory, removed as soon as the context holds the key.
        with tempfile.TemporaryDirectory(prefix="tether-session-") as directory:
            cert_path, key_path = Path(directory) / "cert.pem", Path(directory) / "key.pem"
            cert_path.write_bytes(cert_pem)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(key_pem)
            context.load_cert_chain(cert_path, key_path)
        der = ssl.PEM_cert_to_DER_cert(cert_pem.decode())
        return cls(context, certificate_sha256(der))


def pinned_client_context() -> ssl.SSLContext:
    """A client context for a peer known by its certificate's SHA-256, which the caller
    compares after the handshake (no CA, no host name): TLS 1.3 only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def certificate_sha256(der: bytes | None) -> str:
    """SHA-256 of a DER certificate, lower-case hex (``""`` for ``None``)."""
    return hashlib.sha256(der).hexdigest() if der else ""


@contextlib.contextmanager
def _map_ssl_errors(where: str | Path, what: str) -> Iterator[None]:
    """Translate the errors of loading TLS files into ConfigError naming the file(s)."""
    try:
        yield
    except FileNotFoundError as exc:
        raise ConfigError(f"{where}: {what} not found ({exc.filename})") from exc
    except ssl.SSLError as exc:
        raise ConfigError(f"{where}: invalid {what} ({exc.reason or exc})") from exc
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {what} ({exc.strerror or exc})") from exc
