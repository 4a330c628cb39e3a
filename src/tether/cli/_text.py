"""Listings for people and for scripts: a table on a terminal, tab-separated lines elsewhere,
JSON with ``--json``. Cells are remote strings, escaped by :mod:`._safe`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ._safe import plain, printable

__all__ = ["print_json", "print_table"]


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """A rich table of plain-text cells on a terminal; elsewhere (a pipe, a file) one
    tab-separated line per row under a header line, nothing cut, for ``cut`` and ``awk``."""
    from rich.console import Console
    from rich.table import Table

    if not sys.stdout.isatty():
        lines: list[list[object]] = [list(headers), *rows]
        for line in lines:
            cells = ("" if value is None else printable(value, newlines=False) for value in line)
            click.echo("\t".join(cell.replace("\\t", " ") for cell in cells))
        return
    table = Table(*headers)
    for row in rows:
        table.add_row(*(plain(value) for value in row))
    Console().print(table)


def print_json(data: Any) -> None:
    """One JSON document on stdout (for ``--json``: full ids, nothing cut)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
