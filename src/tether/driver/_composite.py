"""``Composite``: a driver that only groups its children.

It lives in the SDK (not with the built-in drivers) because the exporter builds every tree's
root from it.
"""

from __future__ import annotations

from ._driver import Driver

__all__ = ["Composite"]


class Composite(Driver):
    """A node that only groups its children (``Composite(children={...})``)."""
