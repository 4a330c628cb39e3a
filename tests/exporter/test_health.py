"""The ``health:`` section: config checks (file:line), a command that never ends (its
timeout kills it), and ``transition:`` calling a node's ``transition(STATE)`` on a fresh tree."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether import Driver, export
from tether.exporter import ConfigFileError, parse_config
from tether.exporter._health import run_health_check


class Strategy(Driver):
    """A small stand-in for a BootStrategy: records what it was asked, fails on "broken"."""

    asked: list[str] = []

    @export
    async def transition(self, state: str) -> None:
        Strategy.asked.append(state)
        if state == "broken":
            raise RuntimeError("the board did not reach a shell")

    @export
    def state(self) -> str:
        return Strategy.asked[-1] if Strategy.asked else "off"


class NoTransition(Driver):
    @export
    def ping(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def lab_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = types.ModuleType("tether_health_lab")
    module.Strategy = Strategy  # type: ignore[attr-defined]
    module.NoTransition = NoTransition  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tether_health_lab", module)
    Strategy.asked = []
    yield


EXPORT = """
export:
  board:
    type: tether.drivers.composite.Composite
    children:
      strategy: {type: tether_health_lab.Strategy}
      other: {type: tether_health_lab.NoTransition}
"""


def config_error(text: str) -> str:
    with pytest.raises(ConfigFileError) as caught:
        parse_config("name: bench\n" + text + EXPORT, "lab.yaml")
    return str(caught.value)


def test_a_health_node_that_does_not_exist_is_a_config_error_with_its_line() -> None:
    message = config_error("health: {transition: shell, node: board.strategi}\n")
    assert "lab.yaml:2" in message and "health.node" in message
    assert "no node 'board.strategi'" in message and "did you mean 'board.strategy'" in message


def test_a_health_node_without_transition_is_a_config_error() -> None:
    message = config_error("health:\n  transition: shell\n  node: board.other\n")
    assert "lab.yaml:4" in message
    assert "has no `transition` method" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("health: {interval: 5}\n", "exactly one of `command`"),
        ("health: {command: 'true', transition: shell, node: board.strategy}\n", "exactly one"),
        ("health: {transition: shell}\n", "`transition` needs `node`"),
        ("health: {command: 'true', timeout: 0}\n", "health.timeout"),
        ("health: {command: 'true', every: 5}\n", "health.every"),
        ("metrics_listen: localhost\n", "expected HOST:PORT"),
    ],
)
def test_bad_health_and_metrics_settings(text: str, expected: str) -> None:
    message = config_error(text)
    assert "lab.yaml:2" in message and expected in message


def test_a_health_command_that_never_ends_fails_at_its_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    config = parse_config(
        f'name: bench\nhealth: {{command: "echo $$ > {pid_file}; echo probing; sleep 1000", '
        "timeout: 0.5}\n" + EXPORT
    )
    result = asyncio.run(run_health_check(config))
    assert not result.ok
    assert "timed out after 0.5 s" in result.output and "probing" in result.output
    # Its process group was killed: the shell is gone.
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"


def test_a_passing_command_reports_its_output() -> None:
    config = parse_config("name: bench\nhealth: {command: 'echo all good'}\n" + EXPORT)
    result = asyncio.run(run_health_check(config))
    assert result.ok and "all good" in result.output


def test_transition_calls_the_nodes_transition_on_a_fresh_tree() -> None:
    config = parse_config(
        "name: bench\nhealth: {transition: shell, node: board.strategy}\n" + EXPORT
    )
    result = asyncio.run(run_health_check(config))
    assert result.ok, result.output
    assert Strategy.asked == ["shell"]


def test_a_failing_transition_is_an_unhealthy_result_naming_the_node() -> None:
    text = "name: bench\nhealth: {transition: broken, node: board.strategy}\n" + EXPORT
    result = asyncio.run(run_health_check(parse_config(text)))
    assert not result.ok
    assert "board.strategy.transition('broken') failed" in result.output
    assert "the board did not reach a shell" in result.output
