"""The console shell's sans-IO core, fed a byte at a time."""

from __future__ import annotations

import re

import pytest

from tether.drivers.console import (
    CommandFinished,
    CommandMachine,
    CommandStarted,
    ConsoleTail,
    MachineState,
    OutputTooLong,
    PromptFound,
    ShellProtocolError,
    strip_ansi,
)


def token_of(line: bytes) -> str:
    match = re.search(rb"echo '@S''([0-9a-f]+)'", line)
    assert match is not None
    return match.group(1).decode()


def feed_bytewise(machine: CommandMachine, data: bytes) -> list[object]:
    events: list[object] = []
    for i in range(len(data)):
        machine.receive_data(data[i : i + 1])
        while (event := machine.next_event()) is not None:
            events.append(event)
    return events


def console_answer(sent: bytes, output: bytes, status: int = 0) -> bytes:
    token = token_of(sent).encode()
    echo = sent.replace(b"\n", b"\r\n")
    return echo + b"@S" + token + b"\r\n" + output + b"@E" + token + b" %d\r\n# " % status


def test_output_and_status_without_the_echo() -> None:
    machine = CommandMachine(r"# ")
    sent = machine.command("uname -a")
    events = feed_bytewise(machine, console_answer(sent, b"Linux box 6.1\r\n", 3))
    assert events == [CommandStarted(), CommandFinished("Linux box 6.1", 3), PromptFound()]
    assert machine.state is MachineState.IDLE


def test_ansi_sequences_and_a_kernel_line_in_the_middle_are_removed() -> None:
    machine = CommandMachine(r"# ")
    sent = machine.command("ls")
    output = (
        b"\x1b[1;34mbin\x1b[0m  etc\r\n"
        b"half a li[   12.345678] virtio_net: link up\r\nne\r\n"
        b"[    0.000001] a whole kernel line\r\n"
        b"last\r\n"
    )
    events = feed_bytewise(machine, console_answer(sent, output))
    assert CommandFinished("bin  etc\nhalf a line\nlast", 0) in events


def test_output_without_a_final_newline_and_an_empty_output() -> None:
    machine = CommandMachine(r"# ")
    sent = machine.command("printf abc")
    token = token_of(sent).encode()
    answer = sent + b"@S" + token + b"\r\nabc@E" + token + b" 0\r\n# "
    assert CommandFinished("abc", 0) in feed_bytewise(machine, answer)
    sent = machine.command("true")
    assert CommandFinished("", 0) in feed_bytewise(machine, console_answer(sent, b""))


def test_the_echo_redrawn_by_a_line_editor_never_matches() -> None:
    machine = CommandMachine(r"\$ ")
    sent = machine.command("echo hi")
    token = token_of(sent).encode()
    # A line editor wrapping the echo with escapes and carriage returns.
    echo = b"echo '@S''" + token + b"'; echo hi;\x1b[K\r echo '@E''" + token + b"' $?\r\n"
    answer = echo + b"@S" + token + b"\r\nhi\r\n@E" + token + b" 0\r\n\x1b[32muser\x1b[0m$ "
    assert feed_bytewise(machine, answer)[1] == CommandFinished("hi", 0)


def test_long_output_in_one_piece() -> None:
    machine = CommandMachine(r"# ")
    sent = machine.command("seq 100000")
    body = b"".join(b"%d\r\n" % i for i in range(100000))
    machine.receive_data(console_answer(sent, body))
    events = [machine.next_event() for _ in range(3)]
    assert isinstance(events[1], CommandFinished)
    assert events[1].output.split("\n") == [str(i) for i in range(100000)]


def test_too_much_output_is_an_error() -> None:
    machine = CommandMachine(r"# ", max_output=100)
    sent = machine.command("yes")
    with pytest.raises(OutputTooLong):
        machine.receive_data(console_answer(sent, b"y\r\n" * 200))


def test_resync_ignores_the_old_command() -> None:
    machine = CommandMachine(r"# ")
    old = machine.command("sleep 100")
    old_token = token_of(old).encode()
    machine.receive_data(old + b"@S" + old_token + b"\r\n")
    assert machine.next_event() == CommandStarted()
    new = machine.resync()
    assert new.startswith(b"\x03")
    # The old command's end marker shows up late: ignored.
    late = b"^C\r\n@E" + old_token + b" 130\r\n# "
    assert feed_bytewise(machine, late + console_answer(new[1:], b"")) == [
        CommandStarted(),
        CommandFinished("", 0),
        PromptFound(),
    ]


def test_wrong_calls_name_the_state() -> None:
    machine = CommandMachine(r"# ")
    machine.command("a")
    with pytest.raises(ShellProtocolError, match="state sent"):
        machine.command("b")
    machine.state = MachineState.IDLE
    with pytest.raises(ShellProtocolError, match="one line"):
        machine.command("a\nb")


def test_the_tail_finds_a_prompt_split_over_reads() -> None:
    tail = ConsoleTail(64)
    for byte in b"boot...\r\n\x1b[0mHit any key to stop autoboot:  2 ":
        tail.receive_data(bytes([byte]))
    assert tail.search(re.compile(r"Hit any key to stop autoboot")) is not None
    assert tail.search(re.compile(r"Hit any key")) is None  # consumed
    assert strip_ansi("\x1b]0;title\x07x\x1b[2Jy") == "xy"
    tail.receive_data(b"".join(b"line %d\n" % i for i in range(50)))
    assert tail.last_lines(2) == ["line 48", "line 49"]
    assert len(tail.text) <= 64


def test_kernel_lines_are_kept_when_asked() -> None:
    machine = CommandMachine(r"# ", drop_kernel_lines=False)
    sent = machine.command("dmesg")
    events = feed_bytewise(machine, console_answer(sent, b"[    0.000000] Linux version\r\n"))
    assert CommandFinished("[    0.000000] Linux version", 0) in events
