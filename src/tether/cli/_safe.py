"""Remote strings on a terminal: control characters escaped, rich markup never interpreted.

Labels, lease reasons, exporter names, error messages and driver descriptions come from the
controller or an exporter, which another party may control. Printed raw, an escape sequence
could retitle the terminal or hide a line (``\\x1b]0;...\\x07``), and ``[bold red]`` would be
read as rich markup. :func:`printable` escapes every control character (C0, DEL, C1, lone
surrogates and bidirectional overrides) as ``\\xNN`` / ``\\uNNNN``; :func:`plain` also makes a
:class:`rich.text.Text`, which rich prints literally.
"""

from __future__ import annotations

import re

from rich.text import Text

__all__ = ["plain", "printable"]

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, *, newlines: bool = True) -> str:
    """``value`` as text with its control characters escaped (tabs and, with ``newlines``,
    line breaks kept)."""
    text = _UNSAFE.sub(_escape, str(value))
    if not newlines:
        text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text


def plain(value: object) -> Text:
    """``value`` as a :class:`rich.text.Text` cell: escaped, on one line, no markup."""
    return Text(printable("" if value is None else value, newlines=False))
