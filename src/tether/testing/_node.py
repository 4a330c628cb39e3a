"""``TestNode``: serves the node a driver under test is started on, and records what it does.

After DFv2's ``fdf_testing::TestNode``. A ``TestNode`` *is* a :class:`tether.driver.Node`, so
``add_child`` refuses an existing name (``name_already_exists``) or bad arguments
(``unsupported_args``) exactly like the real framework, and removing a node removes its subtree.
On top it records offers and bind requests (the base node keeps them) and makes every child a
``TestNode``.

Affinity: a ``TestNode`` belongs to the dispatcher it was made on. When the driver (on another
dispatcher) calls ``add_child``, ``NodeController.remove`` or ``request_bind``, the call is carried
out on the node's dispatcher through a blocking hop, the way a driver's calls reach the node's
server over a channel in Fuchsia. Tests read ``children`` on that dispatcher too
(``run_in_node_context``).

``create_start_args_and_serve()`` hands out the two ends a test needs besides the start args:
the incoming directory's *server* end (give it to ``TestEnvironment.initialize``) and the
outgoing directory's *client* end (``connect(Interface)`` reaches what the driver offers).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from tether.driver import (
    Interface,
    Node,
    NodeController,
    ServiceDirectory,
    ServiceNotFound,
    ServiceProxy,
    StartArgs,
)
from tether.errors import LifecycleError

from ._dispatcher import Dispatcher, current_dispatcher

if TYPE_CHECKING:
    from tether.driver import Driver

__all__ = [
    "LOG_SINK_PROTOCOL",
    "IncomingDirectoryServer",
    "OutgoingDirectoryClient",
    "StartArgsResult",
    "TestNode",
]

#: Name of the plain protocol a driver's logger writes to, when its incoming directory has one.
LOG_SINK_PROTOCOL = "tether.logger.LogSink"


class IncomingDirectoryServer:
    """The server end of a driver's incoming directory; ``TestEnvironment.initialize`` takes it."""

    def __init__(self, directory: ServiceDirectory) -> None:
        self._directory: ServiceDirectory | None = directory

    def take(self) -> ServiceDirectory:
        """Take the directory to serve it (once).

        Raises:
            LifecycleError: it is served already.
        """
        if self._directory is None:
            raise LifecycleError("this incoming directory server end is served already")
        directory, self._directory = self._directory, None
        return directory

    def __repr__(self) -> str:
        return f"<IncomingDirectoryServer {'taken' if self._directory is None else 'unserved'}>"


class OutgoingDirectoryClient:
    """The client end of a driver's outgoing directory: reach what the driver offers."""

    def __init__(self, directory: ServiceDirectory) -> None:
        self._directory = directory

    def connect(self, interface: type[Interface], instance: str = "default") -> ServiceProxy:
        """A proxy for a service the driver offers; its methods are awaitable and run on the
        driver's loop.

        Raises:
            ServiceNotFound: the driver offers nothing under that interface and instance.
        """
        return self._directory.connect(interface, instance)

    def services(self) -> list[tuple[str, str]]:
        """``(interface name, instance)`` of everything the driver offers."""
        return self._directory.services()


class StartArgsResult(NamedTuple):
    """What :meth:`TestNode.create_start_args_and_serve` returns."""

    start_args: StartArgs
    incoming_directory_server: IncomingDirectoryServer
    outgoing_directory_client: OutgoingDirectoryClient


class TestNode(Node):
    """A node served by the test, recording children, properties, offers and bind requests.

    Args:
        name: the node's name (the driver's node name).
        properties: the node's own properties.
        dispatcher: where the node lives; defaults to the caller's dispatcher.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        name: str = "root",
        properties: Mapping[str, str] | None = None,
        *,
        dispatcher: Dispatcher | None = None,
        driver: Driver | None = None,
        parent: Node | None = None,
        offers: list[str] | None = None,
    ) -> None:
        super().__init__(name, properties, driver=driver, parent=parent, offers=offers)
        self.dispatcher = dispatcher if dispatcher is not None else current_dispatcher()
        self.children: dict[str, TestNode] = {}  # type: ignore[assignment]

    def _hop(self) -> Dispatcher | None:
        dispatcher = self.dispatcher
        if dispatcher is None or dispatcher.is_current() or dispatcher.shut_down:
            return None
        return dispatcher

    def add_child(
        self,
        name: str,
        driver: Driver | None = None,
        properties: Mapping[str, str] | None = None,
        *,
        offers: list[str] | None = None,
    ) -> NodeController:
        """Add a child node, on this node's dispatcher (see :meth:`tether.driver.Node.add_child`).

        Raises:
            AddChildError: ``name_already_exists`` or ``unsupported_args``, as in DFv2.
        """
        dispatcher = self._hop()
        if dispatcher is not None:
            return dispatcher.call_sync(
                lambda: self.add_child(name, driver, properties, offers=offers),
                what=f"TestNode({self.name!r}).add_child({name!r})",
            )
        return super().add_child(name, driver, properties, offers=offers)

    def _new_child(
        self,
        name: str,
        properties: dict[str, str],
        driver: Driver | None,
        offers: list[str] | None,
    ) -> Node:
        return TestNode(
            name,
            properties,
            dispatcher=self.dispatcher,
            driver=driver,
            parent=self,
            offers=offers,
        )

    def _remove(self) -> None:
        dispatcher = self._hop()
        if dispatcher is not None:
            dispatcher.call_sync(self._remove, what=f"TestNode({self.name!r}).remove()")
            return
        super()._remove()

    def _request_bind(self, options: dict[str, Any]) -> None:
        dispatcher = self._hop()
        if dispatcher is not None:
            dispatcher.call_sync(
                lambda: self._request_bind(options),
                what=f"TestNode({self.name!r}).request_bind()",
            )
            return
        super()._request_bind(options)

    def child(self, path: str) -> TestNode:
        """The descendant at a dotted ``path`` below this node (``"a.b"``).

        Raises:
            KeyError: there is no such node; the message lists the children that exist.
        """
        node = self
        for part in path.split("."):
            if part not in node.children:
                raise KeyError(
                    f"node {node.name!r} has no child {part!r} (children: {sorted(node.children)})"
                )
            node = node.children[part]
        return node

    def remove_children(self) -> None:
        """Remove every child (and its subtree), e.g. after the driver was stopped."""
        for child in list(self.children.values()):
            NodeController(child).remove()

    def create_start_args_and_serve(
        self, *, config: Mapping[str, Any] | None = None
    ) -> StartArgsResult:
        """Make start arguments for a driver bound to this node, plus the test's two ends.

        Every call makes fresh incoming and outgoing directories. The driver's logger writes to
        the ``tether.logger.LogSink`` protocol of its incoming directory (``TestEnvironment``
        adds one), or straight into Python logging when there is none.

        Returns:
            ``(start_args, incoming_directory_server, outgoing_directory_client)``.
        """
        incoming = ServiceDirectory()
        outgoing = ServiceDirectory()
        args = StartArgs(
            node=self,
            incoming=incoming,
            outgoing=outgoing,
            logger=_driver_logger(f"tether.driver.{self.name}", incoming),
            config=config,
        )
        return StartArgsResult(
            args, IncomingDirectoryServer(incoming), OutgoingDirectoryClient(outgoing)
        )

    def __repr__(self) -> str:
        return f"<TestNode {self.path or self.name!r} children={sorted(self.children)}>"


class _DriverLogger(logging.Logger):
    """A driver's logger: levels follow the Python logger of the same name; records go to the
    driver's log sink, or to that Python logger when the incoming directory has no sink.

    No handler objects: each would cost a lock and a registration per driver start.
    """

    def __init__(self, name: str, incoming: ServiceDirectory) -> None:
        super().__init__(name)
        self.parent = logging.getLogger(name)
        self.propagate = False
        self._incoming = incoming

    def isEnabledFor(self, level: int) -> bool:
        assert self.parent is not None
        return self.parent.isEnabledFor(level)

    def callHandlers(self, record: logging.LogRecord) -> None:
        try:
            sink = self._incoming.get(LOG_SINK_PROTOCOL)
        except ServiceNotFound:
            assert self.parent is not None
            self.parent.handle(record)
            return
        sink.write(record)


def _driver_logger(name: str, incoming: ServiceDirectory) -> logging.Logger:
    return _DriverLogger(name, incoming)
