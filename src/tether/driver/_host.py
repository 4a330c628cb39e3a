"""``DriverHost``: runs one driver tree's lifecycle for a session.

Start order is children first (a parent may use its children in ``start``), then children a
driver adds at run time with ``node.add_child``; stop order is the reverse: ``prepare_stop``
parents first, then ``stop`` parents first. A driver whose ``start`` failed gets no
``prepare_stop``, as in DFv2. Every started driver gets ``stop`` even if others failed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tether.errors import NodeNotFound

from ._driver import Driver, DriverState
from ._node import Node, StartArgs
from ._report import build_report, node_for
from ._services import ServiceDirectory

__all__ = ["DriverHost"]

log = logging.getLogger("tether.host")


class DriverHost:
    """Hosts a driver tree: starts, stops, and finds drivers by uuid.

    Args:
        root: the root driver (its static children are attached recursively).
        name: the root node's name.
        uses: services routed into drivers (the exporter's ``uses:``), as
            ``{user path: {instance: provider path}}``. Providers start before their users.
    """

    def __init__(
        self,
        root: Driver,
        name: str = "root",
        *,
        uses: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.root = root
        self.root_node = node_for(root, name)
        self._uses = uses or {}
        self._by_uuid: dict[str, Driver] = {}
        self._started: list[Driver] = []
        self._pending_children: list[Node] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.running = False
        for node in self.root_node.walk():
            node._observer = self
            if node.driver is not None:
                self._by_uuid[node.driver.uuid] = node.driver

    # -- NodeObserver -------------------------------------------------------------------------

    def child_added(self, child: Node) -> None:
        if child.driver is None:
            return
        self._by_uuid[child.driver.uuid] = child.driver
        if self.running:
            task = asyncio.get_running_loop().create_task(self._start_node(child))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._pending_children.append(child)

    def child_removed(self, child: Node) -> None:
        driver = child.driver
        if driver is None:
            return
        self._by_uuid.pop(driver.uuid, None)
        if driver in self._started:
            self._started.remove(driver)
            task = asyncio.get_running_loop().create_task(self._stop_driver(driver))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- lifecycle ----------------------------------------------------------------------------

    def lookup(self, uuid: str) -> Driver:
        try:
            return self._by_uuid[uuid]
        except KeyError:
            raise NodeNotFound(f"no node with uuid {uuid!r} in this session") from None

    def report(self) -> list[dict[str, Any]]:
        return build_report(self.root_node)

    async def start(self) -> None:
        """Start every driver, children first; on failure stop what started and re-raise."""
        try:
            await self._start_node(self.root_node)
            while self._pending_children:
                await self._start_node(self._pending_children.pop(0))
        except BaseException:
            await self.stop()
            raise
        self.running = True

    async def _start_node(self, node: Node) -> None:
        for child in list(node.children.values()):
            await self._start_node(child)
        driver = node.driver
        if driver is None or driver.lifecycle is not DriverState.CREATED:
            return
        for provider_path in self._uses.get(node.path, {}).values():
            provider = self._node_at(provider_path)
            if provider is not node:
                await self._start_node(provider)
        args = StartArgs(
            node=node,
            incoming=self._incoming_for(node),
            outgoing=ServiceDirectory(),
            logger=logging.getLogger(f"tether.driver.{node.path or node.name}"),
        )
        await driver._run_start(args)
        self._started.append(driver)

    def _incoming_for(self, node: Node) -> ServiceDirectory:
        incoming = ServiceDirectory()
        uses = self._uses.get(node.path, {})
        counts: dict[str, int] = {}
        providers: list[tuple[str, Driver]] = []
        for instance, provider_path in uses.items():
            provider = self._find(provider_path)
            interfaces = provider.interfaces()
            if not interfaces:
                continue
            providers.append((instance, provider))
            counts[interfaces[0].name] = counts.get(interfaces[0].name, 0) + 1
        for instance, provider in providers:
            interface = provider.interfaces()[0]
            incoming.add_service(interface, provider, instance)
            if counts[interface.name] == 1 and instance != "default":
                incoming.add_service(interface, provider, "default")
        return incoming

    def _find(self, path: str) -> Driver:
        driver = self._node_at(path).driver
        if driver is None:
            raise NodeNotFound(f"no driver at path {path!r}")
        return driver

    def _node_at(self, path: str) -> Node:
        for node in self.root_node.walk():
            if node.path == path:
                return node
        raise NodeNotFound(f"no node at path {path!r}")

    async def stop(self) -> None:
        """prepare_stop then stop every started driver, parents first. Never raises."""
        self.running = False
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        order = list(reversed(self._started))
        self._started.clear()
        for driver in order:
            await self._stop_driver(driver, stop=False)
        for driver in order:
            self._call_stop(driver)

    async def _stop_driver(self, driver: Driver, stop: bool = True) -> None:
        if driver.lifecycle is DriverState.RUNNING:
            try:
                await driver._run_prepare_stop()
            except Exception:
                log.exception("prepare_stop of %r failed", driver)
        if stop:
            self._call_stop(driver)

    @staticmethod
    def _call_stop(driver: Driver) -> None:
        try:
            driver._run_stop()
        except Exception:
            log.exception("stop of %r failed", driver)
