"""``uses:`` reaches the children a driver makes itself (the QEMU board's console)."""

from __future__ import annotations

import pytest

from tether.drivers.qemu import QemuConsole
from tether.exporter import ConfigFileError, build_tree, parse_config

LAB = """
name: lab
export:
  board:
    type: tether.drivers.qemu.Qemu
  shell:
    type: tether.drivers.console.ConsoleShell
    uses: {{console: {target}}}
"""


def test_a_child_the_driver_makes_is_routed() -> None:
    root, uses = build_tree(parse_config(LAB.format(target="board.console")))
    assert uses == {"shell": {"console": "board.console"}}
    assert isinstance(root.children["board"].children["console"], QemuConsole)


def test_a_missing_child_names_the_children_there_are_with_file_and_line() -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_config(LAB.format(target="board.consle"), "lab.yaml")
    message = str(info.value)
    assert "lab.yaml:8: export.shell.uses.console" in message
    assert (
        "'board' (Qemu) has no child 'consle' (its children: console, disk, network, power)"
        in message
    )


def test_a_missing_node_is_still_a_config_error() -> None:
    with pytest.raises(ConfigFileError, match="there is no node 'bord.console'"):  # noqa: RUF043
        parse_config(LAB.format(target="bord.console"), "lab.yaml")
