"""`tether driver`: the drivers installed here (entry-point group ``tether.drivers``)."""

from __future__ import annotations

import json

import click

__all__ = ["driver"]


@click.group()
def driver() -> None:
    """Drivers installed on this machine."""


@driver.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_drivers(as_json: bool) -> None:
    """List registered drivers with their interfaces and methods.

    A driver that cannot be loaded (missing module, import error) is listed with the error.
    """
    from tether.drivers import discover_drivers
    from tether.extras import install_line, missing_extra

    entries = discover_drivers()
    if as_json:
        click.echo(json.dumps([entry.describe() for entry in entries], indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="tether drivers (entry-point group tether.drivers)")
    table.add_column("Driver", style="bold", no_wrap=True)
    table.add_column("Interface", no_wrap=True)
    table.add_column("Methods", overflow="fold")
    table.add_column("Package", overflow="fold")
    for entry in entries:
        if entry.driver is None:
            error = f"[red]{escape(entry.error or '')}[/red]"
            table.add_row(entry.name, "[red]error[/red]", error, entry.distribution or "")
            continue
        interfaces = ", ".join(f"{i['name']} v{i['version']}" for i in entry.interfaces) or "-"
        methods = ", ".join(sorted(entry.driver.exported())) or "-"
        missing = missing_extra(entry.driver)
        if missing is not None:
            methods += f" [yellow](needs {escape(install_line(missing.extra))})[/yellow]"
        table.add_row(entry.name, interfaces, methods, entry.distribution or "")
    Console().print(table)
    broken = sum(1 for entry in entries if entry.driver is None)
    if broken:
        click.echo(f"{broken} driver(s) could not be loaded", err=True)
