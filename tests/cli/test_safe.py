"""Remote strings reach the terminal escaped: no control sequences, no rich markup."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from tether.cli._safe import plain, printable

HOSTILE = "\x1b]0;pwned\x07[bold red]boom[/bold red]\x9b2J\u202eevil\ud800"


def test_printable_escapes_every_control_character() -> None:
    text = printable(HOSTILE)
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "\u202e" not in text and "\ud800" not in text
    assert "\\x1b]0;pwned\\x07" in text and "\\u202e" in text and "\\ud800" in text
    assert printable("line 1\nline 2") == "line 1\nline 2"
    assert printable("a\nb", newlines=False) == "a\\nb"


def test_a_rich_table_prints_markup_literally_and_no_escape_reaches_the_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system="truecolor")
    table = Table("labels")
    table.add_row(plain(HOSTILE))
    console.print(table)
    rendered = out.getvalue()
    assert "[bold red]boom[/bold red]" in rendered
    assert "pwned\x07" not in rendered and "\x1b]0;" not in rendered
