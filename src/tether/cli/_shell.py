"""``tether shell``: a subshell (or one command) where ``dut`` drives a device.

Theory of operation. The shell holds one session open for its whole life and hands its
address to the children through the environment (``TETHER_HOST=...?session=ID``, plus the
token and TLS files), so every ``dut`` run in it joins the *same* session: ``dut power on``
then ``dut power status`` see the same driver tree.

* ``--exporter-config FILE``: the exporter runs on a thread of this process, on a private unix
  socket; the session is opened like a lease (``before_lease`` runs first, ``after_lease`` at
  exit).
* ``--connect URL``: a remote exporter; the shell's own connection keeps the session alive.
* ``--selector LABELS``: a lease through the controller; ``dut`` reaches the leased exporter
  through a private unix socket of this process that forwards to the controller's relay. The
  lease is released when the shell exits.
* ``--role NAME=SELECTOR`` (repeatable): one lease for several exporters; each role gets its
  own session and proxy socket, ``TETHER_HOST_<NAME>`` its address, ``TETHER_ROLES`` the
  names, ``TETHER_HOST`` the first role's; ``dut --role NAME`` drives one.

While the child runs, this process ignores Ctrl-C (the child gets it) and exits with the
child's status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import click

from tether.client import ExpiryWatcher
from tether.errors import TetherError

__all__ = ["SHELL_ENV", "shell"]

#: Set in the subshell to the exporter's name (scripts can tell they run inside one).
SHELL_ENV = "TETHER_SHELL"
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@dataclass(slots=True)
class _Target:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    #: the lease's watcher (--selector, --lease): why it ended, when it did
    watcher: ExpiryWatcher | None = None

    def expired(self) -> str | None:
        """ "the lease ... expired at T" once the lease ended, else None."""
        if self.watcher is None:
            return None
        self.watcher.gone.wait(2.0)  # a relay error usually comes just before the news
        return self.watcher.ended


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "allow_interspersed_args": False}
)
@click.option(
    "--exporter-config",
    "config",
    type=_FILE,
    help="Run the exporter of this YAML file in-process and drive its devices.",
)
@click.option("--connect", "url", metavar="URL", help="Drive a remote exporter (tls://, unix://).")
@click.option(
    "--selector",
    "-l",
    metavar="LABELS",
    help="Lease an exporter matching these labels through the controller (board=rpi4,...).",
)
@click.option(
    "--role",
    "role_items",
    multiple=True,
    metavar="NAME=SELECTOR",
    help="Lease one exporter per role, together (repeatable); `dut --role NAME` drives one.",
)
@click.option(
    "--lease",
    "lease_id",
    metavar="ID",
    help="Use this lease of yours (from `tether lease acquire`); it is not released at exit.",
)
@click.option("--duration", default="30m", show_default=True, help="Lease duration (--selector).")
@click.option(
    "--expiry-warning",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    metavar="MINUTES",
    help="Warn this many minutes before the lease expires (--selector, --lease; 0: never).",
)
@click.option(
    "--client-config",
    type=_FILE,
    help="Client config as printed by `tether admin create-client` (--selector; default: "
    "$TETHER_CONFIG or ~/.config/tether/client.yaml).",
)
@click.option(
    "--token", help="Bearer token of the exporter (--connect) or controller (--selector)."
)
@click.option("--ca", type=_FILE, help="CA certificate to verify the exporter or controller.")
@click.option("--cert", type=_FILE, help="Client certificate (mutual TLS).")
@click.option("--key", type=_FILE, help="Private key of --cert.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def shell(
    config: Path | None,
    url: str | None,
    selector: str | None,
    role_items: tuple[str, ...],
    lease_id: str | None,
    duration: str,
    expiry_warning: float,
    client_config: Path | None,
    token: str | None,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    command: tuple[str, ...],
) -> None:
    """Open a shell where `dut` drives the exporter's devices.

    Without COMMAND, start $SHELL; with `-- COMMAND ARGS...`, run that one command and exit
    with its status. The environment carries TETHER_HOST (the session's address), and
    TETHER_TOKEN, TETHER_CA, TETHER_CERT, TETHER_KEY when needed.

    \b
    Examples:
      tether shell --exporter-config lab.yaml
      tether shell --exporter-config lab.yaml -- dut power on
      tether shell --connect tls://bench-1:7443 --ca ca.pem --token tth_...
      tether shell --selector board=rpi4 --duration 1h -- pytest tests/
      tether shell --lease 0b6f...
    """
    roles = _roles(role_items)
    given = (config, url, selector, roles, lease_id)
    if sum(value is not None for value in given) != 1:
        raise click.UsageError(
            "give exactly one of --exporter-config FILE, --connect URL, --selector LABELS, "
            "--role NAME=SELECTOR... or --lease ID"
        )
    if roles is not None:
        selector = ""  # the checks below treat roles as a lease, like --selector
    if config is not None and (token or ca or cert or key):
        raise click.UsageError("--token, --ca, --cert and --key go with --connect or --selector")
    if token:
        click.echo(
            "warning: a token on the command line is visible to every user (ps); "
            "use $TETHER_TOKEN or a config file",
            err=True,
        )
    leased = selector is not None or lease_id is not None
    if not leased and client_config is not None:
        raise click.UsageError("--client-config goes with --selector or --lease")
    if leased and (cert or key):
        raise click.UsageError("--cert and --key go with --connect")
    if config is not None:
        opened = _local_session(config)
    elif url is not None:
        opened = _remote_session(url, token, ca, cert, key)
    elif roles is not None:
        opened = _role_sessions(roles, duration, token, ca, client_config)
    else:
        opened = _leased_session(
            selector, lease_id, duration, token, ca, client_config, expiry_warning * 60
        )
    target: _Target | None = None
    try:
        with opened as target:
            status = _run_child(command, target)
    except TetherError as exc:
        expired = target.expired() if target is not None else None
        raise click.ClickException(expired or str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{exc.strerror or exc}") from None
    sys.exit(status)


@contextlib.contextmanager
def _local_session(config: Path) -> Iterator[_Target]:
    from tether.exporter import run_exporter_in_thread

    with run_exporter_in_thread(config) as running:
        session = running.loop_thread.run(running.exporter.open_session())
        try:
            env = {"TETHER_HOST": f"{running.url}?session={session.id}"}
            if running.token:
                env["TETHER_TOKEN"] = running.token
            yield _Target(running.exporter.config.name, env)
        finally:
            running.loop_thread.run(running.exporter.close_session(session.id))


@contextlib.contextmanager
def _remote_session(
    url: str, token: str | None, ca: Path | None, cert: Path | None, key: Path | None
) -> Iterator[_Target]:
    from tether.client import connect

    token = token or os.environ.get("TETHER_TOKEN") or None
    ca, cert, key = (
        given if given is not None else (Path(os.environ[var]) if os.environ.get(var) else None)
        for given, var in ((ca, "TETHER_CA"), (cert, "TETHER_CERT"), (key, "TETHER_KEY"))
    )
    with connect(url, token, ca=ca, cert=cert, key=key) as root:
        env = {"TETHER_HOST": root.session_url}
        if token:
            env["TETHER_TOKEN"] = token
        for name, path in (("TETHER_CA", ca), ("TETHER_CERT", cert), ("TETHER_KEY", key)):
            if path is not None:
                env[name] = str(path.resolve())
        exporter = root.session.server_meta.get("exporter")
        yield _Target(str(exporter or root.name), env)


@contextlib.contextmanager
def _leased_session(
    selector: str | None,
    lease_id: str | None,
    duration: str,
    token: str | None,
    ca: Path | None,
    client_config: Path | None,
    warn_before: float,
) -> Iterator[_Target]:
    from tether.client import LeasedSession, open_leased_tree

    with open_leased_tree(
        selector, duration=duration, token=token, ca=ca, config=client_config, lease_id=lease_id
    ) as root:
        assert isinstance(root.session, LeasedSession)
        session = root.session
        lease = session.lease
        exporters = ", ".join(lease.exporters) or root.name
        verb = "using" if lease_id else "leased"
        click.echo(f"tether shell: {verb} {exporters} (lease {lease.id})", err=True)
        watcher = ExpiryWatcher(
            session._settings,
            lease,
            warn_before=warn_before,
            say=lambda text: click.echo(f"tether shell: {text}", err=True),
            on_end=session.give_up,  # `dut` is refused at once with the same words
        )
        try:
            yield _Target(exporters, {"TETHER_HOST": root.session_url}, watcher)
        finally:
            watcher.stop()


def _roles(items: tuple[str, ...]) -> dict[str, str] | None:
    from tether.client import parse_roles

    if not items:
        return None
    try:
        return parse_roles(items)
    except TetherError as exc:
        raise click.UsageError(str(exc)) from None


@contextlib.contextmanager
def _role_sessions(
    roles: dict[str, str],
    duration: str,
    token: str | None,
    ca: Path | None,
    client_config: Path | None,
) -> Iterator[_Target]:
    """One lease for every role; ``TETHER_ROLES`` and ``TETHER_HOST_<ROLE>`` for ``dut``."""
    from tether.client import lease_roles, role_environment

    with lease_roles(
        roles, duration, token=token, ca=ca, config=client_config, relay_proxy=True
    ) as lab:
        pairs = ", ".join(f"{role}={name}" for role, name in lab.exporters.items())
        click.echo(f"tether shell: leased {pairs} (lease {lab.lease.id})", err=True)
        yield _Target(",".join(lab.exporters.values()), role_environment(lab))


def _run_child(command: Sequence[str], target: _Target) -> int:
    env = dict(os.environ)
    for name in ("TETHER_TOKEN", "TETHER_CA", "TETHER_CERT", "TETHER_KEY"):
        env.pop(name, None)  # only what this session needs, never a stale outer value
    for name in [n for n in env if n == "TETHER_ROLES" or n.startswith("TETHER_HOST_")]:
        env.pop(name)  # an outer shell's roles are not this one's
    env.update(target.env)
    env[SHELL_ENV] = target.name
    env["PATH"] = _path_with_dut(env.get("PATH", ""))
    if command:
        argv = list(command)
    else:
        argv = [env.get("SHELL") or "/bin/sh"]
        env["PS1"] = f"[tether {target.name}] {env.get('PS1') or '$ '}"
        click.echo(
            f"tether shell: {target.name} at {target.env['TETHER_HOST']}\n"
            "`dut` lists the devices, `dut NODE METHOD` drives them; exit to leave.",
            err=True,
        )
    previous = signal.signal(signal.SIGINT, _ignore)  # a handler, not SIG_IGN: exec resets it
    try:
        try:
            process = subprocess.Popen(argv, env=env)
        except FileNotFoundError:
            click.echo(f"tether shell: command not found: {argv[0]}", err=True)
            return 127
        except PermissionError:
            click.echo(f"tether shell: permission denied: {argv[0]}", err=True)
            return 126
        status = process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return 128 - status if status < 0 else status


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C belongs to the child while it runs."""


def _path_with_dut(path: str) -> str:
    """Put this installation's scripts first, so the subshell's `dut` is ours."""
    scripts = sysconfig.get_path("scripts")
    if scripts and (Path(scripts) / "dut").exists():
        parts = [p for p in path.split(os.pathsep) if p and p != scripts]
        return os.pathsep.join([scripts, *parts])
    return path
