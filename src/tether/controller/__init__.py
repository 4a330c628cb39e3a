"""The lab controller: identities, access policies, exporters, the lease queue, the HTTP API.

Run it with ``tether controller serve``; manage it with ``tether admin``. The API contract is
``docs/controller-api.md``; :mod:`tether.controller.testing` runs one for tests.
"""

from typing import TYPE_CHECKING, Any

from . import _require  # noqa: F401  (first: a missing extra is named before anything fails)
from ._admin import Admin, NewIdentity, load_policy_file, make_policy
from ._audit import AuditEntry, acting
from ._database import Database, default_database_url
from ._records import ExporterStatus, Identity, LeaseState
from ._scheduler import Policy
from ._selector import Requirement, Selector, parse_duration, parse_selector
from ._store import Store
from ._views import LabViews

if TYPE_CHECKING:
    from ._app import create_app
    from ._controller import Controller
    from ._limits import Limits
    from ._relay import RelayGrant, RelayRouter
    from ._server import ServeOptions, serve

#: The names whose modules bring in the web stack (FastAPI, uvicorn, Jinja2, prometheus-client),
#: imported on first use: ``tether admin`` works on the database alone and starts without them.
_SERVING = {
    "create_app": "._app",
    "Controller": "._controller",
    "Limits": "._limits",
    "RelayGrant": "._relay",
    "RelayRouter": "._relay",
    "ServeOptions": "._server",
    "serve": "._server",
}


def __getattr__(name: str) -> Any:
    module = _SERVING.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SERVING))


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
