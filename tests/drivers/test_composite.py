"""Composite nodes and refs: one driver object reachable under two names."""

from __future__ import annotations

from tether.driver import DriverClient, DriverHost
from tether.drivers.composite import Composite
from tether.drivers.power import MockPower, PowerClient
from tether.exporter import build_tree, parse_config
from tether.testing import serve


class CountingPower(MockPower):
    """MockPower that counts its lifecycle calls (a ref must not start a driver twice)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.starts = 0
        self.stops = 0

    async def start(self) -> None:
        self.starts += 1

    def stop(self) -> None:
        self.stops += 1


def test_composite_groups_children() -> None:
    tree = Composite(
        description="the board",
        children={"main": MockPower(), "aux": MockPower(voltage=12.0)},
    )
    with serve(tree) as root:
        assert type(root) is DriverClient  # a composite exports nothing itself
        assert root.methods == {}
        assert root.description == "the board"
        assert set(root.children) == {"main", "aux"}
        root.aux.on()
        assert root.aux.status() is True
        assert root.main.status() is False


def test_one_driver_under_two_names_is_one_object_started_once() -> None:
    power = CountingPower()
    board = Composite(children={"power": power})
    with serve(Composite(children={"power": power, "board": board})) as root:
        assert isinstance(root.power, PowerClient)
        assert isinstance(root.board.power, PowerClient)
        assert root.power.uuid == root.board.power.uuid
        root.board.power.on()
        assert root.power.status() is True  # the same switch
        root.power.off()
        assert root.board.power.status() is False
        assert power.starts == 1
    assert power.stops == 1


def test_report_lists_each_path() -> None:
    power = MockPower()
    host = DriverHost(
        Composite(children={"power": power, "board": Composite(children={"power": power})})
    )
    paths = {entry["path"]: entry["uuid"] for entry in host.report()}
    assert set(paths) == {"", "power", "board", "board.power"}
    assert paths["power"] == paths["board.power"] == power.uuid


YAML = """
name: bench
labels: {board: rpi4}
export:
  power:
    type: tether.drivers.power.MockPower
    config: {voltage: 5.1}
  board:
    type: tether.drivers.composite.Composite
    children:
      power: {ref: power}
      supply: {type: tether.drivers.power.MockPower}
  spare-board: {ref: board}
"""


def test_exporter_config_refs_reach_the_same_driver() -> None:
    root_driver, _ = build_tree(parse_config(YAML))
    with serve(root_driver, name="bench") as root:
        assert set(root.children) == {"power", "board", "spare-board"}
        board, spare = root.board, root.children["spare-board"]
        assert set(board.children) == set(spare.children) == {"power", "supply"}
        board.power.on()
        assert root.power.status() is True
        spare.supply.on()
        assert board.supply.status() is True  # spare-board is board under a second name
        assert root.power.uuid == board.power.uuid == spare.power.uuid
        # each alias's client tree carries its own paths
        assert board.supply.report["path"] == "board.supply"
        assert spare.supply.report["path"] == "spare-board.supply"
        assert [r.voltage for r in root.power.read()] == [5.1] * 3


def test_each_session_builds_a_fresh_tree() -> None:
    config = parse_config(YAML)
    first, _ = build_tree(config)
    second, _ = build_tree(config)
    assert first.children["power"] is not second.children["power"]
    assert first.children["power"] is first.children["board"].children["power"]
