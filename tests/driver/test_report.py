"""Reports and the client tree: allow-list, generic clients, interface versions."""

from __future__ import annotations

from typing import Any

import pytest

from tether import DriverClient, Interface
from tether.driver import ClientPolicy, build_client_tree, build_report, node_for
from tether.drivers.composite import Composite
from tether.drivers.power import MockPower, PowerClient
from tether.errors import ClientNotAllowed, InterfaceVersionMismatch


class NoTarget:
    def call(self, *args: Any) -> Any:
        raise AssertionError("not called")

    streaming_call = open_stream = call


def report_of(root: Any) -> list[dict[str, Any]]:
    return build_report(node_for(root, "root"))


def test_report_describes_every_node() -> None:
    power = MockPower(description="bench PSU", labels={"rail": "5v"})
    entries = report_of(Composite(children={"power": power}))
    assert [e["path"] for e in entries] == ["", "power"]
    entry = entries[1]
    assert entry["parent"] == entries[0]["uuid"]
    assert entry["interface"] == "tether.power" and entry["version"] == 1
    assert entry["client"] == "tether.drivers.power.PowerClient"
    assert set(entry["methods"]) == {"on", "off", "cycle", "status", "read"}
    assert entry["labels"] == {"rail": "5v"} and entry["description"] == "bench PSU"


def test_builtin_clients_load_by_default() -> None:
    tree = build_client_tree(
        report_of(Composite(children={"power": MockPower()})), NoTarget(), ClientPolicy()
    )
    assert isinstance(tree.power, PowerClient)
    assert type(tree) is DriverClient


def test_disallowed_client_becomes_generic_and_explains() -> None:
    entries = report_of(MockPower())
    entries[0]["client"] = "thirdparty.clients.FancyPower"
    tree = build_client_tree(entries, NoTarget(), ClientPolicy())
    assert type(tree) is DriverClient
    with pytest.raises(
        ClientNotAllowed, match=r"thirdparty.clients.FancyPower is not allowed.*\.call\('on'"
    ):
        tree.on()


def test_missing_client_becomes_generic_and_says_not_installed() -> None:
    entries = report_of(MockPower())
    entries[0]["client"] = "not_a_module_anywhere.Client"
    tree = build_client_tree(entries, NoTarget(), ClientPolicy(allow=["not_a_module_anywhere.*"]))
    with pytest.raises(ClientNotAllowed, match="not installed here"):
        tree.on()


def test_version_mismatch_names_both_versions() -> None:
    entries = report_of(MockPower())
    entries[0]["version"] = 2
    with pytest.raises(
        InterfaceVersionMismatch, match=r"tether.power version 2.*speaks version\(s\) 1"
    ):
        build_client_tree(entries, NoTarget(), ClientPolicy())


def test_client_declares_versions_side_by_side() -> None:
    class PowerInterfaceV2(Interface):
        name = "tether.power"
        version = 2

    class BothClient(PowerClient):
        versions = frozenset({1, 2})

    assert BothClient.supported_versions() == {1, 2}
    assert PowerClient.supported_versions() == {1}
    assert PowerInterfaceV2.version == 2


def test_unknown_attribute_lists_children() -> None:
    tree = build_client_tree(
        report_of(Composite(children={"power": MockPower()})), NoTarget(), ClientPolicy()
    )
    with pytest.raises(AttributeError, match=r"children: power"):
        _ = tree.serial
