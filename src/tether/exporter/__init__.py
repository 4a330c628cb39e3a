"""The exporter: a YAML config turned into driver trees, served per session.

See ``docs/exporter.md`` (sessions, auth, keepalive, the :class:`Exporter` API) and
``docs/config.md`` (the YAML reference).
"""

from tether.security import (
    LabCerts,
    client_ssl_context,
    generate_token,
    hash_token,
    init_lab_certs,
    read_token_hashes,
    server_ssl_context,
    verify_token,
)

from ._agent import ControllerAgent, run_agent
from ._config import (
    ControllerConfig,
    ExporterConfig,
    HealthConfig,
    HooksConfig,
    NodeConfig,
    OnFailure,
    TLSConfig,
    TokensConfig,
    build_tree,
    load_config,
    parse_config,
)
from ._exporter import Exporter
from ._hooks import HookResult, run_hook
from ._lease_relay import LeaseRelay
from ._main import run_exporter, serve_exporter
from ._metrics import ExporterMetrics
from ._observe import ExporterObserver, Observers
from ._problems import ConfigFileError, ConfigProblem
from ._session import SESSION_TRANSITIONS, Session, SessionEvent, SessionKind, SessionState
from ._thread import RunningExporter, run_exporter_in_thread

__all__ = [
    "SESSION_TRANSITIONS",
    "ConfigFileError",
    "ConfigProblem",
    "ControllerAgent",
    "ControllerConfig",
    "Exporter",
    "ExporterConfig",
    "ExporterMetrics",
    "ExporterObserver",
    "HealthConfig",
    "HookResult",
    "HooksConfig",
    "LabCerts",
    "LeaseRelay",
    "NodeConfig",
    "Observers",
    "OnFailure",
    "RunningExporter",
    "Session",
    "SessionEvent",
    "SessionKind",
    "SessionState",
    "TLSConfig",
    "TokensConfig",
    "build_tree",
    "client_ssl_context",
    "generate_token",
    "hash_token",
    "init_lab_certs",
    "load_config",
    "parse_config",
    "read_token_hashes",
    "run_agent",
    "run_exporter",
    "run_exporter_in_thread",
    "run_hook",
    "serve_exporter",
    "server_ssl_context",
    "verify_token",
]
