"""The client side: connect to an exporter, lease devices, build the client tree."""

from ._allow import ALLOW_VAR, client_policy
from ._connect import RemoteClient, RemoteSession, connect, split_session_url
from ._forward import PortForward, byte_stream_methods
from ._http import controller_error, map_http_errors
from ._lease import (
    ClientSettings,
    Lease,
    LeaseClient,
    LeasedSession,
    RelayProxy,
    dial_relay,
    lease,
    load_client_settings,
    open_leased_tree,
)
from ._watch import ExpiryWatcher, HookWatcher, hook_printer

__all__ = [
    "ALLOW_VAR",
    "ClientSettings",
    "ExpiryWatcher",
    "HookWatcher",
    "Lease",
    "LeaseClient",
    "LeasedSession",
    "PortForward",
    "RelayProxy",
    "RemoteClient",
    "RemoteSession",
    "byte_stream_methods",
    "client_policy",
    "connect",
    "controller_error",
    "dial_relay",
    "hook_printer",
    "lease",
    "load_client_settings",
    "map_http_errors",
    "open_leased_tree",
    "split_session_url",
]
