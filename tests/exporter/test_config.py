"""Exporter config: good files load into typed models and trees; bad files name file, line,
key path and what was expected (the table of ``bad_configs/*.yaml``)."""

from __future__ import annotations

import asyncio
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether import Driver, export
from tether.driver import DriverHost
from tether.drivers.composite import Composite
from tether.drivers.network import TcpNetwork
from tether.drivers.power import MockPower, PowerInterface
from tether.errors import ConfigError
from tether.exporter._config import (
    ExporterConfig,
    NodeConfig,
    OnFailure,
    TokensConfig,
    build_tree,
    load_config,
    parse_config,
)
from tether.exporter._problems import ConfigFileError, ConfigProblem
from tether.security import hash_token
from tether.wire import Address

HERE = Path(__file__).parent
BAD_DIR = HERE / "bad_configs"
DOCS = HERE.parent.parent / "docs" / "config.md"


# -- drivers the configs refer to as tether_test_lab.* --------------------------------------


class Flasher(Driver):
    """Uses a power service (no interface of its own)."""

    @export
    async def flash(self) -> bool:
        power = self.incoming.connect(PowerInterface, "power")
        await power.on()
        return True


class Relay(MockPower):
    """A power-like driver with a required field."""

    channel: int = 0


class Fussy(Driver):
    """Its constructor refuses after the config fields validated."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        raise RuntimeError("no relay board on this host")


@pytest.fixture(autouse=True)
def lab_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = types.ModuleType("tether_test_lab")
    module.Flasher = Flasher  # type: ignore[attr-defined]
    module.Relay = Relay  # type: ignore[attr-defined]
    module.Fussy = Fussy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tether_test_lab", module)
    monkeypatch.syspath_prepend(str(BAD_DIR))  # for broken_drivers.py
    yield


# -- bad configs: file, line, key path, what was expected -----------------------------------

BAD: list[tuple[str, int | None, str, str]] = [
    (
        "unknown_top_level_key.yaml",
        2,
        "lables",
        "unknown key (expected one of: name, labels, controller, hooks, health, metrics_listen, "
        "listen, tls, tokens, keepalive, session_grace, limits, export); did you mean 'labels'?",
    ),
    (
        "unknown_node_key.yaml",
        5,
        "export.power.confg",
        "unknown key (expected one of: type, config, children, description, labels, uses, "
        "ref); did you mean 'config'?",
    ),
    (
        "missing_type.yaml",
        3,
        "export.power.type",
        "required key is missing: a node needs `type` (a tether.Driver class path) or `ref` "
        "(the path of another node)",
    ),
    (
        "type_not_importable.yaml",
        5,
        "export.serial.type",
        "cannot import 'tether.drivers.nosuch.Serial': no module named 'tether.drivers.nosuch'",
    ),
    (
        "type_attribute_missing.yaml",
        4,
        "export.power.type",
        "cannot import 'tether.drivers.power.MockPowr': tether.drivers.power has no attribute "
        "'MockPowr'",
    ),
    (
        "type_import_raises.yaml",
        4,
        "export.relay.type",
        "cannot import 'broken_drivers.Relay': importing broken_drivers raised RuntimeError: "
        "relay board library not initialised",
    ),
    (
        "type_not_a_driver.yaml",
        4,
        "export.power.type",
        "expected a tether.Driver subclass; 'pathlib.Path' is a class that does not subclass it",
    ),
    (
        "type_not_dotted.yaml",
        3,
        "export.power.type",
        "expected a dotted class path such as tether.drivers.power.MockPower (got 'MockPower')",
    ),
    (
        "config_field_wrong_type.yaml",
        7,
        "export.power.config.samples",
        "expected an integer (got 'many')",
    ),
    (
        "config_field_unknown.yaml",
        6,
        "export.power.config.volts",
        "unknown config field of MockPower (expected one of: voltage, current, samples, "
        "interval); did you mean 'voltage'?",
    ),
    (
        "config_field_missing.yaml",
        5,
        "export.net.config.port",
        "required config field of TcpNetwork is missing",
    ),
    (
        "label_value_not_string.yaml",
        4,
        "labels.rev",
        "expected a string (got 2); quote it to make it a string",
    ),
    (
        "node_label_value_list.yaml",
        5,
        "export.power.labels.rails",
        "expected a string (got a list)",
    ),
    (
        "uses_target_missing.yaml",
        7,
        "export.flasher.uses.power",
        "expected the path of an exported node; there is no node 'powr'; did you mean 'power'?",
    ),
    (
        "uses_cycle.yaml",
        8,
        "export.b.uses.other",
        "uses cycle: a -> b -> a (a driver cannot depend on itself)",
    ),
    (
        "uses_provider_without_interface.yaml",
        6,
        "export.other.uses.power",
        "'flasher' (Flasher) offers no service: its driver implements no tether.Interface",
    ),
    (
        "ref_target_missing.yaml",
        7,
        "export.supply.ref",
        "expected the path of an exported node; there is no node 'board.pwr'; did you mean "
        "'board.power'?",
    ),
    ("ref_cycle.yaml", 3, "export.a.ref", "ref cycle: a -> b -> a"),
    (
        "ref_contains_itself.yaml",
        6,
        "export.board.children.loop.ref",
        "ref cycle: 'board.loop' refers to 'board', which contains it",
    ),
    (
        "ref_with_other_keys.yaml",
        6,
        "export.supply.config",
        "a `ref` node takes no other keys (found: config); it is the referenced node under a "
        "second name",
    ),
    (
        "duplicate_key.yaml",
        5,
        "export.power",
        "duplicate key (first defined on line 3); each key may appear once",
    ),
    (
        "duplicate_top_level_key.yaml",
        4,
        "name",
        "duplicate key (first defined on line 1); each key may appear once",
    ),
    (
        "tabs.yaml",
        4,
        "",
        "invalid YAML: found character '\\t' that cannot start any token (tabs cannot indent "
        "YAML; use spaces)",
    ),
    (
        "unclosed_flow.yaml",
        4,
        "",
        "invalid YAML: while parsing a flow mapping (line 3), expected ',' or '}', but got ':'",
    ),
    (
        "empty.yaml",
        1,
        "",
        "the file is empty; expected a mapping with at least `name` and `export`",
    ),
    (
        "comments_only.yaml",
        1,
        "",
        "the file is empty; expected a mapping with at least `name` and `export`",
    ),
    (
        "top_level_list.yaml",
        1,
        "",
        "expected a mapping with at least `name` and `export` (got a list)",
    ),
    ("missing_name.yaml", 1, "name", "required key is missing"),
    (
        "hooks_on_failure_invalid.yaml",
        4,
        "hooks.on_failure",
        "expected 'warn', 'end_lease' or 'exit' (got 'explode')",
    ),
    (
        "session_grace_negative.yaml",
        2,
        "session_grace",
        "expected a number greater than or equal to 0 (got -1)",
    ),
    (
        "hooks_timeout_negative.yaml",
        4,
        "hooks.timeout",
        "expected a number greater than 0 (got -5)",
    ),
    (
        "listen_bad_scheme.yaml",
        4,
        "listen[1]",
        "'http://0.0.0.0:7443': unknown scheme 'http' (expected unix, tcp or tls)",
    ),
    ("listen_missing_port.yaml", 2, "listen[0]", "'tcp://0.0.0.0': expected tcp://HOST:PORT"),
    (
        "listen_tls_without_certs.yaml",
        3,
        "listen[0]",
        "a tls:// address needs a `tls:` section (cert and key)",
    ),
    (
        "node_name_with_dot.yaml",
        3,
        "export['serial.0']",
        "invalid node name 'serial.0': use letters, digits, '_' and '-', starting with a letter "
        "or '_' (no dots)",
    ),
    (
        "token_in_clear.yaml",
        3,
        "tokens[0]",
        "this is a token in clear; store only its hash (expected 'sha256:' followed by 64 hex "
        "digits, see hash_token)",
    ),
    ("keepalive_not_a_number.yaml", 2, "keepalive", "expected a number (got '10s')"),
    ("tls_missing_key.yaml", 2, "tls.key", "required key is missing"),
    ("export_not_a_mapping.yaml", 2, "export", "expected a mapping (got a list)"),
]


@pytest.mark.parametrize(
    ("filename", "line", "key_path", "expected"), BAD, ids=[row[0] for row in BAD]
)
def test_bad_config_names_file_line_key_path_and_expectation(
    filename: str, line: int | None, key_path: str, expected: str
) -> None:
    path = BAD_DIR / filename
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    assert info.value.problems == (ConfigProblem(str(path), line, key_path, expected),)
    where = f"{path}:{line}: {key_path}: " if key_path else f"{path}:{line}: "
    assert str(info.value) == where + expected


def test_every_bad_fixture_is_in_the_table() -> None:
    assert sorted(p.name for p in BAD_DIR.glob("*.yaml")) == sorted(row[0] for row in BAD)
    assert len(BAD) >= 15


def test_config_file_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_config("name: x\nbogus: 1\n")


def test_several_problems_are_reported_together_in_line_order() -> None:
    text = """\
name: bench
keepalive: -1
export:
  power:
    type: tether.drivers.power.MockPower
    config: {samples: lots}
  supply: {ref: nowhere}
"""
    with pytest.raises(ConfigFileError) as info:
        parse_config(text, "lab.yaml")
    # shape errors come first (they stop the pass), then the rest of the file in one go
    assert [(p.line, p.path) for p in info.value.problems] == [(2, "keepalive")]
    with pytest.raises(ConfigFileError) as info:
        parse_config(text.replace("keepalive: -1", "keepalive: 5"), "lab.yaml")
    assert [(p.line, p.path) for p in info.value.problems] == [
        (6, "export.power.config.samples"),
        (7, "export.supply.ref"),
    ]
    assert str(info.value).splitlines()[0].startswith("lab.yaml:6: export.power.config.samples")


@pytest.mark.parametrize(
    ("text", "line", "path", "message"),
    [
        ("name: x\ntrue: 1\n", 2, "", "keys must be strings (got true); quote the key"),
        (
            "name: x\nexport:\n  a: &a\n    children:\n      b: *a\n",
            5,
            "export.a.children.b",
            "recursive YAML alias (an anchor used inside itself)",
        ),
        (
            "name: x\nlabels: {a: !custom b}\n",
            2,
            "labels.a",
            "invalid value: could not determine a constructor for the tag '!custom'",
        ),
        (
            "name: x\n---\nname: y\n",
            2,
            "",
            "invalid YAML: expected a single document in the stream (line 1), but found "
            "another document",
        ),
        (
            "name: x\nlabels: {a: \x07}\n",
            2,
            "",
            "invalid YAML: unacceptable character #x0007 (special characters are not allowed)",
        ),
        (
            "name: x\nexport: {a: {type: tether_test_lab.Flasher, uses: {b.c: a}}}\n",
            2,
            "export.a.uses['b.c']",
            "invalid instance name 'b.c': use letters, digits, '_' and '-', starting with a "
            "letter or '_' (no dots)",
        ),
        (
            "name: x\nexport:\n  a: {type: tether_test_lab.Relay, uses: {me: a}}\n",
            3,
            "export.a.uses.me",
            "a node cannot use itself",
        ),
    ],
)
def test_yaml_level_problems(text: str, line: int, path: str, message: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_config(text)
    assert info.value.problems == (ConfigProblem("<string>", line, path, message),)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigFileError, match=r"nope\.yaml: cannot read the config file"):
        load_config(missing)


# -- good configs ---------------------------------------------------------------------------

LAB = """\
name: bench-1
labels: {board: rpi4, site: lab-a}
controller: {endpoint: https://controller:8443, token_file: ./exporter.token}
hooks: {before_lease: "dut power on", after_lease: "dut power off"}
export:
  power: {type: tether.drivers.power.MockPower, config: {voltage: 12}}
  net:
    type: tether.drivers.network.TcpNetwork
    description: the DUT's ssh port
    labels: {proto: ssh}
    config: {host: dut.local, port: 22}
  flasher: {type: tether_test_lab.Flasher, uses: {power: power}}
"""


def test_api_example_loads_into_typed_models(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB)
    config = load_config(path)
    assert isinstance(config, ExporterConfig)
    assert config.name == "bench-1"
    assert config.labels == {"board": "rpi4", "site": "lab-a"}
    assert config.source == str(path)
    assert config.controller is not None
    assert config.controller.endpoint == "https://controller:8443"
    assert config.controller.token_file == tmp_path / "exporter.token"  # relative to the file
    assert config.hooks.before_lease == "dut power on"
    assert config.hooks.after_lease == "dut power off"
    assert config.export["net"].config == {"host": "dut.local", "port": 22}
    assert config.export["flasher"].uses == {"power": "power"}
    assert config.line_of("export.net.config") == 11


def test_defaults() -> None:
    config = parse_config("name: bench\n")
    assert config.labels == {}
    assert config.controller is None
    assert config.hooks.before_lease is None and config.hooks.after_lease is None
    assert config.hooks.timeout == 120.0
    assert config.hooks.on_failure is OnFailure.WARN
    assert config.listen == ()
    assert config.tls is None and config.tokens is None
    assert config.keepalive == 10.0
    assert config.session_grace == 30.0
    assert config.export == {}
    assert config.source == "<string>"
    root, uses = build_tree(config)
    assert isinstance(root, Composite) and root.children == {} and uses == {}


@pytest.mark.parametrize("policy", ["warn", "end_lease", "exit"])
def test_hooks(policy: str) -> None:
    config = parse_config(
        f"name: b\nhooks:\n  before_lease: |\n    dut power on\n    dut serial wait login\n"
        f"  timeout: 30\n  on_failure: {policy}\n"
    )
    assert config.hooks.before_lease == "dut power on\ndut serial wait login\n"
    assert config.hooks.timeout == 30.0
    assert config.hooks.on_failure is OnFailure(policy)


def test_listen_tls_and_tokens(tmp_path: Path) -> None:
    token_hash = hash_token("tth_secret")
    config = parse_config(
        f"""\
name: b
listen: [tls://0.0.0.0:7443, "tcp://[::1]:7000", unix:///run/tether.sock]
tls: {{cert: certs/server.pem, key: certs/server.key, ca: /etc/tether/ca.pem}}
tokens: [{token_hash}]
keepalive: 2.5
""",
        base_dir=tmp_path,
    )
    assert config.listen == (
        Address("tls", host="0.0.0.0", port=7443),
        Address("tcp", host="::1", port=7000),
        Address("unix", path="/run/tether.sock"),
    )
    assert config.tls is not None
    assert config.tls.cert == tmp_path / "certs/server.pem"
    assert config.tls.ca == Path("/etc/tether/ca.pem")
    assert config.tokens == TokensConfig(hashes=(token_hash,))
    assert config.keepalive == 2.5
    assert config.line_of("listen[2]") == 2


def test_tokens_with_a_token_file(tmp_path: Path) -> None:
    inline, in_file = hash_token("tth_a"), hash_token("tth_b")
    (tmp_path / "tokens").write_text(f"# lab users\n{in_file}  # alice\n")
    path = tmp_path / "lab.yaml"
    path.write_text(f"name: b\ntokens:\n  hashes: [{inline}]\n  token_file: tokens\n")
    tokens = load_config(path).tokens
    assert tokens is not None
    assert tokens.token_file == tmp_path / "tokens"
    assert tokens.accepted_hashes() == [inline, in_file]


def test_yaml_1_2_booleans_keep_on_off_yes_no_as_strings() -> None:
    config = parse_config("name: b\nlabels: {power: on, ready: yes, Off: no}\n")
    assert config.labels == {"power": "on", "ready": "yes", "Off": "no"}
    with pytest.raises(ConfigFileError, match=r"labels\.flag: expected a string \(got true\)"):
        parse_config("name: b\nlabels: {flag: true}\n")


def test_merge_keys_are_not_duplicates() -> None:
    config = parse_config(
        """\
name: b
export:
  main: &supply {type: tether.drivers.power.MockPower, config: {samples: 1}}
  spare:
    <<: *supply
    description: the spare supply
"""
    )
    assert config.export["spare"].type == "tether.drivers.power.MockPower"
    assert config.export["spare"].config == {"samples": 1}
    assert config.export["spare"].description == "the spare supply"


NESTED = """\
name: bench-2
labels: {board: imx8}
export:
  board:
    type: tether.drivers.composite.Composite
    description: the DUT
    labels: {slot: "3"}
    children:
      power: {type: tether.drivers.power.MockPower, config: {voltage: 3.3}}
      relay: {type: tether_test_lab.Relay, config: {channel: 2}}
      flasher:
        type: tether_test_lab.Flasher
        uses: {power: board.power, aux: board.relay}
  supply: {ref: board.power}
  dut: {ref: board}
  external:
    type: tether_test_lab.Flasher
    uses: {power: supply}
"""


def test_build_tree_nested_children_and_driver_config() -> None:
    config = parse_config(NESTED)
    root, _ = build_tree(config)
    assert isinstance(root, Composite)
    assert root.extra_labels == {"board": "imx8"}
    assert list(root.children) == ["board", "supply", "dut", "external"]
    board = root.children["board"]
    assert isinstance(board, Composite)
    assert board.description == "the DUT"
    assert board.extra_labels == {"slot": "3"}
    assert list(board.children) == ["power", "relay", "flasher"]
    power = board.children["power"]
    assert isinstance(power, MockPower) and power.voltage == 3.3
    relay = board.children["relay"]
    assert isinstance(relay, Relay) and relay.channel == 2


def test_ref_is_the_same_driver_under_two_names() -> None:
    root, _ = build_tree(parse_config(NESTED))
    board = root.children["board"]
    assert root.children["supply"] is board.children["power"]
    assert root.children["dut"] is board


def test_uses_names_every_path_of_a_node_with_canonical_providers() -> None:
    _, uses = build_tree(parse_config(NESTED))
    assert uses == {
        "board.flasher": {"power": "board.power", "aux": "board.relay"},
        "dut.flasher": {"power": "board.power", "aux": "board.relay"},
        "external": {"power": "board.power"},  # the ref `supply` resolved to its node
    }


def test_build_tree_makes_a_fresh_tree_each_call() -> None:
    config = parse_config(NESTED)
    first, _ = build_tree(config)
    second, _ = build_tree(config)
    assert first is not second
    assert first.children["board"] is not second.children["board"]
    assert first.children["supply"] is not second.children["supply"]


def test_uses_routes_the_provider_into_the_consumer_through_driver_host() -> None:
    config = parse_config(NESTED)
    root, uses = build_tree(config)

    async def scenario() -> bool:
        host = DriverHost(root, config.name, uses=uses)
        await host.start()
        try:
            flasher = root.children["external"]
            assert isinstance(flasher, Flasher)
            assert await flasher.flash()
            power = root.children["supply"]
            assert isinstance(power, MockPower)
            return await power.status()
        finally:
            await host.stop()

    assert asyncio.run(scenario()) is True


def test_config_made_in_python_builds_and_checks_without_lines() -> None:
    config = ExporterConfig(
        name="py",
        export={
            "net": NodeConfig(
                type="tether.drivers.network.TcpNetwork", config={"host": "h", "port": 1}
            )
        },
    )
    root, _ = build_tree(config)
    assert isinstance(root.children["net"], TcpNetwork)
    bad = ExporterConfig(name="py", export={"x": NodeConfig(ref="nowhere")})
    with pytest.raises(ConfigFileError) as info:
        build_tree(bad)
    assert info.value.problems[0].line is None
    assert str(info.value).startswith("<config>: export.x.ref: expected the path")


def test_a_driver_constructor_failure_names_the_node() -> None:
    config = parse_config("name: b\nexport:\n  relay:\n    type: tether_test_lab.Fussy\n")
    with pytest.raises(ConfigFileError) as info:
        build_tree(config)
    assert str(info.value) == (
        "<string>:4: export.relay.type: tether_test_lab.Fussy could not be created: "
        "no relay board on this host"
    )
    assert isinstance(info.value.__cause__, RuntimeError)


def test_examples_in_the_docs_are_valid(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert blocks, "docs/config.md has no yaml examples"
    for block in blocks:
        config = parse_config(block, "docs/config.md", base_dir=tmp_path)
        build_tree(config)


def test_a_yaml_alias_bomb_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    text = "name: bomb\n" + "\n".join(lines) + "\nexport: {}\n"
    with pytest.raises(ConfigFileError) as info:
        parse_config(text)  # 10**10 values, were they expanded
    assert "expands to more than" in str(info.value)
