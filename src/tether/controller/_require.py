"""Imported first by the package: without the ``controller`` extra, say how to install it."""

from tether.extras import check_extra

__all__: list[str] = []

check_extra("controller", "tether.controller")
