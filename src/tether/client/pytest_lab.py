"""pytest plugin (entry point ``tether-lab``): leases with roles (``lab``) and recording.

* ``pytest --tether-role dut=board=rpi4 --tether-role host=kind=x86`` leases one exporter
  per role, together, the first time a test asks for the session fixture ``lab``
  (``lab.dut.power.on()``); released at the end of the session.
* ``pytest --tether-record DIR`` records, for each test using ``dut`` or ``lab``, every call
  it made and what came back, to ``DIR/<test id>.jsonl``
  (:mod:`tether.testing` ``record``/``replay``; the format is in docs/testing.md).

The controller settings are the ``tether-lease`` plugin's (``--tether-controller`` ...).
Importing this module has no side effects and imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tether.client import Lab
    from tether.testing import Recorder

__all__ = ["lab", "pytest_addoption", "record_file", "tether_recording"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tether", "tether leases (the dut fixture)")
    group.addoption(
        "--tether-role",
        action="append",
        default=[],
        metavar="NAME=SELECTOR",
        help="lease one exporter per role for the lab fixture (repeatable)",
    )
    group.addoption(
        "--tether-record",
        metavar="DIR",
        help="record each test's calls on dut/lab to DIR/<test>.jsonl",
    )


def _option(config: pytest.Config, name: str, default: Any = None) -> Any:
    try:
        return config.getoption(name)
    except ValueError:  # the tether-lease plugin is disabled
        return default


@pytest.fixture(scope="session")
def lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """One client tree per ``--tether-role`` (one lease for all, for the whole session)."""
    from tether.client import lease_roles, parse_roles
    from tether.errors import ConfigError

    items = pytestconfig.getoption("tether_role")
    if not items:
        raise pytest.UsageError(
            "the lab fixture needs roles: run pytest with --tether-role NAME=SELECTOR "
            "(repeatable, e.g. --tether-role dut=board=rpi4 --tether-role host=kind=x86)"
        )
    try:
        roles = parse_roles(items)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    with lease_roles(
        roles,
        _option(pytestconfig, "tether_duration", "30m"),
        controller=_option(pytestconfig, "tether_controller"),
        token=_option(pytestconfig, "tether_token"),
        ca=_option(pytestconfig, "tether_ca"),
        config=_option(pytestconfig, "tether_config"),
        allow=_option(pytestconfig, "tether_allow", []) or [],
        progress=False,
    ) as leased:
        yield leased


def record_file(directory: str | Path, nodeid: str) -> Path:
    """Where ``--tether-record`` writes a test's recording: its id, made a file name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_") or "test"
    return Path(directory) / f"{name}.jsonl"


_RECORDER = pytest.StashKey["Recorder"]()


@pytest.fixture(autouse=True)
def tether_recording(request: pytest.FixtureRequest) -> Iterator[Path | None]:
    """With ``--tether-record DIR``: the test's recording file (written at teardown)."""
    directory = request.config.getoption("tether_record")
    used = [name for name in ("dut", "lab") if name in request.fixturenames]
    if not directory or not used:
        yield None
        return
    from tether.testing import Recorder

    recorder = request.config.stash.get(_RECORDER, None)
    if recorder is None:
        recorder = request.config.stash[_RECORDER] = Recorder()
    trees: list[str] = []
    for name in used:
        value = request.getfixturevalue(name)
        roles = getattr(value, "roles", None)
        pairs = roles.items() if name == "lab" and isinstance(roles, dict) else [(name, value)]
        for tree_name, tree in pairs:
            _attach_once(recorder, tree, tree_name)
            trees.append(tree_name)
    path = record_file(directory, request.node.nodeid)
    recorder.start(request.node.nodeid, trees)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            recorder.stop(path)


def _attach_once(recorder: Recorder, tree: Any, name: str) -> None:
    from tether.testing import RecordingTarget

    if not isinstance(getattr(tree, "_target", None), RecordingTarget):
        recorder.attach(tree, name)
