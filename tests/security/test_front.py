"""``tether.security`` is the one home of TLS contexts, certificates and tokens: low (it imports
no other tether layer), light (no ``cryptography`` until certificates are made), and re-exported
where users already found those names (``tether.exporter``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tether.exporter
import tether.security

PACKAGE = Path(tether.security.__file__).parent


def test_public_names_exist_and_the_exporter_reexports_its_own() -> None:
    for name in tether.security.__all__:
        assert hasattr(tether.security, name), name
    for name in (
        "LabCerts",
        "client_ssl_context",
        "generate_token",
        "hash_token",
        "init_lab_certs",
        "read_token_hashes",
        "server_ssl_context",
        "verify_token",
    ):
        assert getattr(tether.exporter, name) is getattr(tether.security, name), name


def test_it_imports_no_other_layer_of_tether() -> None:
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("tether"):
                    assert name in ("tether.errors",), f"{path.name} imports {name}"


def test_importing_it_does_not_load_cryptography() -> None:
    code = "import sys, tether.security; print('cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
