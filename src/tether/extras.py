"""Optional extras: libraries an install may leave out, and the one way to say which is missing.

tether's core installs only what every host needs. A driver whose library is an extra
(``tether[snmp]``, ``tether[modbus]``, ...) declares it with :func:`requires_extra`; its module
imports the library only when the driver runs, so ``tether.drivers.power`` imports on a host
without pysnmp. ``tether exporter check`` asks :func:`missing_extra` of every configured class
and reports the exact ``pip install`` line; a driver started anyway raises the same
:class:`MissingExtra` from :func:`import_extra`. ``tether.controller`` checks its extra on
import.

Example::

    @requires_extra("snmp")
    class SnmpPower(PowerInterface, Driver):
        async def on(self) -> None:
            hlapi = import_extra("snmp", "pysnmp.hlapi.v3arch.asyncio")
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from tether.errors import ConfigError

__all__ = [
    "EXTRAS",
    "MissingExtra",
    "check_extra",
    "import_extra",
    "install_line",
    "missing_extra",
    "public_name",
    "requires_extra",
]

#: Each extra and the top-level modules that must be installed for it (pyproject's extras).
EXTRAS: dict[str, tuple[str, ...]] = {
    "ssh": ("asyncssh",),
    "snmp": ("pysnmp",),
    "modbus": ("pymodbus",),
    "ipmi": ("pyghmi",),
    "usbsdmux": ("usbsdmux",),
    "metrics": ("prometheus_client",),
    # jinja2 and prometheus-client come with the controller's extra too, but the API runs
    # without them (no dashboard, /metrics answers 501 with the pip line).
    "controller": ("fastapi", "sqlalchemy", "alembic", "psycopg", "uvicorn"),
}

_ATTRIBUTE = "__tether_extra__"  # a dunder: never collides with a driver's config field

T = TypeVar("T")


class MissingExtra(ConfigError, ImportError):
    """A library of an optional extra is not installed; the message has the ``pip`` line.

    Attributes:
        extra: the extra's name (``snmp``).
        module: the module that failed to import.
    """

    def __init__(self, message: str, *, extra: str, module: str) -> None:
        super().__init__(message)
        self.extra = extra
        self.module = module


def install_line(extra: str) -> str:
    """The command that installs ``extra``: ``pip install 'tether[snmp]'``."""
    return f"pip install 'tether[{extra}]'"


def _message(who: str, extra: str, module: str) -> str:
    return (
        f"{who} needs the {extra!r} extra (module {module!r} is not installed): "
        f"{install_line(extra)}"
    )


def _modules(extra: str) -> tuple[str, ...]:
    try:
        return EXTRAS[extra]
    except KeyError:
        raise ValueError(f"unknown extra {extra!r} (known: {', '.join(EXTRAS)})") from None


def check_extra(extra: str, who: str) -> None:
    """Raise :class:`MissingExtra` naming ``who`` if one of ``extra``'s modules is not installed.

    The modules are looked up, not imported: a check is as cheap for a web framework as for a
    small library, and each is imported by what uses it, when it does.
    """
    for module in _modules(extra):
        if not _installed(module):
            raise MissingExtra(_message(who, extra, module), extra=extra, module=module)


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: blocked (as the tests hide a library)
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def import_extra(extra: str, module: str, who: str | None = None) -> ModuleType:
    """Import ``module`` of ``extra`` (at run time, in the driver that needs it).

    Raises:
        MissingExtra: it is not installed; the message says ``pip install 'tether[EXTRA]'``.
    """
    _modules(extra)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise MissingExtra(
            _message(who or module, extra, missing), extra=extra, module=missing
        ) from None


def requires_extra(extra: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: the driver needs ``extra`` (checked by ``tether exporter check``)."""
    _modules(extra)

    def mark(cls: type[T]) -> type[T]:
        setattr(cls, _ATTRIBUTE, extra)
        return cls

    return mark


def public_name(cls: Any) -> str:
    """``tether.drivers.power.SnmpPower`` for a class defined in ``..power._snmp``."""
    parts = []
    for part in str(cls.__module__).split("."):
        if part.startswith("_"):
            break
        parts.append(part)
    return ".".join([*parts, cls.__qualname__])


def missing_extra(cls: Any) -> MissingExtra | None:
    """The :class:`MissingExtra` for ``cls`` (a driver class) if its extra is not installed."""
    extra = getattr(cls, _ATTRIBUTE, None)
    if not isinstance(extra, str):
        return None
    try:
        check_extra(extra, public_name(cls))
    except MissingExtra as exc:
        return exc
    return None
