from __future__ import annotations

from tether.driver import Driver

__all__ = ["Composite"]


class Composite(Driver):
    """A node that only groups its children (``Composite(children={...})``)."""
