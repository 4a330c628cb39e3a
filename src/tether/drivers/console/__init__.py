"""Drivers that work a device's console: a shell on it, and what a command there returns."""

from ._result import CommandResult

__all__ = ["CommandResult"]
