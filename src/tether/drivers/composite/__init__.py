"""Composite: group drivers under one node (``tether.drivers.composite.Composite`` in configs)."""

from tether.driver import Composite

__all__ = ["Composite"]
