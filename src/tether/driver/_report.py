"""The driver report (what an exporter tells a client) and the client tree built from it.

The report is a flat list of plain dicts, parents before children; nothing in it is code.
Client classes are imported only when their dotted path matches the allow-list; otherwise the
node gets a plain :class:`DriverClient` that still calls methods by name.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tether.errors import InterfaceVersionMismatch

from ._client import CallTarget, DriverClient
from ._driver import Driver
from ._node import Node

__all__ = ["DEFAULT_ALLOW", "ClientPolicy", "build_client_tree", "build_report"]

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


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """Which client classes may be imported.

    Args:
        allow: glob patterns of dotted class paths, added to :data:`DEFAULT_ALLOW`.
        unsafe: import any client class named by the exporter (trusted exporters only).
    """

    allow: Sequence[str] = ()
    unsafe: bool = False

    def allows(self, path: str) -> bool:
        if self.unsafe:
            return True
        return any(fnmatch.fnmatchcase(path, p) for p in (*DEFAULT_ALLOW, *self.allow))


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
        return cls(target=target, report=entry, children=children, unavailable=reason)

    roots = by_parent.get(None, [])
    if len(roots) != 1:
        raise ValueError(f"the report must have exactly one root, found {len(roots)}")
    return make(roots[0])


def _parent_path(path: str | None) -> str | None:
    return None if path is None else path.rpartition(".")[0]


def _load_client(
    entry: dict[str, Any], policy: ClientPolicy
) -> tuple[type[DriverClient], str | None]:
    path = str(entry.get("client") or _BASE_CLIENT)
    if path == _BASE_CLIENT:
        return DriverClient, None
    if not policy.allows(path):
        return DriverClient, (
            f"client class {path} is not allowed; add it (or a glob such as "
            f"'{path.rsplit('.', 1)[0]}.*') to the client allow-list"
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
