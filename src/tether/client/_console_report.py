"""Console output in pytest reports: what each console printed during a failing test, and
the session's whole console log saved as files.

A console is any node whose driver exports ``log`` and ``log_size`` (the serial and QEMU
consoles: see docs/drivers.md). Before a test's body runs, the plugin notes each console's
``log_size``; when the test fails, it fetches the bytes logged since and adds them to the
report (the terminal's failure section and the JUnit ``system-out`` of that test case).
After every test the new bytes are appended to ``DIR/<node>.log``, so the files hold the
whole session whether or not a test failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

__all__ = ["ConsoleRecorder", "consoles"]

#: At most this much of a failing test's console output goes into its report (the end).
REPORT_LIMIT = 256 << 10


def consoles(tree: Any) -> Iterator[tuple[str, Any]]:
    """``(node path, client)`` of every console in a client tree."""
    stack = [("", tree)]
    while stack:
        path, client = stack.pop()
        methods = getattr(client, "methods", {}) or {}
        if "log" in methods and "log_size" in methods:
            yield path or client.name, client
        for name, child in sorted((getattr(client, "children", {}) or {}).items(), reverse=True):
            stack.append((f"{path}.{name}" if path else name, child))


class ConsoleRecorder:
    """Marks, fetches and saves console logs for one pytest session."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self._saved: dict[str, int] = {}

    def mark(self, tree: Any) -> dict[str, int]:
        """Each console's current log size."""
        marks = {}
        for path, client in consoles(tree):
            try:
                marks[path] = int(client.call("log_size"))
            except Exception:  # a console that is gone must not fail the test
                continue
        return marks

    def since(self, tree: Any, marks: dict[str, int]) -> dict[str, str]:
        """What each marked console printed since its mark (the last ``REPORT_LIMIT`` bytes)."""
        out = {}
        for path, client in consoles(tree):
            if path not in marks:
                continue
            try:
                size = int(client.call("log_size"))
                start = max(marks[path], size - REPORT_LIMIT)
                data: bytes = client.call("log", start)
            except Exception:
                continue
            out[path] = data.decode("utf-8", "replace")
        return out

    def save(self, tree: Any) -> None:
        """Append what each console printed since the last save to ``DIR/<node>.log``."""
        if not self.directory:
            return
        for path, client in consoles(tree):
            try:
                data: bytes = client.call("log", self._saved.get(path, 0))
                size = int(client.call("log_size"))
            except Exception:
                continue
            if data:
                os.makedirs(self.directory, exist_ok=True)
                with open(os.path.join(self.directory, f"{path}.log"), "ab") as file:
                    file.write(data)
            self._saved[path] = size
