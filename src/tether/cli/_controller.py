"""`tether controller serve` and `tether admin ...` (identities and access policies).

Admin commands work on the controller's database directly (``--database`` or
``$TETHER_DATABASE``), with or without a controller serving it. `lease` and `exporters` are
placeholders for their owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tether.errors import TetherError

from ._safe import plain, printable
from ._text import print_json, print_table

if TYPE_CHECKING:
    from tether.controller import Admin

__all__ = ["admin", "controller", "exporters", "lease"]

_DATABASE_HELP = (
    "controller database: sqlite:///path (default ~/.local/state/tether/controller.db) "
    "or postgresql://user@host/db; also $TETHER_DATABASE"
)


def _json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")(fn)


def _database_option(fn: Any) -> Any:
    return click.option("--database", envvar="TETHER_DATABASE", default=None, help=_DATABASE_HELP)(
        fn
    )


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except TetherError as exc:
        raise click.ClickException(printable(exc)) from exc


def _url(database: str | None) -> str:
    from tether.controller import default_database_url

    return database or default_database_url()


@click.group()
def controller() -> None:
    """Run the lab controller (leases, exporters, access)."""
    _need_controller_extra()


def _need_controller_extra() -> None:
    """Name the ``pip install`` line at once when the controller's libraries are absent."""
    from tether.extras import MissingExtra, check_extra

    try:
        check_extra("controller", "the tether controller")
    except MissingExtra as exc:
        raise click.ClickException(str(exc)) from None


@controller.command()
@click.option(
    "--listen",
    default="https://127.0.0.1:8443",
    show_default=True,
    help="https://HOST:PORT (port 0 picks a free one), or http:// for a plain socket",
)
@_database_option
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--heartbeat-interval", type=float, default=10.0, show_default=True)
@click.option("--heartbeat-timeout", type=float, default=30.0, show_default=True)
@click.option("--relay-listen", default=None, help="run the router relay too: tls://HOST:PORT")
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="KEY=VALUE",
    help="change one limit (repeat), e.g. max_pending_per_client=20; see docs/security.md",
)
def serve(
    listen: str,
    database: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    relay_listen: str | None,
    limits: tuple[str, ...],
) -> None:
    """Serve the HTTP API; prints 'tether controller ready at URL' once listening.

    The database is migrated at start. Stop with SIGINT or SIGTERM.
    """
    from tether.controller import Limits, ServeOptions
    from tether.controller import serve as run

    with _errors():
        parsed_limits = Limits.parse(limits)
    options = ServeOptions(
        limits=parsed_limits,
        listen=listen,
        database=_url(database),
        tls_cert=tls_cert,
        tls_key=tls_key,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        relay_listen=relay_listen,
    )

    def ready(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    with _errors():
        try:
            import uvloop

            runner: Any = uvloop.run
        except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
            runner = asyncio.run
        runner(run(options, ready=ready))


# -- admin ------------------------------------------------------------------------------------


@click.group()
@_database_option
@click.pass_context
def admin(ctx: click.Context, database: str | None) -> None:
    """Manage identities and access policies, directly on the controller database."""
    _need_controller_extra()
    ctx.obj = _url(database)


def _admin(ctx: click.Context) -> Admin:
    from tether.controller import Admin, Database

    db = Database(ctx.obj)
    db.migrate()
    return Admin(db)


_endpoint = click.option(
    "--endpoint",
    default="https://127.0.0.1:8443",
    show_default=True,
    help="controller URL written into the printed config",
)
_ca = click.option(
    "--ca",
    default=None,
    help="CA file written into the printed config (as an absolute path)",
)


def _absolute(path: str | Path | None) -> str | None:
    """A path for a printed config: absolute, since the config is read from elsewhere (a
    relative path there is taken from the config file's directory, not from here)."""
    return None if path is None else str(Path(path).expanduser().resolve())


@admin.command("create-client")
@click.argument("name")
@_endpoint
@_ca
@click.pass_context
def create_client(ctx: click.Context, name: str, endpoint: str, ca: str | None) -> None:
    """Make a client; prints its config with the token (shown only once)."""
    with _errors():
        click.echo(_admin(ctx).create_client(name).config(endpoint, _absolute(ca)), nl=False)


@admin.command("create-exporter")
@click.argument("name")
@click.option("--label", "labels", multiple=True, help="KEY=VALUE (repeat)")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the token here (0600) and reference it instead of printing it",
)
@_endpoint
@_ca
@click.pass_context
def create_exporter(
    ctx: click.Context,
    name: str,
    labels: tuple[str, ...],
    token_file: Path | None,
    endpoint: str,
    ca: str | None,
) -> None:
    """Make an exporter; prints its config (name, labels, controller section with the token)."""
    parsed: dict[str, str] = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--label")
        parsed[key] = value
    with _errors():
        new = _admin(ctx).create_exporter(name, parsed)
        config = new.config(endpoint, _absolute(ca))
        if token_file is not None:
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(new.token + "\n")
            written = _absolute(token_file)
            config = config.replace(f"token: {new.token}", f"token_file: {written}")
        click.echo(config, nl=False)


@admin.command("rotate")
@click.argument("kind", type=click.Choice(["client", "exporter"]))
@click.argument("name")
@_endpoint
@_ca
@click.pass_context
def rotate(ctx: click.Context, kind: str, name: str, endpoint: str, ca: str | None) -> None:
    """Give a client or exporter a new token (the old one stops working)."""
    with _errors():
        click.echo(_admin(ctx).rotate(kind, name).config(endpoint, ca), nl=False)


@admin.command("delete")
@click.argument("kind", type=click.Choice(["client", "exporter"]))
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, kind: str, name: str) -> None:
    """Delete a client or exporter; its live leases end."""
    with _errors():
        changes = _admin(ctx).delete(kind, name)
        click.echo(f"deleted {kind} {name} ({len(changes.leases)} live lease(s) ended)")


@admin.command("list")
@click.argument("kind", type=click.Choice(["client", "exporter", "admin"]))
@_json_option
@click.pass_context
def list_identities(ctx: click.Context, kind: str, as_json: bool) -> None:
    """List clients, exporters or admins."""
    with _errors():
        rows = _admin(ctx).identities(kind)
        if as_json:
            print_json({f"{kind}s": rows})
            return
        for row in rows:
            labels = row.get("labels")
            suffix = " " + ",".join(f"{k}={v}" for k, v in labels.items()) if labels else ""
            click.echo(printable(f"{row['name']}{suffix}", newlines=False))


@admin.group()
def policy() -> None:
    """Access policies: which clients may lease which exporters, priority, maximum length."""


@policy.command("set")
@click.argument("name")
@click.option("--clients", default="*", show_default=True, help="comma-separated names, or *")
@click.option("--selector", default="", help="exporters the clients may lease (empty: all)")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--max-duration", default="8h", show_default=True)
@click.pass_context
def policy_set(
    ctx: click.Context,
    name: str,
    clients: str,
    selector: str,
    priority: int,
    max_duration: str,
) -> None:
    """Create or replace one policy."""
    from tether.controller import make_policy

    with _errors():
        made = make_policy(
            name=name,
            clients=clients,
            selector=selector,
            priority=priority,
            max_duration=max_duration,
        )
        _admin(ctx).set_policy(made)
        click.echo(f"policy {name} set")


@policy.command("delete")
@click.argument("name")
@click.pass_context
def policy_delete(ctx: click.Context, name: str) -> None:
    """Delete one policy."""
    with _errors():
        _admin(ctx).delete_policy(name)
        click.echo(f"policy {name} deleted")


@policy.command("list")
@_json_option
@click.pass_context
def policy_list(ctx: click.Context, as_json: bool) -> None:
    """List policies."""
    with _errors():
        found = _admin(ctx).list_policies()
        if as_json:
            rows = [
                {
                    "name": p.name,
                    "clients": list(p.clients),
                    "selector": str(p.selector),
                    "priority": p.priority,
                    "max_duration": p.max_duration,
                }
                for p in found
            ]
            print_json({"policies": rows})
            return
        for item in found:
            click.echo(
                f"{item.name}: clients={','.join(item.clients)} selector='{item.selector}' "
                f"priority={item.priority} max_duration={item.max_duration:g}s"
            )


@policy.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def policy_apply(ctx: click.Context, file: Path) -> None:
    """Replace every policy with those in FILE (YAML, see docs/controller.md)."""
    from tether.controller import load_policy_file

    with _errors():
        loaded = load_policy_file(file)
        _admin(ctx).replace_policies(loaded)
        click.echo(f"{len(loaded)} policies applied from {file}")


# -- placeholders for the client side's owner ---------------------------------------------------


# -- lease and exporters (the client side: tether.client._lease) -------------------------------


def _client_options(fn: Any) -> Any:
    """--controller/--token/--ca/--config (else TETHER_* env vars, else the client file)."""
    for option in reversed(
        [
            click.option("--controller", help="controller URL; also $TETHER_CONTROLLER"),
            click.option("--token", help="client token; also $TETHER_TOKEN"),
            click.option("--ca", help="CA of the controller's certificate; also $TETHER_CA"),
            click.option(
                "--config",
                "client_config",
                help="client config (as printed by `tether admin create-client`); also "
                "$TETHER_CONFIG; default ~/.config/tether/client.yaml",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@contextlib.contextmanager
def _lease_api(**options: Any) -> Iterator[Any]:
    from tether.client import LeaseClient, load_client_settings

    if options.get("token"):
        click.echo(
            "warning: a token on the command line is visible to every user (ps); "
            "use $TETHER_TOKEN or the client config file",
            err=True,
        )
    with _errors():
        settings = load_client_settings(
            options["controller"], options["token"], options["ca"], options["client_config"]
        )
        with LeaseClient(settings) as api:
            yield api


def _print_leases(leases: list[Any]) -> None:
    rows: list[list[object]] = [
        [
            each.id,
            each.state,
            ", ".join(each.exporters),
            each.position,
            each.ends_at,
            each.reason or each.waiting,
        ]
        for each in leases
    ]
    print_table(["lease", "state", "exporters", "queue", "ends at", "reason"], rows)


@click.group()
def lease() -> None:
    """Acquire, list, extend and release leases on the controller."""


@lease.command("acquire")
@click.option("--selector", "-s", help="labels the exporter must match, e.g. board=rpi4")
@click.option("--exporter", "-e", "exporter_name", help="lease this exporter by name instead")
@click.option(
    "--role",
    "role_items",
    multiple=True,
    metavar="NAME=SELECTOR",
    help="one exporter per role, granted together (repeatable): --role dut=board=rpi4",
)
@click.option("--duration", "-d", default="30m", show_default=True, help="30m, 1h30m, seconds")
@_client_options
def lease_acquire(
    selector: str | None,
    exporter_name: str | None,
    role_items: tuple[str, ...],
    duration: str,
    **options: Any,
) -> None:
    """Request a lease and wait for it (showing the queue position); prints it once ready.

    The lease stays until `tether lease release ID` or its end. Ctrl-C while waiting leaves
    the queue.
    """
    if sum((selector is not None, exporter_name is not None, bool(role_items))) != 1:
        raise click.UsageError(
            "give exactly one of --selector and --exporter (or --role NAME=SELECTOR, repeatable)"
        )
    from tether.client import parse_roles

    try:
        roles = parse_roles(role_items) if role_items else None
    except TetherError as exc:
        raise click.UsageError(str(exc)) from None
    with _lease_api(**options) as api, _errors():
        selectors = list(roles.values()) if roles else None
        granted = _acquire(api, selector, exporter_name, duration, selectors)
        _print_leases([granted])
        for role, name in zip(roles or (), granted.exporters, strict=False):
            click.echo(printable(f"{role}: {name}"))


def _acquire(
    api: Any,
    selector: str | None,
    exporter: str | None,
    duration: str,
    selectors: list[str] | None = None,
) -> Any:
    """Request and wait, on a worker thread, so that Ctrl-C always withdraws the request.

    Python's SIGINT raises KeyboardInterrupt wherever the main thread is; inside the HTTP
    client's pool (a lock just taken, a connection half-read) the release that follows,
    through the same client, can block for good, and a SIGINT before the controller answered
    the request left it queued. So SIGINT only sets a flag, the main thread only waits, and on
    Ctrl-C it releases the request through a fresh client (waiting, bounded, for the
    request's id when the SIGINT came before the answer) and exits 130, leaving the worker's
    poll behind.
    """
    from rich.console import Console

    from tether.client import LeaseClient

    console = Console(stderr=True)
    requested = threading.Event()
    done = threading.Event()
    outcome: dict[str, Any] = {}
    with console.status(plain("requesting a lease")) as status:

        def show(waiting: Any) -> None:
            line = printable(
                f"waiting for lease {waiting.id}: position {waiting.position or '?'}"
                + (f"; {waiting.waiting}" if waiting.waiting else ""),
                newlines=False,
            )
            status.update(plain(line))
            if not console.is_terminal:  # CI logs: one line per position
                click.echo(line, err=True)

        def work() -> None:
            try:
                outcome["pending"] = api.request(
                    selector, duration, exporter=exporter, selectors=selectors
                )
                requested.set()
                outcome["granted"] = api.wait_ready(outcome["pending"], show)
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                requested.set()
                done.set()

        worker = threading.Thread(target=work, name="tether-lease-acquire", daemon=True)
        interrupted = threading.Event()
        # A handler that only sets a flag: no KeyboardInterrupt lands anywhere (a second
        # Ctrl-C included), and the main thread notices within a fraction of a second.
        previous = signal.signal(signal.SIGINT, lambda _signum, _frame: interrupted.set())
        try:
            worker.start()
            while not done.wait(0.2) and not interrupted.is_set():
                pass
        finally:
            if not interrupted.is_set():
                signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        requested.wait(15)
        pending = outcome.get("pending")
        if pending is not None:
            with contextlib.suppress(TetherError), LeaseClient(api.settings) as fresh:
                fresh.release(pending.id)
            click.echo(f"lease {pending.id} withdrawn from the queue", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # the worker may still sit in its poll
    error = outcome.get("error")
    if error is not None:
        pending = outcome.get("pending")
        if pending is not None:
            with contextlib.suppress(TetherError), LeaseClient(api.settings) as fresh:
                fresh.release(pending.id)
        raise error
    return outcome["granted"]


@lease.command("list")
@click.option("--all", "show_all", is_flag=True, help="include recently ended leases")
@_json_option
@_client_options
def lease_list(show_all: bool, as_json: bool, **options: Any) -> None:
    """Your leases."""
    with _lease_api(**options) as api, _errors():
        found = api.leases(all=show_all)
    if as_json:
        print_json({"leases": [each.raw for each in found]})
    else:
        _print_leases(found)


@lease.command("release")
@click.argument("lease_id")
@_client_options
def lease_release(lease_id: str, **options: Any) -> None:
    """End a lease (or leave the queue)."""
    with _lease_api(**options) as api, _errors():
        ended = api.release(lease_id)
    click.echo(printable(f"lease {ended.id}: {ended.state}"))


@lease.command("extend")
@click.argument("lease_id")
@click.argument("duration")
@_client_options
def lease_extend(lease_id: str, duration: str, **options: Any) -> None:
    """Move a lease's end later by DURATION (10m, 1h, seconds)."""
    with _lease_api(**options) as api, _errors():
        extended = api.extend(lease_id, duration)
    click.echo(printable(f"lease {extended.id}: ends at {extended.ends_at}"))


@click.command()
@click.option("--selector", "-s", help="only exporters matching these labels")
@_json_option
@_client_options
def exporters(selector: str | None, as_json: bool, **options: Any) -> None:
    """The lab's exporters: labels, status (available, leased, hook, offline, unhealthy,
    maintenance), who holds each, and why one is out of the pool."""
    with _lease_api(**options) as api, _errors():
        found = api.exporters(selector)
    if as_json:
        print_json({"exporters": found})
        return
    rows: list[list[object]] = []
    for each in found:
        labels = ",".join(f"{k}={v}" for k, v in sorted((each.get("labels") or {}).items()))
        note = each.get("maintenance") or each.get("health") or ""
        fields = ("name", "status", "holder", "lease", "last_seen")
        name, status, holder, lease_id, seen = (each.get(key) for key in fields)
        rows.append([name, labels, status, holder, lease_id, seen, str(note)[:80]])
    print_table(["exporter", "labels", "status", "holder", "lease", "last seen", "note"], rows)
