"""pytest plugin (entry point ``tether-lease``): lease a device once per session, as ``dut``.

``pytest --tether-selector board=rpi4`` leases one matching exporter the first time a test asks
for the ``dut`` fixture, keeps the lease for the whole session and releases it at the end,
including after Ctrl-C (the fixture's teardown runs then, and ``pytest_unconfigure`` releases
anything still held). The lease id and exporter name are written to the JUnit XML report
(``--junitxml``) as testsuite properties ``tether_lease`` and ``tether_exporter``, and shown in
the terminal header line ``tether: lease ID on EXPORTER``.

The controller, token and CA come from ``--tether-controller``/``--tether-token``/
``--tether-ca``/``--tether-config``, else ``TETHER_CONTROLLER``/``TETHER_TOKEN``/``TETHER_CA``,
else the client config file (see :func:`tether.client.load_client_settings`).

Without a controller: ``--tether-connect URL`` (with ``--tether-token``/``--tether-ca``)
reaches an exporter directly, ``--tether-exporter-config FILE`` runs the exporter in this
process (as ``tether shell --exporter-config`` does), and inside ``tether shell`` the
``TETHER_HOST`` it exports is used. The first of these that is given wins, in that order;
a run whose tests use ``dut`` with none of them (nor a selector) is one usage error.

Importing this module has no side effects and imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tether.client import Lease, RemoteClient

__all__ = [
    "LeaseHolder",
    "dut",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_unconfigure",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tether", "tether leases (the dut fixture)")
    group.addoption("--tether-selector", help="lease an exporter matching these labels")
    group.addoption("--tether-exporter", help="lease this exporter by name instead")
    group.addoption("--tether-duration", default="30m", help="lease duration (default 30m)")
    group.addoption("--tether-controller", help="controller URL (else $TETHER_CONTROLLER)")
    group.addoption("--tether-token", help="client token (else $TETHER_TOKEN)")
    group.addoption("--tether-ca", help="the controller's CA certificate (else $TETHER_CA)")
    group.addoption("--tether-config", help="client config file (else $TETHER_CONFIG)")
    group.addoption("--tether-connect", metavar="URL", help="use this exporter directly")
    group.addoption(
        "--tether-exporter-config",
        metavar="FILE",
        help="run this exporter config in-process and use it (no controller)",
    )
    group.addoption(
        "--tether-allow",
        action="append",
        default=[],
        help="client classes that may be imported (glob, repeatable)",
    )
    group.addoption(
        "--tether-console-dir",
        default="tether-logs",
        help="where each console's session log is saved (default ./tether-logs; '' for none)",
    )


class LeaseHolder:
    """The session's lease: acquired on first use, released once."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.lease: Lease | None = None
        self.tree: RemoteClient | None = None
        self._stack: contextlib.ExitStack | None = None

    def source(self) -> str | None:
        """Where the device comes from (``connect``, ``exporter-config``, ``lease``,
        ``shell``), or None when nothing says."""
        option = self.config.getoption
        if option("tether_connect"):
            return "connect"
        if option("tether_exporter_config"):
            return "exporter-config"
        if option("tether_selector") or option("tether_exporter"):
            return "lease"
        if os.environ.get("TETHER_HOST"):
            return "shell"
        return None

    def acquire(self) -> RemoteClient:
        if self.tree is not None:
            return self.tree
        source = self.source()
        if source is None:
            raise pytest.UsageError(NO_DEVICE)
        if source == "lease":
            return self._lease()
        return self._direct(source)

    def _direct(self, source: str) -> RemoteClient:
        from tether.client import connect

        option = self.config.getoption
        stack = contextlib.ExitStack()
        try:
            if source == "exporter-config":
                from tether.exporter import run_exporter_in_thread

                running = stack.enter_context(
                    run_exporter_in_thread(option("tether_exporter_config"))
                )
                url, token, ca = running.url, running.token, None
            elif source == "connect":
                url, token, ca = (
                    option("tether_connect"),
                    option("tether_token"),
                    option("tether_ca"),
                )
            else:
                url, token, ca = os.environ["TETHER_HOST"], None, None
            tree = stack.enter_context(connect(url, token, ca=ca, allow=option("tether_allow")))
        except BaseException:
            stack.close()
            raise
        self._stack, self.tree = stack, tree
        self.say(f"tether: {url} ({source})")
        return tree

    def _lease(self) -> RemoteClient:
        from tether.client import lease

        option = self.config.getoption
        selector, exporter = option("tether_selector"), option("tether_exporter")

        def waiting(pending: Lease) -> None:
            place = pending.position or "?"
            self.say(f"tether: waiting for lease {pending.id} (queue position {place})")

        stack = contextlib.ExitStack()
        tree = stack.enter_context(
            lease(
                selector,
                option("tether_duration"),
                exporter=exporter,
                controller=option("tether_controller"),
                token=option("tether_token"),
                ca=option("tether_ca"),
                config=option("tether_config"),
                allow=option("tether_allow"),
                progress=False,
                on_wait=waiting,
            )
        )
        self._stack, self.tree = stack, tree
        self.lease = tree.session.lease  # type: ignore[attr-defined]
        assert self.lease is not None
        self.say(f"tether: lease {self.lease.id} on {', '.join(self.lease.exporters)}")
        return tree

    def say(self, line: str) -> None:
        """Write a line to the terminal, past output capturing."""
        manager = self.config.pluginmanager
        reporter = manager.get_plugin("terminalreporter")
        capture = manager.get_plugin("capturemanager")
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.ensure_newline()
            reporter.write_line(line)

    def release(self) -> None:
        stack, self._stack, self.tree = self._stack, None, None
        if stack is not None:
            stack.close()


_HOLDER = pytest.StashKey[LeaseHolder]()

NO_DEVICE = (
    "the dut fixture needs a device: run pytest with --tether-selector LABELS (e.g. "
    "--tether-selector board=rpi4), --tether-exporter NAME, --tether-connect URL or "
    "--tether-exporter-config FILE, or inside `tether shell`"
)


def _holder(config: pytest.Config) -> LeaseHolder:
    holder = config.stash.get(_HOLDER, None)
    if holder is None:
        holder = config.stash[_HOLDER] = LeaseHolder(config)
    return holder


@pytest.fixture(scope="session")
def dut(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Iterator[RemoteClient]:
    """The leased device's client tree (one lease for the whole test session)."""
    holder = _holder(pytestconfig)
    tree = holder.acquire()
    try:  # absent with -p no:junitxml
        record = request.getfixturevalue("record_testsuite_property")
    except pytest.FixtureLookupError:
        record = None
    if record is not None and holder.lease is not None:
        record("tether_lease", holder.lease.id)
        record("tether_exporter", ",".join(holder.lease.exporters))
    try:
        yield tree
    finally:
        holder.release()


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """A run whose tests need ``dut`` but names no device: one usage error, not one per test."""
    needs_dut = any(_uses_our_dut(item) for item in items)
    if needs_dut and _holder(config).source() is None:
        raise pytest.UsageError(NO_DEVICE)


def _uses_our_dut(item: pytest.Item) -> bool:
    """Whether ``item`` uses this plugin's ``dut`` (not a ``dut`` fixture of its own)."""
    info = getattr(item, "_fixtureinfo", None)
    definitions = list(info.name2fixturedefs.get("dut", ())) if info is not None else []
    return bool(definitions) and getattr(definitions[-1].func, "__module__", "") == __name__


def pytest_unconfigure(config: pytest.Config) -> None:
    holder = config.stash.get(_HOLDER, None)
    if holder is not None:
        holder.release()


# -- console output in reports (see tether.client._console_report) ---------------------------

_MARKS = pytest.StashKey[dict[str, int]]()
_RECORDER = pytest.StashKey[object]()


def _recorder(config: pytest.Config) -> Any:
    from tether.client._console_report import ConsoleRecorder

    recorder = config.stash.get(_RECORDER, None)
    if recorder is None:
        recorder = config.stash[_RECORDER] = ConsoleRecorder(
            config.getoption("tether_console_dir", None) or None
        )
    return recorder


def _unrecorded() -> contextlib.AbstractContextManager[None]:
    """The console log calls are the harness's, not the test's (``--tether-record``)."""
    from tether.testing import unrecorded

    return unrecorded()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    tree = getattr(item, "funcargs", {}).get("dut")
    if tree is not None:
        with _unrecorded():
            item.stash[_MARKS] = _recorder(item.config).mark(tree)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    tree = getattr(item, "funcargs", {}).get("dut")
    if tree is None:
        return report
    if report.when == "call" and report.failed and _MARKS in item.stash:
        with _unrecorded():
            output = _recorder(item.config).since(tree, item.stash[_MARKS])
        for path, text in output.items():
            report.sections.append((f"Captured stdout tether console {path}", text))
        report._tether_console = sorted(output.items())  # type: ignore[attr-defined]
        report._tether_config = item.config  # type: ignore[attr-defined]
    if report.when in ("call", "teardown"):  # the session's last teardown closes the tree
        with _unrecorded():
            _recorder(item.config).save(tree)
    return report


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Put a failing test's console output in its JUnit ``system-out`` as well."""
    output = getattr(report, "_tether_console", None)
    if not output:
        return
    try:
        from xml.etree import ElementTree

        from _pytest.junitxml import xml_key
    except ImportError:
        return
    config = getattr(report, "_tether_config", None)
    xml = config.stash.get(xml_key, None) if config is not None else None
    if xml is None:
        return
    element = ElementTree.Element("system-out")
    element.text = "".join(f"--- tether console {path} ---\n{text}\n" for path, text in output)
    xml.node_reporter(report).append(element)
