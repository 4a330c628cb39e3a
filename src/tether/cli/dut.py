"""The ``dut`` command: drives the device of the current shell (``TETHER_HOST``).

``dut`` connects to the address in ``TETHER_HOST`` (set by ``tether shell``), builds the
client tree from the exporter's report and generates its commands from it
(:func:`build_dut`); :func:`run` executes one command line against any client tree, so tests
drive it in-process.

``dut --role NAME ...`` (inside ``tether shell --role NAME=SELECTOR ...``) drives that role's
device: its address is ``TETHER_HOST_<NAME>``.

Environment:
    TETHER_HOST: the exporter or session address (``unix:///...``, ``tcp://...``, ``tls://...``).
    TETHER_ROLES, TETHER_HOST_<ROLE>: a shell's roles (comma-separated) and each one's address.
    TETHER_TOKEN: the bearer token, when the exporter wants one.
    TETHER_CA, TETHER_CERT, TETHER_KEY: TLS files (CA to trust; client certificate and key).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from tether.driver import DriverClient

from ._dut_commands import NODE_META_KEY, build_dut

__all__ = ["ALLOW_VAR", "ENV_VARS", "NODE_META_KEY", "build_dut", "connect_from_env", "main", "run"]

#: Environment variables ``dut`` reads (``tether shell`` sets them), by connect() keyword.
ENV_VARS = {
    "url": "TETHER_HOST",
    "token": "TETHER_TOKEN",
    "ca": "TETHER_CA",
    "cert": "TETHER_CERT",
    "key": "TETHER_KEY",
}

#: Extra client-class globs ``dut`` may import (comma-separated), beyond ``tether.*``.
ALLOW_VAR = "TETHER_CLIENT_ALLOW"

_NO_HOST = (
    "dut: TETHER_HOST is not set. Run dut inside `tether shell --exporter-config FILE` or "
    "`tether shell --connect URL`, or set TETHER_HOST to an exporter address."
)


def run(root: DriverClient, args: Sequence[str]) -> int:
    """Run one ``dut`` command line against a client tree; return the exit status.

    0 success; 1 the call failed (driver error, connection lost); 2 usage error (unknown node
    or method, bad argument); 130 interrupted.
    """
    command = build_dut(root)
    try:
        result = command.main(list(args), prog_name="dut", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


def connect_from_env(environ: dict[str, str] | None = None) -> Any:
    """Connect to ``TETHER_HOST`` with the credentials in the environment.

    Returns:
        The client tree's root (it has ``close()``).

    Raises:
        ConfigError: TETHER_HOST is missing or malformed.
        ConnectFailed: the exporter cannot be reached or rejected us.
        LeaseEnded, SessionLost: (inside ``tether shell``) the lease or the session is over.
    """
    from tether.client import client_policy, connect
    from tether.errors import ConfigError

    env = os.environ if environ is None else environ
    url = env.get(ENV_VARS["url"])
    if not url:
        raise ConfigError(_NO_HOST)
    # connect() reads TETHER_CLIENT_ALLOW from os.environ itself; a given mapping is passed on.
    allow = [] if environ is None else client_policy(environ=environ).allow
    return connect(
        url,
        env.get(ENV_VARS["token"]) or None,
        ca=env.get(ENV_VARS["ca"]) or None,
        cert=env.get(ENV_VARS["cert"]) or None,
        key=env.get(ENV_VARS["key"]) or None,
        allow=allow,
    )


def _take_role(args: list[str]) -> tuple[str | None, list[str]]:
    """Split a leading ``--role NAME`` / ``--role=NAME`` off the command line."""
    if args and args[0].startswith("--role="):
        return args[0].removeprefix("--role="), args[1:]
    if args and args[0] == "--role":
        if len(args) < 2:
            click.echo("dut: --role needs a role name", err=True)
            sys.exit(2)
        return args[1], args[2:]
    return None, args


def _role_environ(role: str) -> dict[str, str]:
    """The environment with ``TETHER_HOST`` pointing at ``role``'s device."""
    from tether.client import ROLES_VAR, role_host_var

    env = dict(os.environ)
    url = env.get(role_host_var(role))
    roles = [r for r in env.get(ROLES_VAR, "").split(",") if r]
    if not url or role not in roles:
        known = ", ".join(roles) if roles else "none: start `tether shell --role NAME=SELECTOR`"
        click.echo(f"dut: no role {role!r} in this shell (roles: {known})", err=True)
        sys.exit(2)
    env[ENV_VARS["url"]] = url
    return env


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of ``dut``."""
    from tether.errors import ConfigError, LeaseEnded, SessionLost, TetherError

    role, args = _take_role(list(sys.argv[1:] if argv is None else argv))
    if role is not None:
        os.environ.update(_role_environ(role))
    if not os.environ.get(ENV_VARS["url"]) and (not args or args[0] in ("-h", "--help")):
        click.echo(_NO_HOST, err=True)
        sys.exit(0 if args else 2)
    try:
        root = connect_from_env()
    except ConfigError as exc:
        click.echo(f"dut: {exc}", err=True)
        sys.exit(2)
    except (LeaseEnded, SessionLost) as exc:
        click.echo(f"dut: {exc}", err=True)  # "the lease L expired at T": nothing to add
        sys.exit(1)
    except TetherError as exc:
        click.echo(f"dut: cannot connect to {os.environ.get('TETHER_HOST')}: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    try:
        status = run(root, args)
    finally:
        close = getattr(root, "close", None)
        if callable(close):
            close()
    sys.exit(status)
