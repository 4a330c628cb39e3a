"""The sans-IO core of a console shell: bytes in, events out. No asyncio, no sockets.

Theory of operation. A command goes to the console wrapped in two markers made of a fresh
token, each printed by ``echo`` with its quotes split (``echo '@S''k3x9'``): the console's
echo of the command line shows ``'@S''k3x9'``, only the command's output shows ``@Sk3x9``.
So the echo, however the line editor redraws it, never matches; the start marker opens the
output, the end marker (``@Ek3x9 <status>``, printed with ``$?``) closes it with the exit
status, and the prompt after it says the shell is ready again.

The bytes are taken a line at a time (split at ``\\n``): each complete line loses its ANSI
escape sequences and carriage returns, and a kernel log line the console printed into the
middle of it (``[   12.345678] ...``) is cut out, the text before it joined with the line
after it. The unfinished last line is kept and searched for the prompt. Markers of an
earlier command (one that timed out) carry another token and are ignored, which is how
:meth:`CommandMachine.resync` gets the shell back.

:class:`ConsoleTail` is the same cleaning for prompt searches outside a command (login
prompts, U-Boot's autoboot line): the last few KiB of cleaned text.

The states and their transitions are one table, :data:`TRANSITIONS`.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections import deque
from dataclasses import dataclass

from tether.errors import TetherError

__all__ = [
    "TRANSITIONS",
    "CommandFinished",
    "CommandMachine",
    "CommandStarted",
    "ConsoleTail",
    "Event",
    "MachineState",
    "OutputTooLong",
    "PromptFound",
    "ShellProtocolError",
    "clean_line",
    "strip_ansi",
]

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erase
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window titles
    r"|\x1b[@-Z\\-_]"  # two-byte escapes
)
_KERNEL = re.compile(r"\[\s*\d+\.\d+\] ")
_MAX_OUTPUT = 16 << 20


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    return _ANSI.sub("", text)


def clean_line(raw: bytes) -> str:
    """One console line as text: decoded (bad bytes replaced), ANSI and ``\\r`` removed."""
    return strip_ansi(raw.decode("utf-8", "replace")).replace("\r", "").replace("\x00", "")


class ShellProtocolError(TetherError, RuntimeError):
    """A call in a state that does not allow it (names the state and what was asked)."""


class OutputTooLong(ShellProtocolError):
    """The command printed more than the machine keeps (its ``max_output``)."""


class MachineState(enum.Enum):
    """Where the machine is in one command's life."""

    IDLE = "idle"  #: no command in flight (at a prompt, or nothing known)
    SENT = "sent"  #: the command line went out; waiting for the start marker
    OUTPUT = "output"  #: collecting the command's output until the end marker
    ENDED = "ended"  #: the end marker came (with the status); waiting for the prompt


@dataclass(frozen=True, slots=True)
class CommandStarted:
    """The start marker came: what follows is the command's output."""


@dataclass(frozen=True, slots=True)
class CommandFinished:
    """The end marker came: the command's output (lines joined with ``\\n``) and status."""

    output: str
    status: int

    def __post_init__(self) -> None:
        if not isinstance(self.status, int):
            raise TypeError(f"status must be an int (got {self.status!r})")


@dataclass(frozen=True, slots=True)
class PromptFound:
    """The prompt came after the end marker: the shell takes the next command."""


Event = CommandStarted | CommandFinished | PromptFound

#: (state, event type) -> next state. Anything else is a protocol error.
TRANSITIONS: dict[tuple[MachineState, type[Event]], MachineState] = {
    (MachineState.SENT, CommandStarted): MachineState.OUTPUT,
    (MachineState.OUTPUT, CommandFinished): MachineState.ENDED,
    (MachineState.ENDED, PromptFound): MachineState.IDLE,
}


class CommandMachine:
    """Runs commands on a console shell, as data: :meth:`command` gives the bytes to send,
    :meth:`receive_data` takes what the console printed, :meth:`next_event` says what
    happened.

    Args:
        prompt: a regex the prompt matches at the end of the unfinished last line.
        newline: what ends a command line (``\\n``; some consoles want ``\\r``).
        max_output: bytes of output kept for one command (more raises :class:`OutputTooLong`).
        drop_kernel_lines: cut out lines that look like the kernel's (``[   12.345678] ...``).
            Timestamped lines a command prints itself (``dmesg``) go too: turn it off for
            those, or run ``dmesg -t``.
    """

    def __init__(
        self,
        prompt: str,
        *,
        newline: str = "\n",
        max_output: int = _MAX_OUTPUT,
        drop_kernel_lines: bool = True,
    ) -> None:
        self.prompt = re.compile(f"(?:{prompt})$")
        self.newline = newline
        self.max_output = max_output
        self.drop_kernel_lines = drop_kernel_lines
        self.state = MachineState.IDLE
        self._token = ""
        self._start = ""
        self._end: re.Pattern[str] | None = None
        self._buffer = bytearray()
        self._carry = ""  # text before a kernel line, joined with the line after it
        self._lines: list[str] = []
        self._size = 0
        self._events: deque[Event] = deque()

    # -- input ------------------------------------------------------------------------------

    def command(self, command: str) -> bytes:
        """The bytes that run ``command`` with markers; the machine then expects its output.

        Raises:
            ShellProtocolError: a command is in flight (state not IDLE), or ``command``
                contains a line break.
        """
        if self.state is not MachineState.IDLE:
            raise ShellProtocolError(
                f"cannot send a command in state {self.state.value}: one is in flight"
            )
        if "\n" in command or "\r" in command:
            raise ShellProtocolError("a command must be one line (no \\n or \\r in it)")
        self._token = secrets.token_hex(4)
        self._start = f"@S{self._token}"
        self._end = re.compile(rf"^(.*)@E{self._token} (\d+)$")
        self._lines = []
        self._size = 0
        self._events.clear()
        self.state = MachineState.SENT
        body = command.strip() or "true"
        line = f"echo '@S''{self._token}'; {body}; echo '@E''{self._token}' $?"
        return (line + self.newline).encode()

    def resync(self) -> bytes:
        """After a command that never ended: Ctrl-C, then a no-op (``true``) to wait for.

        Whatever the old command still prints carries its own token and is ignored.
        """
        self.state = MachineState.IDLE
        return b"\x03" + self.command("true")

    def receive_data(self, data: bytes) -> None:
        """Feed what the console printed (any split: a byte at a time works)."""
        self._buffer += data
        while self.state is not MachineState.IDLE:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._line(clean_line(raw))
        if self.state is MachineState.ENDED:
            tail = clean_line(bytes(self._buffer[-4096:]))
            if self.prompt.search(tail):
                self._buffer.clear()
                self._emit(PromptFound())
        elif self.state is MachineState.IDLE:
            del self._buffer[: max(0, len(self._buffer) - 4096)]

    def next_event(self) -> Event | None:
        """The next event, or None when nothing new happened."""
        return self._events.popleft() if self._events else None

    # -- internals --------------------------------------------------------------------------

    def _line(self, line: str) -> None:
        line = self._carry + line
        self._carry = ""
        kernel = _KERNEL.search(line) if self.drop_kernel_lines else None
        if kernel is not None:
            # A kernel message printed into this line: keep the text before it for the next.
            self._carry = line[: kernel.start()]
            return
        if self.state is MachineState.SENT:
            if self._start in line:
                self._emit(CommandStarted())
            return
        if self.state is MachineState.OUTPUT:
            assert self._end is not None
            end = self._end.match(line)
            if end is not None:
                if end.group(1):
                    self._keep(end.group(1))
                self._emit(CommandFinished("\n".join(self._lines), int(end.group(2))))
                self._lines = []
                return
            self._keep(line)

    def _keep(self, line: str) -> None:
        self._size += len(line) + 1
        if self._size > self.max_output:
            self.state = MachineState.IDLE
            raise OutputTooLong(f"the command printed more than {self.max_output} bytes")
        self._lines.append(line)

    def _emit(self, event: Event) -> None:
        after = TRANSITIONS.get((self.state, type(event)))
        if after is None:  # pragma: no cover - _line only emits what the table allows
            raise ShellProtocolError(
                f"event {type(event).__name__} is not allowed in state {self.state.value}"
            )
        self.state = after
        self._events.append(event)


class ConsoleTail:
    """The last ``size`` characters of cleaned console text, for prompt searches.

    Lines are cleaned as :class:`CommandMachine` cleans them; the unfinished last line is
    cleaned again each time it grows, so a prompt split over many reads is found.
    """

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self._done = ""
        self._partial = bytearray()

    def receive_data(self, data: bytes) -> None:
        """Feed console bytes."""
        self._partial += data
        end = self._partial.rfind(b"\n")
        if end >= 0:
            lines = bytes(self._partial[: end + 1]).split(b"\n")[:-1]
            del self._partial[: end + 1]
            self._done = (self._done + "".join(clean_line(x) + "\n" for x in lines))[-self.size :]
        if len(self._partial) > self.size:
            del self._partial[: len(self._partial) - self.size]

    @property
    def text(self) -> str:
        """The cleaned text, the unfinished last line included."""
        return self._done + clean_line(bytes(self._partial))

    def search(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """Search the text; on a match, forget everything up to its end."""
        text = self.text
        match = pattern.search(text)
        if match is not None:
            self.consume(len(text) - match.end())
        return match

    def consume(self, keep: int = 0) -> None:
        """Forget the text but its last ``keep`` characters."""
        text = self.text
        self._done = text[len(text) - keep :] if keep else ""
        self._partial.clear()

    def last_lines(self, count: int = 10) -> list[str]:
        """The last ``count`` non-empty lines (for error messages)."""
        lines = [line for line in self.text.split("\n") if line.strip()]
        return lines[-count:]
