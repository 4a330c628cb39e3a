"""`tether certs`: TLS material for a lab (a private CA, a server and a client certificate)."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["certs"]


@click.group()
def certs() -> None:
    """TLS certificates for exporters and clients."""


@certs.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--server-name",
    "server_names",
    multiple=True,
    metavar="NAME",
    help="DNS name or IP address the server certificate is valid for (repeatable; "
    "default: localhost and 127.0.0.1).",
)
@click.option("--days", default=825, show_default=True, help="Validity of every certificate.")
@click.option("--client-name", default="tether-client", show_default=True)
@click.option("--force", is_flag=True, help="Replace existing files.")
def init(
    directory: Path, server_names: tuple[str, ...], days: int, client_name: str, force: bool
) -> None:
    """Write a lab CA and a server and client certificate signed by it into DIRECTORY."""
    from tether.errors import ConfigError
    from tether.security import init_lab_certs

    try:
        written = init_lab_certs(
            directory,
            server_names=server_names or ("localhost", "127.0.0.1"),
            days=days,
            client_name=client_name,
            overwrite=force,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = [
        ("CA certificate", written.ca, "give to clients (--ca) and to exporters (tls.ca)"),
        ("CA key", written.ca_key, "keep offline: it signs new certificates"),
        ("server certificate", written.server_cert, "exporter config tls.cert"),
        ("server key", written.server_key, "exporter config tls.key"),
        ("client certificate", written.client_cert, "client --cert (mutual TLS)"),
        ("client key", written.client_key, "client --key"),
    ]
    for what, path, use in rows:
        click.echo(f"wrote {path}  ({what}: {use})")
