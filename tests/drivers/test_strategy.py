"""BootStrategy with the real UBoot and ConsoleShell drivers over a fake board, in virtual
time (the test kit's runtime: the boot's seconds pass without waiting)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _boot_fakes import FakeBoard, FakeConsole, FakePower

from tether.driver import Composite, DriverHost
from tether.drivers.console import ConsoleShell
from tether.drivers.strategy import BootGraph, BootStepFailed, BootStrategy, UnknownState
from tether.drivers.uboot import UBoot
from tether.testing import DriverRuntime

USES = {
    "uboot": {"console": "console"},
    "shell": {"console": "console"},
    "boot": {"power": "power", "console": "console", "uboot": "uboot", "shell": "shell"},
}


class Lab:
    def __init__(self, runtime: DriverRuntime, board: FakeBoard, **config: Any) -> None:
        self.runtime = runtime
        self.board = board
        self.strategy = BootStrategy(**config)
        self.root = Composite(
            children={
                "power": FakePower(board),
                "console": FakeConsole(board),
                "uboot": UBoot(),
                "shell": ConsoleShell(prompt="fake-board# "),
                "boot": self.strategy,
            }
        )
        self.host = DriverHost(self.root, uses=USES)
        runtime.run_to_completion(self.host.start())

    def run(self, awaitable: Any) -> Any:
        return self.runtime.run_to_completion(awaitable, timeout=3600)

    def close(self) -> None:
        self.runtime.run_to_completion(self.host.stop())


@pytest.fixture
def runtime() -> Iterator[DriverRuntime]:
    with DriverRuntime() as runtime:
        yield runtime


def test_from_off_to_the_shell_through_u_boot(runtime: DriverRuntime) -> None:
    board = FakeBoard()
    lab = Lab(runtime, board, boot_commands=["echo loading", "boot"])
    assert lab.run(lab.strategy.state()) == "off"
    lab.run(lab.strategy.transition("shell"))
    assert lab.run(lab.strategy.state()) == "shell"
    assert (board.mode, board.power_ons, board.interrupted) == ("linux", 1, 1)
    assert "echo loading" in board.commands and "boot" in board.commands
    lab.run(lab.strategy.transition("shell"))  # idempotent: nothing happens to the board
    assert (board.power_ons, board.commands.count("boot")) == (1, 1)
    lab.run(lab.strategy.transition("uboot"))  # from the shell: a power cycle
    assert (board.mode, board.power_ons) == ("uboot", 2)
    lab.run(lab.strategy.transition("off"))
    assert not board.powered
    lab.close()


def test_a_board_found_at_a_shell_is_not_power_cycled(runtime: DriverRuntime) -> None:
    board = FakeBoard()
    board.powered, board.mode = True, "linux"
    lab = Lab(runtime, board)
    lab.run(lab.strategy.transition("shell"))
    assert board.power_ons == 0
    assert lab.run(lab.strategy.state()) == "shell"
    lab.close()


def test_a_stuck_board_is_power_cycled(runtime: DriverRuntime) -> None:
    board = FakeBoard()
    lab = Lab(runtime, board)
    lab.run(lab.strategy.transition("shell"))
    board.stuck = True  # the kernel hung: no prompt, no echo
    lab.run(lab.strategy.transition("shell"))
    assert (board.mode, board.power_ons, board.stuck) == ("linux", 2, False)
    lab.close()


def test_u_boot_that_does_not_stop_names_the_step_with_the_console(
    runtime: DriverRuntime,
) -> None:
    board = FakeBoard()
    board.ignore_keys = True
    lab = Lab(runtime, board, uboot_timeout=20)
    with pytest.raises(BootStepFailed) as info:
        lab.run(lab.strategy.transition("uboot"))
    message = str(info.value)
    assert 'step "power on and stop U-Boot\'s autoboot" (off -> uboot) failed' in message
    assert "Hit any key to stop autoboot" in message and "Starting kernel" in message
    assert lab.run(lab.strategy.state()) == "shell"  # looked at again: it booted on its own
    lab.close()


def test_a_state_that_does_not_exist(runtime: DriverRuntime) -> None:
    lab = Lab(runtime, FakeBoard())
    with pytest.raises(UnknownState, match="no state 'linux'; the states are: off, uboot, shell"):
        lab.run(lab.strategy.transition("linux"))
    assert lab.run(lab.strategy.states()) == ["off", "uboot", "shell"]
    lab.close()


def test_the_graph_without_u_boot() -> None:
    graph = BootGraph.for_board(has_uboot=False)
    assert graph.states == ["off", "shell"]
    assert [s.name for s in graph.path("unknown", "shell")] == [
        "power off",
        "power on and wait for the shell",
    ]
    assert [s.target for s in BootGraph.for_board(has_uboot=True).path("shell", "uboot")] == [
        "off",
        "uboot",
    ]


def test_the_shell_is_found_again_after_a_power_cycle(runtime: DriverRuntime) -> None:
    board = FakeBoard()
    lab = Lab(runtime, board)
    shell = lab.root.children["shell"]
    lab.run(lab.strategy.transition("shell"))
    assert lab.run(shell.run("echo one")).output == "one"
    lab.run(lab.strategy.transition("uboot"))
    # At U-Boot's prompt the shell is not there: an error, not U-Boot answering for it.
    with pytest.raises(TimeoutError, match="no prompt matching 'fake-board# '"):
        lab.run(shell.run("echo two"))
    lab.run(lab.strategy.transition("shell"))
    assert lab.run(shell.run("echo three")).output == "three"
    lab.close()


def test_the_storage_goes_to_the_board_before_power_on(runtime: DriverRuntime) -> None:
    from tether.drivers.storage import MockStorageMux

    board = FakeBoard()
    mux = MockStorageMux()
    strategy = BootStrategy()
    root = Composite(
        children={
            "power": FakePower(board),
            "console": FakeConsole(board),
            "disk": mux,
            "shell": ConsoleShell(prompt="fake-board# "),
            "boot": strategy,
        }
    )
    uses = {
        "shell": {"console": "console"},
        "boot": {"power": "power", "console": "console", "shell": "shell", "storage": "disk"},
    }
    host = DriverHost(root, uses=uses)
    runtime.run_to_completion(host.start())
    assert runtime.run_to_completion(mux.status()) == "host"
    assert runtime.run_to_completion(strategy.states()) == ["off", "shell"]  # no U-Boot
    runtime.run_to_completion(strategy.transition("shell"), timeout=3600)
    assert runtime.run_to_completion(mux.status()) == "dut"
    assert board.mode == "linux" and board.interrupted == 0  # it autobooted by itself
    runtime.run_to_completion(host.stop())
