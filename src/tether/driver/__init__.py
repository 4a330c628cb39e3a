"""The driver SDK: drivers, interfaces, clients and the lifecycle they share.

A driver author needs only this package (and ``tether.testing`` for tests).
"""

from ._client import ByteStream, CallTarget, DriverClient
from ._composite import Composite
from ._dispatch import ERROR_TABLE, CallDispatcher
from ._driver import Driver, DriverState
from ._export import ExportedMethod, MethodKind, export, export_stream, exported_methods
from ._host import DriverHost
from ._interface import Interface, interface_methods, interfaces_of
from ._node import AddChildError, Node, NodeController, NodeObserver, StartArgs
from ._report import (
    DEFAULT_ALLOW,
    ClientPolicy,
    build_client_tree,
    build_report,
    installed_driver_patterns,
    node_for,
)
from ._services import ServiceDirectory, ServiceNotFound, ServiceProxy
from ._streams import AsyncioStream

__all__ = [
    "DEFAULT_ALLOW",
    "ERROR_TABLE",
    "AddChildError",
    "AsyncioStream",
    "ByteStream",
    "CallDispatcher",
    "CallTarget",
    "ClientPolicy",
    "Composite",
    "Driver",
    "DriverClient",
    "DriverHost",
    "DriverState",
    "ExportedMethod",
    "Interface",
    "MethodKind",
    "Node",
    "NodeController",
    "NodeObserver",
    "ServiceDirectory",
    "ServiceNotFound",
    "ServiceProxy",
    "StartArgs",
    "build_client_tree",
    "build_report",
    "export",
    "export_stream",
    "exported_methods",
    "installed_driver_patterns",
    "interface_methods",
    "interfaces_of",
    "node_for",
]
