"""Docs that run: every fenced ```python block in README.md and docs/*.md is executed.

The rules (docs/testing.md, "Code blocks in the docs", says the same for writers):

* A block runs unless the line before its fence (blank lines aside) is
  ``<!-- not run: REASON -->``; skipped blocks are reported as skips with their reason.
* The blocks of one file run top to bottom in one namespace, like a notebook: a later block
  may use what an earlier one defined (the tutorial's driver uses its interface). Each file
  starts fresh; files never share names.
* That namespace is a real module, registered while the file runs, so classes defined there
  can be found by their dotted path (pydantic, dataclasses and client loading need that). Its
  name is ``docs_<file stem>`` unless the file says ``<!-- module: NAME -->`` (the drivers
  tutorial names its client ``example_relay.RelayClient``, so it runs as ``example_relay``).
* After a block has run, every ``test_*`` function it defined that takes no arguments is
  called: a doc's example test is checked, not just defined.
* A failure names the file and the block's first line (``docs/testing.md:120``), and the
  traceback points into the Markdown file itself.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(.+?)\s*-->\s*$")
_MODULE = re.compile(r"^\s*<!--\s*module:\s*([\w.]+)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced python block: where it starts (the first code line) and why it is skipped."""

    path: Path
    line: int
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The python blocks of one Markdown file, in order."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, language = match.groups()
        end = index + 1
        while end < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[end]):
            end += 1
        if language == "python":
            previous = index - 1
            while previous >= 0 and not lines[previous].strip():
                previous -= 1
            note = _NOT_RUN.match(lines[previous]) if previous >= 0 else None
            body = [line[len(indent) :] for line in lines[index + 1 : end]]
            found.append(
                Block(path, index + 2, "\n".join(body) + "\n", note.group(1) if note else None)
            )
        index = end + 1
    return found


def module_name(path: Path) -> str:
    for line in path.read_text().splitlines():
        match = _MODULE.match(line)
        if match:
            return match.group(1)
    return "docs_" + re.sub(r"\W", "_", path.stem)


ALL = [block for path in DOCS for block in blocks_of(path)]


class Namespaces:
    """One module per file, made when its first block runs; remembers each file's first
    failed block, so a later failure can say it may follow from it."""

    def __init__(self) -> None:
        self.modules: dict[Path, types.ModuleType] = {}
        self.failed: dict[Path, str] = {}

    def module(self, path: Path) -> types.ModuleType:
        module = self.modules.get(path)
        if module is None:
            module = types.ModuleType(module_name(path))
            module.__file__ = str(path)
            self.modules[path] = module
        return module

    def close(self) -> None:
        for module in self.modules.values():
            if sys.modules.get(module.__name__) is module:
                del sys.modules[module.__name__]


@pytest.fixture(scope="module")
def namespaces() -> Iterator[Namespaces]:
    spaces = Namespaces()
    yield spaces
    spaces.close()


def run_block(block: Block, module: types.ModuleType) -> None:
    """Run one block in ``module`` (registered meanwhile), then its argument-less tests."""
    # Leading newlines make line numbers in tracebacks those of the Markdown file.
    code = compile("\n" * (block.line - 1) + block.code, str(block.path), "exec")
    before = set(vars(module))
    sys.modules[module.__name__] = module
    exec(code, vars(module))
    for name, value in list(vars(module).items()):
        new_test = name.startswith("test_") and name not in before and inspect.isfunction(value)
        if new_test and not inspect.signature(value).parameters:
            value()


@pytest.mark.parametrize("block", ALL, ids=[block.where for block in ALL])
def test_doc_block(block: Block, namespaces: Namespaces) -> None:
    if block.skip is not None:
        pytest.skip(f"{block.where}: not run: {block.skip}")
    earlier = namespaces.failed.get(block.path)
    try:
        run_block(block, namespaces.module(block.path))
    except BaseException as exc:
        if isinstance(exc, pytest.skip.Exception | KeyboardInterrupt):
            raise
        namespaces.failed.setdefault(block.path, block.where)
        note = f" (it may build on {earlier}, which failed first)" if earlier else ""
        raise AssertionError(f"{block.where}: the block failed: {exc!r}{note}") from exc


def test_the_runner_finds_blocks_and_skip_notes(tmp_path: Path) -> None:
    doc = tmp_path / "sample.md"
    doc.write_text(
        "# Sample\n\n```python\nx = 1\n```\n\n<!-- not run: needs a board -->\n\n"
        "```python\nraise SystemExit\n```\n\n- item\n\n  ```python\n  y = x + 1\n  ```\n"
        "\n```yaml\nnot: python\n```\n"
    )
    found = blocks_of(doc)
    assert [(b.line, b.code, b.skip) for b in found] == [
        (4, "x = 1\n", None),
        (10, "raise SystemExit\n", "needs a board"),
        (16, "y = x + 1\n", None),
    ]
    module = types.ModuleType("docs_sample")
    try:
        run_block(found[0], module)
        run_block(found[2], module)
    finally:
        sys.modules.pop("docs_sample", None)
    assert module.y == 2


def test_a_failing_block_names_its_file_and_line(tmp_path: Path) -> None:
    doc = tmp_path / "broken.md"
    doc.write_text("Intro\n\n```python\nok = True\nmissing_name\n```\n")
    (block,) = blocks_of(doc)
    with pytest.raises(NameError) as info:
        run_block(block, types.ModuleType("docs_broken"))
    sys.modules.pop("docs_broken", None)
    frame = info.traceback[-1]
    assert (Path(frame.path), frame.lineno + 1) == (doc, 5)  # lineno is 0-based


def test_a_doc_test_function_is_called(tmp_path: Path) -> None:
    doc = tmp_path / "tests.md"
    doc.write_text("```python\ndef test_fails():\n    assert 1 == 2\n```\n")
    (block,) = blocks_of(doc)
    with pytest.raises(AssertionError):
        run_block(block, types.ModuleType("docs_tests"))
    sys.modules.pop("docs_tests", None)
