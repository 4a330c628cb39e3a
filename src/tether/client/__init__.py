"""The client side: connect to an exporter, lease devices, build the client tree."""

from tether.http_errors import controller_error, map_http_errors

from ._allow import ALLOW_VAR, client_policy
from ._connect import RemoteClient, RemoteSession, connect, split_session_url
from ._forward import PortForward, byte_stream_methods
from ._lease import (
    ClientSettings,
    Lease,
    LeaseClient,
    LeasedSession,
    dial_relay,
    lease,
    load_client_settings,
    open_leased_tree,
)
from ._relay_proxy import RelayProxy
from ._roles import ROLES_VAR, Lab, lease_roles, parse_roles, role_environment, role_host_var
from ._watch import ExpiryWatcher, HookWatcher, hook_printer

__all__ = [
    "ALLOW_VAR",
    "ROLES_VAR",
    "ClientSettings",
    "ExpiryWatcher",
    "HookWatcher",
    "Lab",
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
    "lease_roles",
    "load_client_settings",
    "map_http_errors",
    "open_leased_tree",
    "parse_roles",
    "role_environment",
    "role_host_var",
    "split_session_url",
]
