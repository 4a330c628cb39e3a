"""Built-in drivers. Each subpackage holds an interface, drivers and a client.

Drivers (built-in and third-party) register under the entry-point group ``tether.drivers``;
:func:`discover_drivers` lists them (``tether driver list``).
"""

from ._discovery import ENTRY_POINT_GROUP, DriverEntry, discover_drivers

__all__ = ["ENTRY_POINT_GROUP", "DriverEntry", "discover_drivers"]
