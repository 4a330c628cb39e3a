"""The codec and state machine are sans-IO: no asyncio, socket, ssl, threading or selectors.

Checked twice: statically (every import statement of the four modules, with ``ast``) and for
real (a subprocess imports them with those modules blocked in ``sys.modules``, bypassing the
package ``__init__`` files, which legitimately pull in the I/O layers).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import tether.wire

WIRE = Path(tether.wire.__file__).parent
SANS_IO = ["_events", "_frames", "_state", "_connection"]
FORBIDDEN = {"asyncio", "socket", "ssl", "threading", "selectors"}
#: What the sans-IO modules may import: stdlib pure-data modules, msgspec, the error classes and
#: each other.
ALLOWED = {
    "__future__",
    "collections",
    "dataclasses",
    "enum",
    "struct",
    "typing",
    "msgspec",
    "tether.errors",
}


def imports_of(module: str) -> set[str]:
    tree = ast.parse((WIRE / f"{module}.py").read_text(), filename=f"{module}.py")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.add("." + (node.module or ""))
            else:
                assert node.module is not None
                found.add(node.module)
    return found


@pytest.mark.parametrize("module", SANS_IO)
def test_sans_io_modules_import_only_pure_modules(module: str) -> None:
    imported = imports_of(module)
    assert not {name.split(".")[0] for name in imported} & FORBIDDEN
    relative = {name for name in imported if name.startswith(".")}
    assert relative <= {f".{m}" for m in SANS_IO}, "a sans-IO module imports an I/O module"
    assert imported - relative <= ALLOWED


def test_the_static_check_sees_io_imports() -> None:
    """The check above is not vacuous: it flags the I/O modules."""
    assert "asyncio" in imports_of("_server")
    assert {"socket", "ssl", "threading"} <= imports_of("_client")


_BLOCKED_IMPORT = """
import pathlib, sys, types
blocked = {blocked!r}
for name in blocked:
    sys.modules[name] = None  # "import name" now raises ImportError
for package, path in [("tether", {tether!r}), ("tether.wire", {wire!r})]:
    stub = types.ModuleType(package)
    stub.__path__ = [path]  # a bare package: its __init__ (and the I/O layers) is skipped
    sys.modules[package] = stub
import importlib
for module in {modules!r}:
    importlib.import_module(module)
for name in blocked:
    del sys.modules[name]
"""


def _import_with_io_blocked(modules: list[str]) -> subprocess.CompletedProcess[str]:
    blocked = sorted(FORBIDDEN | {"_asyncio", "_socket", "_ssl", "select"})
    script = _BLOCKED_IMPORT.format(
        blocked=blocked, tether=str(WIRE.parent), wire=str(WIRE), modules=modules
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def test_sans_io_modules_import_with_io_modules_blocked() -> None:
    result = _import_with_io_blocked([f"tether.wire.{m}" for m in SANS_IO])
    assert result.returncode == 0, result.stderr


def test_the_blocked_import_check_catches_io_modules() -> None:
    result = _import_with_io_blocked(["tether.wire._transport"])
    assert result.returncode != 0
    assert "ImportError" in result.stderr or "ModuleNotFoundError" in result.stderr
