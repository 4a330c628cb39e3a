"""The exporter (layer 4) imports no layer above it: not the client, the controller, the drivers
or the command line. What it shares with the client (the controller's HTTP error map) lives in
the low module ``tether.http_errors``, beside ``tether.errors``."""

from __future__ import annotations

import ast
from pathlib import Path

import tether.client
import tether.exporter
import tether.http_errors

PACKAGE = Path(tether.exporter.__file__).parent
ABOVE = {"client", "controller", "drivers", "cli"}


def _tether_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] == "tether"}


def test_no_exporter_module_imports_a_higher_layer() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 5  # the check sees the package
    for path in modules:
        # ``import tether`` alone would load every layer through the package's __init__.
        upward = {
            name
            for name in _tether_imports(path)
            if name == "tether" or name.split(".")[1] in ABOVE
        }
        assert not upward, f"{path.name} imports {upward}"


def test_the_http_error_map_is_one_object_for_both_layers() -> None:
    for name in tether.http_errors.__all__:
        assert getattr(tether.client, name) is getattr(tether.http_errors, name), name
    http_errors = Path(tether.http_errors.__file__)
    assert _tether_imports(http_errors) == {"tether.errors"}
