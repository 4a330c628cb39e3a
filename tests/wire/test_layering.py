"""``tether.wire`` stands below ``tether.driver``: it imports nothing from it.

Checked statically (every import statement of every wire module) and for real (a subprocess
imports ``tether.wire`` with ``tether.driver`` blocked, bypassing ``tether/__init__.py``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tether.wire

WIRE = Path(tether.wire.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
    return found


def test_no_wire_module_imports_the_driver_layer() -> None:
    modules = sorted(WIRE.glob("*.py"))
    assert len(modules) > 10  # the check sees the package
    for path in modules:
        upward = {name for name in _imports(path) if name.split(".")[:2] == ["tether", "driver"]}
        assert not upward, f"{path.name} imports {upward}"


def test_the_wire_imports_with_the_driver_layer_blocked() -> None:
    # The package's own __init__ pulls in every layer: bypass it.
    code = (
        "import sys, types\n"
        f"tether = types.ModuleType('tether'); tether.__path__ = [{str(WIRE.parent)!r}]\n"
        "sys.modules['tether'] = tether\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tether.driver' or name.startswith('tether.driver.'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tether.wire\n"
        "assert 'tether.driver' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
