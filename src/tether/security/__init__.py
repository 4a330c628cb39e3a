"""What every layer shares about security: TLS contexts, certificates and bearer tokens.

It sits low, beside :mod:`tether.errors`: the wire, the exporter, the client and the
controller all import it (through this front) and it imports nothing of theirs.

* TLS: :func:`server_ssl_context`, :func:`client_ssl_context` (TLS 1.2 or newer, file and
  ssl errors as :class:`~tether.errors.ConfigError` naming the file), and for relayed sessions
  :class:`SessionIdentity` with :func:`pinned_client_context` / :func:`certificate_sha256`
  (a peer known by its certificate's digest, not by a CA).
* Certificates: :func:`init_lab_certs` (a lab CA, a server and a client certificate:
  ``tether certs init``).
* Tokens: :func:`generate_token`, :func:`hash_token`, :func:`verify_token` (constant time),
  :func:`read_token_hashes`.
"""

from ._certs import (
    LabCerts,
    SessionIdentity,
    certificate_sha256,
    client_ssl_context,
    init_lab_certs,
    pinned_client_context,
    server_ssl_context,
)
from ._tokens import (
    TOKEN_PREFIX,
    describe_bad_hash,
    generate_token,
    hash_token,
    is_token_hash,
    read_token_hashes,
    verify_token,
)

__all__ = [
    "TOKEN_PREFIX",
    "LabCerts",
    "SessionIdentity",
    "certificate_sha256",
    "client_ssl_context",
    "describe_bad_hash",
    "generate_token",
    "hash_token",
    "init_lab_certs",
    "is_token_hash",
    "pinned_client_context",
    "read_token_hashes",
    "server_ssl_context",
    "verify_token",
]
