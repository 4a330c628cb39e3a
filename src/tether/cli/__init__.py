"""The ``tether`` command: one click group; each topic lives in its own module.

Subcommand modules import their heavy dependencies lazily, so ``tether --help`` stays fast.
"""

from __future__ import annotations

import click

from ._certs import certs
from ._controller import admin, controller, exporters, lease
from ._drivers import driver
from ._exporter import exporter
from ._lab import queue
from ._mcp import mcp
from ._shell import shell

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tether")
def main() -> None:
    """tether: drive lab hardware from tests, locally or across the network."""


for _command in (admin, certs, controller, driver, exporter, exporters, lease, queue, shell):
    main.add_command(_command)
main.add_command(mcp)
