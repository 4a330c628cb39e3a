"""The lab controller: identities, access policies, exporters, the lease queue, the HTTP API.

Run it with ``tether controller serve``; manage it with ``tether admin``. The API contract is
``docs/controller-api.md``; :mod:`tether.controller.testing` runs one for tests.
"""

from . import _require  # noqa: F401  (first: a missing extra is named before anything fails)
from ._admin import Admin, NewIdentity, load_policy_file, make_policy
from ._app import create_app
from ._audit import AuditEntry, acting
from ._controller import Controller
from ._database import Database, default_database_url
from ._limits import Limits
from ._records import ExporterStatus, Identity, LeaseState
from ._relay import RelayGrant, RelayRouter
from ._scheduler import Policy
from ._selector import Requirement, Selector, parse_duration, parse_selector
from ._server import ServeOptions, serve
from ._store import Store
from ._views import LabViews

__all__ = [
    "Admin",
    "AuditEntry",
    "Controller",
    "Database",
    "ExporterStatus",
    "Identity",
    "LabViews",
    "LeaseState",
    "Limits",
    "NewIdentity",
    "Policy",
    "RelayGrant",
    "RelayRouter",
    "Requirement",
    "Selector",
    "ServeOptions",
    "Store",
    "acting",
    "create_app",
    "default_database_url",
    "load_policy_file",
    "make_policy",
    "parse_duration",
    "parse_selector",
    "serve",
]
