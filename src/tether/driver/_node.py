"""Nodes: where a driver sits in the device tree, and the start arguments it gets.

A :class:`Node` is served by whoever hosts the driver (an exporter session, ``serve()``, or the
test kit's ``TestNode``). A driver adds children with :meth:`Node.add_child` and gets a
:class:`NodeController` back whose :meth:`~NodeController.remove` removes the child and its
whole subtree. The host learns of every change through :class:`NodeObserver` callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tether.errors import TetherError

from ._services import ServiceDirectory

if TYPE_CHECKING:
    from ._driver import Driver

__all__ = [
    "AddChildError",
    "Node",
    "NodeController",
    "NodeObserver",
    "StartArgs",
]


class AddChildError(TetherError, ValueError):
    """``add_child`` was refused. ``reason`` is ``"name_already_exists"`` or
    ``"unsupported_args"``, as in DFv2."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NodeObserver(Protocol):
    """What a host implements to hear about topology changes."""

    def child_added(self, child: Node) -> None: ...

    def child_removed(self, child: Node) -> None: ...


class Node:
    """One node of the device tree.

    Attributes:
        name: the node's name among its siblings.
        properties: string key/value properties (the exporter shows them as labels).
        driver: the driver bound to this node, if any.
        offers: service names offered to the child's driver (recorded for tests).
    """

    def __init__(
        self,
        name: str,
        properties: Mapping[str, str] | None = None,
        *,
        driver: Driver | None = None,
        parent: Node | None = None,
        offers: list[str] | None = None,
        observer: NodeObserver | None = None,
    ) -> None:
        self.name = name
        self.properties: dict[str, str] = dict(properties or {})
        self.driver = driver
        self.parent = parent
        self.offers: list[str] = list(offers or [])
        self.children: dict[str, Node] = {}
        self.bind_requests: list[dict[str, Any]] = []
        self.removed = False
        self._observer = observer

    @property
    def path(self) -> str:
        """Dotted path from the root, e.g. ``"board.power"`` (the root's own name excluded)."""
        parts: list[str] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return ".".join(reversed(parts))

    def add_child(
        self,
        name: str,
        driver: Driver | None = None,
        properties: Mapping[str, str] | None = None,
        *,
        offers: list[str] | None = None,
    ) -> NodeController:
        """Add a child node, optionally bound to ``driver``.

        Raises:
            AddChildError: the name exists (``name_already_exists``) or an argument is not
                supported (``unsupported_args``: empty name, name with a dot, non-string
                properties).
        """
        if self.removed:
            raise AddChildError(f"node {self.name!r} was removed", "unsupported_args")
        if not isinstance(name, str) or not name or "." in name:
            raise AddChildError(f"invalid child name {name!r}", "unsupported_args")
        if name in self.children:
            raise AddChildError(
                f"node {self.name!r} has a child named {name!r} already", "name_already_exists"
            )
        props = dict(properties or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
            raise AddChildError("node properties must map strings to strings", "unsupported_args")
        child = self._new_child(name, props, driver, offers)
        self.children[name] = child
        if self._observer is not None:
            self._observer.child_added(child)
        return NodeController(child)

    def _new_child(
        self,
        name: str,
        properties: dict[str, str],
        driver: Driver | None,
        offers: list[str] | None,
    ) -> Node:
        """Make a child node object (the test kit's TestNode makes TestNodes)."""
        return Node(
            name, properties, driver=driver, parent=self, offers=offers, observer=self._observer
        )

    def _request_bind(self, options: dict[str, Any]) -> None:
        self.bind_requests.append(options)

    def walk(self) -> list[Node]:
        """This node and every descendant, parents before children."""
        nodes = [self]
        for child in self.children.values():
            nodes.extend(child.walk())
        return nodes

    def _remove(self) -> None:
        for child in list(self.children.values()):
            child._remove()
        self.removed = True
        if self.parent is not None:
            self.parent.children.pop(self.name, None)
        if self._observer is not None:
            self._observer.child_removed(self)

    def __repr__(self) -> str:
        return f"<Node {self.path or self.name!r} children={list(self.children)}>"


class NodeController:
    """Handle on a child node: remove it (and its subtree), or ask to bind a driver to it."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def remove(self) -> None:
        """Remove the node and its whole subtree. Removing twice is a no-op."""
        if not self.node.removed:
            self.node._remove()

    def request_bind(self, **options: Any) -> None:
        """Record a request to (re)bind a driver to this node (the host decides)."""
        self.node._request_bind(dict(options))


@dataclass(slots=True)
class StartArgs:
    """Everything a driver is started with (DFv2's ``DriverStartArgs``)."""

    node: Node
    incoming: ServiceDirectory = field(default_factory=ServiceDirectory)
    outgoing: ServiceDirectory = field(default_factory=ServiceDirectory)
    logger: logging.Logger | None = None
    config: Mapping[str, Any] | None = None

    @property
    def node_name(self) -> str:
        return self.node.name

    @property
    def properties(self) -> dict[str, str]:
        return self.node.properties
