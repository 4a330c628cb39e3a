"""Lab-wide views and operations: `tether queue`, `tether admin maintenance|audit|create-admin`.

Listings print a table on a terminal and take ``--json`` (one JSON document, full ids) for
scripts; remote strings are shown as plain text (:mod:`._text`).
"""

from __future__ import annotations

import datetime
import getpass
from typing import Any

import click

from ._controller import _admin, _client_options, _errors, _lease_api, admin
from ._text import print_json, print_table

__all__ = ["queue"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON (full ids) instead of a table")
@click.option("--limit", type=int, default=1000, show_default=True, help="show the first N")
@_client_options
def queue(as_json: bool, limit: int, **options: Any) -> None:
    """The whole lab's queue: waiting requests in the order they will be served."""
    with _lease_api(**options) as api, _errors():
        waiting, total = api.queue(limit)
    if as_json:
        print_json({"total": total, "leases": [lease.raw for lease in waiting]})
        return
    rows: list[list[object]] = []
    for lease in waiting:
        wants = "; ".join(
            r.get("exporter") or r.get("selector") or "any" for r in lease.raw.get("requests", [])
        )
        rows.append(
            [
                lease.position,
                lease.id,
                lease.client,
                lease.raw.get("priority"),
                wants,
                lease.raw.get("created_at"),
                lease.waiting or "",
            ]
        )
    headers = ["#", "lease", "client", "priority", "wants", "waiting since", "why waiting"]
    print_table(headers, rows)
    if total > len(waiting):
        click.echo(f"({len(waiting)} of {total} shown; --limit for more)", err=True)


@admin.command("create-admin")
@click.argument("name")
@click.pass_context
def create_admin(ctx: click.Context, name: str) -> None:
    """Make an admin identity (dashboard admin actions, the admin API); prints its token once."""
    with _errors():
        new = _admin(ctx).create_admin(name)
    click.echo(f"# tether admin token for {name} (shown only once; stored hashed)")
    click.echo(new.token)


@admin.command("maintenance")
@click.argument("exporter")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--reason", default=None, help="why (shown everywhere the exporter is)")
@click.option("--end-lease", is_flag=True, help="end its live lease now (default: let it finish)")
@click.pass_context
def maintenance(
    ctx: click.Context, exporter: str, state: str, reason: str | None, end_lease: bool
) -> None:
    """Take EXPORTER out of the pool (on) or put it back (off), without deleting it."""
    from tether.controller import Store, acting

    who = f"cli:{getpass.getuser()}"
    why = (reason or f"set by {who}") if state == "on" else None
    with _errors():
        tool = _admin(ctx)
        with acting(who, None):
            ended, _changes = Store(tool.database).set_maintenance(
                exporter, why, end_lease=end_lease
            )
    if state == "on":
        suffix = f"; ended lease(s) {', '.join(ended)}" if ended else ""
        click.echo(f"{exporter}: maintenance ({why}){suffix}")
    else:
        click.echo(f"{exporter}: back in the pool")


@admin.command("audit")
@click.option("--since", default=None, help="from this long ago (1h, 30m, 7d) or an ISO time")
@click.option("--action", default=None, help="only this action (grant, release, ...)")
@click.option("--limit", type=int, default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.pass_context
def audit(
    ctx: click.Context, since: str | None, action: str | None, limit: int, as_json: bool
) -> None:
    """Who did what, when, from where: grants, releases, expiries, maintenance, identities,
    policies, failed authentications."""
    with _errors():
        entries = _admin(ctx).audit(since=_since(since), action=action, limit=limit)
    if as_json:
        print_json({"entries": [entry.to_json() for entry in entries]})
        return
    rows: list[list[object]] = []
    for entry in entries:
        data = entry.to_json()
        details = " ".join(f"{k}={v}" for k, v in sorted(entry.details.items()))
        rows.append([data["at"], entry.actor, entry.action, entry.target, entry.address, details])
    print_table(["when", "who", "what", "target", "from", "details"], rows)


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    from tether.controller import parse_duration

    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        days = text.endswith("d") and text[:-1].isdigit()
        seconds = int(text[:-1]) * 86400.0 if days else parse_duration(text, what="--since")
        return datetime.datetime.now(datetime.UTC).timestamp() - seconds
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()
