"""Showing strings that came from someone else (names, labels, reasons) on a terminal.

Tables are built from plain :class:`rich.text.Text` cells, so no markup in a value is ever
interpreted, and control characters (escape sequences, an OSC title) are shown as ``\\xNN``
instead of reaching the terminal.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

__all__ = ["plain", "print_json", "print_table"]


def plain(value: object) -> str:
    """``value`` as text, its control characters made visible."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """A rich table of plain-text cells on a terminal; elsewhere (a pipe, a file) one
    tab-separated line per row under a header line, nothing cut, for ``cut`` and ``awk``."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if not sys.stdout.isatty():
        lines: list[list[object]] = [list(headers), *rows]
        for line in lines:
            click.echo("\t".join(plain(value).replace("\t", " ") for value in line))
        return
    table = Table(*headers)
    for row in rows:
        table.add_row(*(Text(plain(value)) for value in row))
    Console().print(table)


def print_json(data: Any) -> None:
    """One JSON document on stdout (for ``--json``: full ids, nothing cut)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
