"""tether: drive lab hardware from tests, locally or remotely.

The public surface is re-exported here; everything else lives in private modules.
"""

from tether import errors
from tether.client import connect, lease
from tether.driver import Driver, DriverClient, Interface, export, export_stream

__all__ = [
    "Driver",
    "DriverClient",
    "Interface",
    "connect",
    "errors",
    "export",
    "export_stream",
    "lease",
]
__version__ = "0.1.0"
