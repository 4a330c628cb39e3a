"""``TestEnvironment``: serves a driver's incoming directory with the test's fakes.

After DFv2's ``fdf_testing::TestEnvironment``. ``initialize(incoming_directory_server)`` takes the
server end from ``TestNode.create_start_args_and_serve()``; ``incoming_directory()`` then adds and
removes services (by interface and instance) and, through ``component()``, plain named protocols.
Services are registered with the environment's own loop, so a driver on another dispatcher reaches
them through proxies that run each call here. A built-in log sink (protocol
``tether.logger.LogSink``) receives the driver's log records and re-emits them into Python
logging, so pytest's ``caplog`` sees them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from tether.driver import Interface, ServiceDirectory
from tether.errors import LifecycleError

from ._dispatcher import Dispatcher, current_dispatcher
from ._node import LOG_SINK_PROTOCOL, IncomingDirectoryServer

__all__ = ["ComponentDirectory", "IncomingDirectory", "LogSink", "TestEnvironment"]


class LogSink:
    """Receives driver log records, keeps them, and re-emits them into Python logging.

    Attributes:
        records: every record received, in order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[logging.LogRecord] = []

    def write(self, record: logging.LogRecord) -> None:
        """Take one record (thread-safe): keep it and hand it to the logger of its name."""
        with self._lock:
            self.records.append(record)
        target = logging.getLogger(record.name)
        if target.isEnabledFor(record.levelno):
            target.handle(record)

    def messages(self) -> list[str]:
        """The formatted messages received so far."""
        with self._lock:
            return [record.getMessage() for record in self.records]


class ComponentDirectory:
    """Plain named protocols in a driver's incoming directory (prefer services)."""

    def __init__(self, directory: ServiceDirectory, loop: asyncio.AbstractEventLoop | None) -> None:
        self._directory = directory
        self._loop = loop

    def add_protocol(self, name: type[Interface] | str, impl: Any) -> None:
        """Offer ``impl`` as protocol ``name``; the driver reaches it with
        ``self.incoming.connect(Interface)`` or ``self.incoming.get(name)``.

        Raises:
            ValueError: the name is taken.
        """
        self._directory.add_service(name, impl, loop=self._loop)

    def remove_protocol(self, name: type[Interface] | str) -> None:
        """Withdraw a protocol; raises ServiceNotFound when it is not offered."""
        self._directory.remove_service(name)


class IncomingDirectory:
    """The driver's incoming directory, as the environment sees it."""

    def __init__(self, directory: ServiceDirectory, loop: asyncio.AbstractEventLoop | None) -> None:
        self._directory = directory
        self._loop = loop
        self._component = ComponentDirectory(directory, loop)

    def add_service(
        self, interface: type[Interface] | str, impl: Any, instance: str = "default"
    ) -> None:
        """Offer ``impl`` as ``interface`` / ``instance`` to the driver.

        Raises:
            ValueError: that interface and instance is offered already.
        """
        self._directory.add_service(interface, impl, instance, loop=self._loop)

    def remove_service(self, interface: type[Interface] | str, instance: str = "default") -> None:
        """Withdraw a service; raises ServiceNotFound when it is not offered."""
        self._directory.remove_service(interface, instance)

    def services(self) -> list[tuple[str, str]]:
        """``(name, instance)`` of every entry, sorted."""
        return self._directory.services()

    def component(self) -> ComponentDirectory:
        """Plain named protocols (as DFv2's ``component()``)."""
        return self._component


class TestEnvironment:
    """The driver's environment: its incoming directory and a log sink.

    It belongs to the dispatcher it was made on (its services run there); call its methods
    on that dispatcher, e.g. through ``DispatcherBound`` or ``run_in_environment_context``.

    Args:
        dispatcher: where the environment lives; defaults to the caller's dispatcher.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, dispatcher: Dispatcher | None = None) -> None:
        self._dispatcher = dispatcher if dispatcher is not None else current_dispatcher()
        self._incoming: IncomingDirectory | None = None
        self.log_sink = LogSink()

    @property
    def dispatcher(self) -> Dispatcher | None:
        """The dispatcher the environment lives on."""
        return self._dispatcher

    def _check(self, method: str) -> None:
        dispatcher = self._dispatcher
        if dispatcher is not None and not dispatcher.is_current() and not dispatcher.shut_down:
            raise LifecycleError(
                f"TestEnvironment.{method}() must be called on dispatcher {dispatcher.name!r}, "
                f"where the environment lives (use DispatcherBound / run_in_environment_context)"
            )

    def initialize(self, incoming_directory_server: IncomingDirectoryServer) -> None:
        """Serve the driver's incoming directory and add the log sink to it.

        Raises:
            LifecycleError: initialized already, the server end is served already, or called
                off the environment's dispatcher.
        """
        self._check("initialize")
        if self._incoming is not None:
            raise LifecycleError("TestEnvironment.initialize() was called already")
        directory = incoming_directory_server.take()
        loop = self._dispatcher.loop if self._dispatcher is not None else None
        self._incoming = IncomingDirectory(directory, loop)
        self._incoming.component().add_protocol(LOG_SINK_PROTOCOL, self.log_sink)

    def incoming_directory(self) -> IncomingDirectory:
        """The incoming directory to add fakes to.

        Raises:
            LifecycleError: :meth:`initialize` has not been called.
        """
        self._check("incoming_directory")
        if self._incoming is None:
            raise LifecycleError("TestEnvironment.incoming_directory(): call initialize() first")
        return self._incoming
