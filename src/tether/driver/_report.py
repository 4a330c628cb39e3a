"""The driver report (what an exporter tells a client) and the client tree built from it.

The report is a flat list of plain dicts, parents before children; nothing in it is code.
Client classes are imported only when their dotted path matches the allow-list; otherwise the
node gets a plain :class:`DriverClient` that still calls methods by name.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import importlib.metadata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tether.errors import InterfaceVersionMismatch

from ._client import CallTarget, DriverClient
from ._driver import Driver
from ._export import known_result_type
from ._node import Node

__all__ = [
    "DEFAULT_ALLOW",
    "DRIVERS_GROUP",
    "ClientPolicy",
    "build_client_tree",
    "build_report",
    "installed_driver_patterns",
]

#: Client classes shipped with tether are always allowed.
DEFAULT_ALLOW: tuple[str, ...] = ("tether.drivers.*", "tether.driver.*")
_BASE_CLIENT = "tether.driver.DriverClient"


def build_report(root: Node) -> list[dict[str, Any]]:
    """Describe every driver-bound node under ``root`` (parents first)."""
    entries: list[dict[str, Any]] = []
    _report_node(root, None, entries)
    return entries


def _report_node(node: Node, parent_uuid: str | None, out: list[dict[str, Any]]) -> None:
    driver = node.driver
    if driver is None:
        for child in node.children.values():
            _report_node(child, parent_uuid, out)
        return
    interfaces = driver.interfaces()
    interface = interfaces[0] if interfaces else None
    out.append(
        {
            "uuid": driver.uuid,
            "name": node.name,
            "parent": parent_uuid,
            "path": node.path,
            "interface": interface.name if interface else "",
            "version": interface.version if interface else 0,
            "client": (interface.client if interface and interface.client else _BASE_CLIENT),
            "methods": {name: m.describe() for name, m in driver.exported().items()},
            "labels": driver.labels,
            "description": driver.description,
            "driver": f"{type(driver).__module__}.{type(driver).__qualname__}",
        }
    )
    for child in node.children.values():
        _report_node(child, driver.uuid, out)


#: The entry-point group third-party drivers register in (``tether.drivers`` discovers it).
DRIVERS_GROUP = "tether.drivers"


@functools.cache
def installed_driver_patterns() -> tuple[str, ...]:
    """Globs for the packages of drivers registered in the ``tether.drivers`` entry points.

    An entry ``"x" = "mylab.relay:Relay"`` trusts ``mylab.relay.*``: that package is installed
    code, not a name from the wire, so its client classes and result types may be imported.
    Reads package metadata only; nothing is imported.
    """
    patterns: set[str] = set()
    for entry in importlib.metadata.entry_points(group=DRIVERS_GROUP):
        module = entry.value.partition(":")[0].strip()
        if module:
            patterns.add(f"{module}.*")
    return tuple(sorted(patterns))


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """Which client classes (and result types) may be imported.

    Allowed are :data:`DEFAULT_ALLOW`, the packages of drivers registered in the
    ``tether.drivers`` entry-point group (``installed``), and ``allow``.
    ``tether.client.client_policy()`` builds one from ``allow=``, ``TETHER_CLIENT_ALLOW``
    and the client config file's ``allow:``.

    Args:
        allow: glob patterns of dotted class paths, added to :data:`DEFAULT_ALLOW`.
        unsafe: import any client class named by the exporter (trusted exporters only).
        installed: trust the packages of registered drivers.
    """

    allow: Sequence[str] = ()
    unsafe: bool = False
    installed: bool = True

    def allows(self, path: str) -> bool:
        if self.unsafe:
            return True
        patterns = (*DEFAULT_ALLOW, *self.allow)
        if self.installed:
            patterns += installed_driver_patterns()
        return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def build_client_tree(
    report: Iterable[dict[str, Any]], target: CallTarget, policy: ClientPolicy
) -> DriverClient:
    """Build the client tree; return the root client.

    Raises:
        InterfaceVersionMismatch: a loaded client class does not speak the offered version.
        ValueError: the report is empty or malformed.
    """
    entries = list(report)
    if not entries:
        raise ValueError("the exporter reported no drivers")
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    for entry in entries:
        by_parent.setdefault(entry.get("parent"), []).append(entry)

    def make(entry: dict[str, Any]) -> DriverClient:
        # A driver shown under two names (a ``ref``) has one uuid but two paths: its children
        # are reported under each path, so pick the ones below this entry's own path.
        path = entry.get("path")
        children = {
            child["name"]: make(child)
            for child in by_parent.get(entry["uuid"], [])
            if path is None or _parent_path(child.get("path")) in (path, None)
        }
        cls, reason = _load_client(entry, policy)
        return cls(
            target=target,
            report=entry,
            children=children,
            unavailable=reason,
            result_types=_result_types(entry, policy),
        )

    roots = by_parent.get(None, [])
    if len(roots) != 1:
        raise ValueError(f"the report must have exactly one root, found {len(roots)}")
    return make(roots[0])


def _result_types(entry: dict[str, Any], policy: ClientPolicy) -> dict[str, type]:
    """The result classes the report names for this node's methods that we may import."""
    found: dict[str, type] = {}
    methods = entry.get("methods")
    if not isinstance(methods, dict):
        return found
    for name, method in methods.items():
        path = method.get("returns") if isinstance(method, dict) else None
        if isinstance(path, str) and policy.allows(path):
            cls = known_result_type(path)
            if cls is not None:
                found[name] = cls
    return found


def _parent_path(path: str | None) -> str | None:
    return None if path is None else path.rpartition(".")[0]


def _load_client(
    entry: dict[str, Any], policy: ClientPolicy
) -> tuple[type[DriverClient], str | None]:
    path = str(entry.get("client") or _BASE_CLIENT)
    if path == _BASE_CLIENT:
        return DriverClient, None
    if not policy.allows(path):
        glob = f"{path.rsplit('.', 1)[0]}.*"
        return DriverClient, (
            f"client class {path} is not allowed, so it was not loaded; "
            f"allow it with TETHER_CLIENT_ALLOW='{glob}' (or allow=['{glob}'] in Python, "
            f"'allow: [\"{glob}\"]' in the client config file), or register its driver "
            f"in the 'tether.drivers' entry-point group"
        )
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        return DriverClient, f"client class {path} is not installed here ({exc})"
    if not (isinstance(cls, type) and issubclass(cls, DriverClient)):
        return DriverClient, f"{path} is not a DriverClient subclass"
    versions = cls.supported_versions()
    offered = entry.get("version")
    if versions is not None and offered not in versions:
        raise InterfaceVersionMismatch(
            f"node {entry.get('path') or entry['name']!r}: the exporter offers "
            f"{entry.get('interface')} version {offered}, but {path} speaks version(s) "
            f"{', '.join(map(str, sorted(versions)))}"
        )
    return cls, None


def node_for(driver: Driver, name: str) -> Node:
    """A root node bound to ``driver`` with its static children attached, recursively."""
    root = Node(name, driver=driver)
    _attach_children(root)
    return root


def _attach_children(node: Node) -> None:
    assert node.driver is not None
    for child_name, child in node.driver.children.items():
        child_node = node.add_child(child_name, driver=child).node
        _attach_children(child_node)
