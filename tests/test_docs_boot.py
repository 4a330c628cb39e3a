"""docs/boot.md stays true: its YAML configs validate (and are the example files), its
shell snippets run. (Its Python blocks are run by tests/test_docs.py, with every doc's.)

Blocks preceded by ``<!-- not run: REASON -->`` are skipped; a Python block whose first line
is ``# NAME.py`` is written to that file for the shell blocks. They run in a temporary
directory with ``examples`` linked in, as a user would from a checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lean_pytest import UNUSED_PLUGINS
from tether.exporter import parse_config

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "boot.md"
_BLOCK = re.compile(r"(<!-- not run:[^>]*-->\n)?```(\w+)\n(.*?)```", re.S)


def blocks(language: str) -> list[str]:
    return [
        body
        for skip, lang, body in _BLOCK.findall(DOC.read_text())
        if lang == language and not skip
    ]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    for body in blocks("python"):
        first = body.split("\n", 1)[0]
        if re.fullmatch(r"# [\w-]+\.py", first):
            (tmp_path / first[2:]).write_text(body)
    return tmp_path


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("TETHER_HOST", None)
    env["PYTEST_ADDOPTS"] = " ".join(UNUSED_PLUGINS)
    return env


def test_the_yaml_configs_validate() -> None:
    configs = blocks("yaml")
    assert len(configs) == 3
    for text in configs:
        parse_config(text, "boot.md")


@pytest.mark.parametrize(("index", "name"), [(1, "lab-uboot.yaml"), (2, "lab-uboot-qfw.yaml")])
def test_the_qemu_configs_are_the_example_files(index: int, name: str) -> None:
    example = parse_config((ROOT / "examples" / name).read_text(), name)
    shown = parse_config(blocks("yaml")[index], "boot.md")
    assert shown.export.keys() == example.export.keys()
    for node in ("boot", "board", "shell"):
        assert shown.export[node] == example.export[node].model_copy(
            update={"description": shown.export[node].description}
        )


@pytest.mark.parametrize("index", range(len(blocks("sh"))))
def test_shell_blocks(index: int, workdir: Path) -> None:
    body = blocks("sh")[index]
    result = subprocess.run(
        ["bash", "-ec", body],
        cwd=workdir,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
