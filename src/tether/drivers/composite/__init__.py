"""Composite: group drivers under one node."""

from ._driver import Composite

__all__ = ["Composite"]
