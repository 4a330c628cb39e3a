"""docs/testing.md stays true: its tutorial runs, and its reference covers every public name.

The tutorial's code blocks start with ``# thermostat.py`` or ``# test_thermostat.py``; they are
written to those two files and run by pytest in a subprocess, so the kit's pytest plugin is
loaded through its ``pytest11`` entry point, as in a user's project.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import tether.testing
from lean_pytest import UNUSED_PLUGINS

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def tutorial_files() -> dict[str, str]:
    files: dict[str, list[str]] = {}
    for block in BLOCK.findall(DOC.read_text()):
        first = block.splitlines()[0]
        if first.startswith("# ") and first.endswith(".py"):
            files.setdefault(first[2:], []).append(block)
    return {name: "\n\n".join(blocks) for name, blocks in files.items()}


def test_the_tutorial_runs(tmp_path: Path) -> None:
    files = tutorial_files()
    assert sorted(files) == ["test_thermostat.py", "thermostat.py"]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "60"]
    done = subprocess.run(
        [*pytest, *UNUSED_PLUGINS],
        cwd=tmp_path,
        env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout, done.stdout


def test_the_reference_covers_every_public_name() -> None:
    reference = DOC.read_text().split("## Reference", 1)[1]
    headings = " ".join(line for line in reference.splitlines() if line.startswith("### "))
    missing = [name for name in tether.testing.__all__ if f"`{name}`" not in headings]
    assert missing == []
    for fixture in ("driver_runtime", "background_dispatcher", "driver_under_test"):
        assert f"`{fixture}`" in reference
