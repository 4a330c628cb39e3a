"""``dut NODE forward [LOCAL_PORT]``: a byte-stream export as a local TCP port until Ctrl-C."""

from __future__ import annotations

import logging
import threading

import click

from tether.client import PortForward
from tether.driver import DriverClient
from tether.errors import ConfigError

__all__ = ["forward_callback"]


def forward_callback(client: DriverClient, method: str, local_port: int, host: str) -> None:
    """Run a :class:`PortForward` until interrupted; the first line printed names the port."""
    _log_to_stderr()
    try:
        forward = PortForward(client, method, host=host, port=local_port)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        forward.start()
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{local_port}: {exc.strerror}"
        ) from None
    path = client.report.get("path") or client.name
    click.echo(f"Forwarding {host}:{forward.port} -> {path}.{forward.method} (Ctrl-C to stop)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
    finally:
        forward.close()


def _log_to_stderr() -> None:
    logger = logging.getLogger("tether.client.forward")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("dut: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
