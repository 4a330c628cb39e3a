"""The boot packages' public names, and their sans-IO cores import no I/O."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import tether.drivers.console as console
import tether.drivers.strategy as strategy
import tether.drivers.uboot as uboot

NAMES = {
    console: [
        "CommandMachine",
        "CommandResult",
        "ConsoleShell",
        "ConsoleShellClient",
        "ConsoleShellInterface",
        "ConsoleLink",
        "ConsoleTail",
    ],
    uboot: ["UBoot", "UBootClient", "UBootInterface"],
    strategy: [
        "BootGraph",
        "BootStepFailed",
        "BootStrategy",
        "BootStrategyClient",
        "BootStrategyInterface",
    ],
}


@pytest.mark.parametrize("module", list(NAMES), ids=lambda m: m.__name__)
def test_public_names(module: object) -> None:
    exported = module.__all__  # type: ignore[attr-defined]
    assert set(NAMES[module]) <= set(exported)  # type: ignore[index]
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    for name in exported:
        assert hasattr(module, name)


@pytest.mark.parametrize(
    "name", ["tether.drivers.console._machine", "tether.drivers.strategy._graph"]
)
def test_the_sans_io_cores_import_no_io(name: str) -> None:
    path = Path(importlib.import_module(name).__file__ or "")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "ssl", "selectors", "trio", "anyio"}
