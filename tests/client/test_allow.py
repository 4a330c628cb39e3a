"""One allow-list: ``allow=``, ``TETHER_CLIENT_ALLOW`` and the config file's ``allow:`` for
Python, ``dut`` and pytest alike; registered drivers' clients trusted without listing.

The third-party driver is a real package written to a temporary directory, made installed
(a ``.dist-info`` with an ``entry_points.txt``) or not, and served by a real exporter."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import tether
from tether.cli.dut import build_dut, connect_from_env
from tether.client import client_policy
from tether.driver import installed_driver_patterns
from tether.errors import ConfigError
from tether.exporter import parse_config, run_exporter_in_thread

PACKAGE = '''
import click
from abc import abstractmethod
from tether import Driver, DriverClient, Interface


class RelayInterface(Interface):
    name = "thirdparty.relay"
    client = "thirdparty_relay.RelayClient"

    @abstractmethod
    async def get(self) -> bool: ...

    @abstractmethod
    async def set(self, closed: bool) -> None: ...


class Relay(RelayInterface, Driver):
    state: bool = False

    async def get(self) -> bool:
        return self.state

    async def set(self, closed: bool) -> None:
        self.state = closed


class RelayClient(DriverClient):
    interface = RelayInterface

    def get(self) -> bool:
        return bool(self.call("get"))

    def set(self, closed: bool) -> None:
        self.call("set", closed)

    def cli(self) -> click.Group:
        @click.group()
        def relay() -> None: ...

        @relay.command()
        def toggle() -> None:
            """Flip the relay."""
            self.set(not self.get())
            click.echo("closed" if self.get() else "open")

        return relay
'''


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The package importable, not registered; a home without a client config."""
    (tmp_path / "thirdparty_relay").mkdir()
    (tmp_path / "thirdparty_relay" / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("TETHER_CLIENT_ALLOW", raising=False)
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    installed_driver_patterns.cache_clear()
    yield tmp_path
    installed_driver_patterns.cache_clear()


def register(root: Path) -> None:
    info = root / "thirdparty_relay-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-relay\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[tether.drivers]\nthirdparty_relay.Relay = thirdparty_relay:Relay\n"
    )
    installed_driver_patterns.cache_clear()


@pytest.fixture
def exporter(package: Path) -> Iterator[str]:
    config = parse_config("name: lab\nexport:\n  relay: {type: thirdparty_relay.Relay}\n")
    with run_exporter_in_thread(config, listen="tcp://127.0.0.1:0") as running:
        yield running.url


def dut(url: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("TETHER_HOST", url)
    root = connect_from_env()
    try:
        result = CliRunner().invoke(build_dut(root), list(args), prog_name="dut")
    finally:
        root.close()
    return result.exit_code, result.output


def test_an_unlisted_client_falls_back_and_dut_says_how_to_allow_it(
    exporter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tether.connect(exporter) as root:
        assert type(root.relay).__name__ == "DriverClient"
        assert root.relay.call("get") is False  # still callable by name
    status, output = dut(exporter, monkeypatch, "relay", "toggle")
    assert status == 2
    assert "No such command 'toggle'" in output
    assert "thirdparty_relay.RelayClient is not allowed" in output
    assert "TETHER_CLIENT_ALLOW='thirdparty_relay.*'" in output
    assert "get, set" in output


def test_tether_client_allow_is_honoured_by_python_and_dut(
    exporter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_CLIENT_ALLOW", "other.*, thirdparty_relay.*")
    with tether.connect(exporter) as root:
        assert type(root.relay).__name__ == "RelayClient"
    assert dut(exporter, monkeypatch, "relay", "toggle") == (0, "closed\n")


def test_the_client_config_files_allow_is_honoured(
    exporter: str, package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = package / "client.yaml"
    config.write_text("allow: ['thirdparty_relay.*']\n")
    monkeypatch.setenv("TETHER_CONFIG", str(config))
    with tether.connect(exporter) as root:
        assert type(root.relay).__name__ == "RelayClient"
    assert dut(exporter, monkeypatch, "relay", "toggle") == (0, "closed\n")


def test_a_registered_drivers_client_is_trusted_without_listing(
    exporter: str, package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(package)
    assert "thirdparty_relay.*" in installed_driver_patterns()
    with tether.connect(exporter) as root:
        assert type(root.relay).__name__ == "RelayClient"
        root.relay.set(True)
        assert root.relay.get() is True
    # every connection gets a fresh driver tree: the relay starts open again
    assert dut(exporter, monkeypatch, "relay", "toggle") == (0, "closed\n")


def test_the_policy_merges_every_source(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = package / "client.yaml"
    config.write_text("endpoint: https://c\ntoken: t\nallow: from.config.*\n")
    monkeypatch.setenv("TETHER_CLIENT_ALLOW", "from.env.*")
    policy = client_policy(["from.arg.*"], config=config)
    assert policy.allow == ("from.arg.*", "from.env.*", "from.config.*")
    assert policy.allows("from.config.Client") and not policy.allows("elsewhere.Client")


def test_a_bad_allow_in_the_config_file_is_a_config_error(package: Path) -> None:
    config = package / "client.yaml"
    config.write_text("allow: {a: 1}\n")
    with pytest.raises(ConfigError, match=r"client.yaml: allow: expected a list of glob patterns"):
        client_policy(config=config)
