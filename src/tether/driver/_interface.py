"""``Interface``: the contract between a driver and its client.

An interface is a small ABC naming an interface id, a version and the dotted path of its
client class. Breaking changes get a new class (``PowerInterfaceV2``) with ``version = 2``
side by side with the old one, so old clients keep working against exporters that offer both.
"""

from __future__ import annotations

import inspect
from abc import ABC
from typing import ClassVar

__all__ = ["Interface", "interface_methods", "interfaces_of"]


class Interface(ABC):  # noqa: B024 - an interface may declare no abstract method yet
    """Base class of driver interfaces.

    Class attributes:
        name: interface id reported to clients, e.g. ``"tether.power"``.
        version: bumped with a new class on a breaking change.
        client: dotted path of the :class:`~tether.DriverClient` subclass for this interface.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    client: ClassVar[str] = ""


def interfaces_of(cls: type) -> list[type[Interface]]:
    """The concrete interfaces ``cls`` implements, most derived first.

    Driver classes are never interfaces themselves, even with a config field called ``name``.
    """
    return [
        base
        for base in cls.__mro__
        if isinstance(base, type)
        and issubclass(base, Interface)
        and base is not Interface
        and "name" in base.__dict__
        and not getattr(base, "__tether_driver__", False)
    ]


def interface_methods(interface: type[Interface]) -> frozenset[str]:
    """Public methods an interface declares (including inherited interface methods)."""
    names: set[str] = set()
    for base in interface.__mro__:
        if base in (Interface, ABC, object) or not issubclass(base, Interface):
            continue
        for name, value in vars(base).items():
            if not name.startswith("_") and inspect.isfunction(value):
                names.add(name)
    return frozenset(names)
