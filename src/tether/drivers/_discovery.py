"""Driver discovery through the entry-point group ``tether.drivers``.

Each entry point names a driver class (``"tether.drivers.power.MockPower" =
"tether.drivers.power:MockPower"``). Loading is guarded per entry: a module that is missing or
fails to import, or an object that is not a ``Driver`` subclass, becomes an entry with an
``error`` instead of breaking the whole listing.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from tether.driver import Driver
from tether.extras import missing_extra

__all__ = ["ENTRY_POINT_GROUP", "DriverEntry", "discover_drivers"]

ENTRY_POINT_GROUP = "tether.drivers"


@dataclass(frozen=True)
class DriverEntry:
    """One registered driver, loaded or not.

    Attributes:
        name: the entry point's name (by convention the class's dotted path).
        target: what it points at (``module:Class``).
        distribution: the package that registered it, when known.
        driver: the class, when it loaded.
        error: why it did not load.
    """

    name: str
    target: str
    distribution: str | None = None
    driver: type[Driver] | None = None
    error: str | None = None
    interfaces: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.driver is not None

    def describe(self) -> dict[str, Any]:
        """Plain data for ``tether driver list --json``."""
        data: dict[str, Any] = {
            "name": self.name,
            "target": self.target,
            "distribution": self.distribution,
            "error": self.error,
        }
        if self.driver is not None:
            cls = self.driver
            data["class"] = f"{cls.__module__}.{cls.__qualname__}"
            data["interfaces"] = self.interfaces
            data["methods"] = {
                name: method.describe()["signature"] for name, method in cls.exported().items()
            }
            data["config"] = _config_fields(cls)
            data["doc"] = (inspect.getdoc(cls) or "").split("\n\n")[0]
            missing = missing_extra(cls)
            data["missing_extra"] = str(missing) if missing is not None else None
        return data


def _config_fields(cls: type[Driver]) -> dict[str, dict[str, Any]]:
    fields: dict[str, dict[str, Any]] = {}
    for name, info in cls._config_model.model_fields.items():
        entry: dict[str, Any] = {"type": _type_name(info.annotation)}
        if info.is_required():
            entry["required"] = True
        else:
            default = info.default
            entry["default"] = default if isinstance(default, str | int | float | bool) else None
        fields[name] = entry
    return fields


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _load(entry_point: EntryPoint) -> DriverEntry:
    dist = entry_point.dist.name if entry_point.dist is not None else None
    name, target = entry_point.name, entry_point.value
    try:
        obj = entry_point.load()
    except Exception as exc:  # any import failure is reported, never raised: one bad entry
        return DriverEntry(name, target, dist, error=f"cannot load {target}: {_why(exc)}")
    if not (isinstance(obj, type) and issubclass(obj, Driver)):
        return DriverEntry(
            name, target, dist, error=f"{target} is not a tether Driver subclass (got {obj!r})"
        )
    interfaces = [
        {"name": i.name, "version": i.version, "client": i.client} for i in obj.interfaces()
    ]
    return DriverEntry(name, target, dist, driver=obj, interfaces=interfaces)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError):
        return f"no module named {exc.name!r}"
    return f"{type(exc).__name__}: {exc}"


def discover_drivers(group: str = ENTRY_POINT_GROUP) -> list[DriverEntry]:
    """Every driver registered under ``group``, sorted by name; failures carry ``error``.

    An entry point registered by more than one installed distribution is listed once.
    """
    seen: dict[str, DriverEntry] = {}
    for entry_point in entry_points(group=group):
        if entry_point.name not in seen:
            seen[entry_point.name] = _load(entry_point)
    return sorted(seen.values(), key=lambda entry: entry.name)
