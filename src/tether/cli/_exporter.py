"""`tether exporter`: serve a config, check one, make a token."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

__all__ = ["exporter"]


@click.group()
def exporter() -> None:
    """Run and configure exporters (the hosts that serve drivers)."""


def _load(path: Path) -> object:
    from tether.errors import ConfigError
    from tether.exporter import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


@exporter.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--listen",
    "-l",
    multiple=True,
    metavar="URL",
    help="Also listen here: tls://HOST:PORT, tcp://HOST:PORT or unix:///PATH (repeatable).",
)
@click.option("--verbose", "-v", is_flag=True, help="Log every driver's messages too.")
def serve(config: Path, listen: tuple[str, ...], verbose: bool) -> None:
    """Serve the drivers of CONFIG until SIGTERM or SIGINT.

    Prints one "listening on URL" line per address, then "ready".
    """
    from tether.errors import AuthenticationFailed, ConfigError, ControllerError
    from tether.exporter import ExporterConfig, run_exporter

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("tether.exporter").setLevel(logging.INFO)
    loaded = _load(config)
    assert isinstance(loaded, ExporterConfig)

    def ready(urls: list[str]) -> None:
        for url in urls:
            click.echo(f"listening on {url}")
        click.echo("ready")
        sys.stdout.flush()

    try:
        status = run_exporter(loaded, listen, on_ready=ready)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except AuthenticationFailed as exc:  # an OSError too: before the next clause
        click.echo(f"error: the controller rejected the exporter's token: {exc}", err=True)
        sys.exit(1)
    except ControllerError as exc:  # e.g. another agent serves this exporter identity
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: cannot listen: {exc}", err=True)
        sys.exit(1)
    sys.exit(status)


@exporter.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
def check(config: Path) -> None:
    """Validate CONFIG (imports every driver class); print every problem found."""
    _load(config)
    click.echo(f"{config}: ok")


@exporter.command()
def token() -> None:
    """Make a new bearer token; put only its hash in the exporter config."""
    from tether.security import generate_token, hash_token

    new = generate_token()
    click.echo(f"token: {new}")
    click.echo(f"hash:  {hash_token(new)}")
