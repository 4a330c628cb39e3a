"""No module in ``src/`` reaches into another package's private module.

``from tether.X._y import ...`` (or ``import tether.X._y``) is allowed only inside package
``tether.X``; everything else goes through the package's public ``__init__``. The scan is
static (ast), so it also sees imports inside functions; it lists every offender.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tether

SRC = Path(tether.__file__).parent.parent


def _imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        # `from tether.x import _y` imports a private module too.
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return []


def _private_owner(name: str) -> tuple[str, ...] | None:
    """For ``tether.a.b._c...``: the package owning the private module (``tether.a.b``)."""
    parts = tuple(name.split("."))
    if parts[0] != "tether":
        return None
    for index, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            return parts[:index]
    return None


def private_imports(source: str, module: str) -> list[str]:
    """``"line: module"`` for each import in ``source`` (the text of module ``module``, e.g.
    ``tether.client._lease``) of another package's private module."""
    package = tuple(module.split("."))[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        for name in _imported_modules(node):
            owner = _private_owner(name)
            if owner is not None and package[: len(owner)] != owner:
                found.append(f"{node.lineno}: {name}")
                break  # one report per import statement
    return found


def test_no_module_imports_another_packages_private_module() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        for hit in private_imports(path.read_text(), module):
            offenders.append(f"{path.relative_to(SRC)}:{hit}")
    assert not offenders, "private imports across packages:\n" + "\n".join(offenders)


def test_the_scan_finds_what_it_must() -> None:
    source = (
        "from tether.wire._relay import RelayHello\n"
        "import tether.exporter._agent\n"
        "from tether.client._lease import lease\n"  # its own package: allowed
        "from tether.client import _lease_api\n"  # its own package: allowed
        "from tether.wire import parse_address\n"  # the public front: allowed
        "import tether.security\n"
        "def later():\n"
        "    from tether.driver import _driver\n"  # inside a function, a private module
    )
    hits = private_imports(source, "tether.client._sample")
    assert hits == [
        "1: tether.wire._relay",
        "2: tether.exporter._agent",
        "8: tether.driver._driver",
    ]
    # Subpackages: tether.drivers.power may not use tether.drivers.shell's private modules.
    assert private_imports(
        "from tether.drivers.shell._process import x\n", "tether.drivers.power._c"
    )
    assert not private_imports(
        "from tether.drivers.shell._process import x\n", "tether.drivers.shell.a"
    )
