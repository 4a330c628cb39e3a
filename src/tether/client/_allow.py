"""The client allow-list: which client classes (and result types) a client tree may import.

One list, whichever way the client was started (Python, ``dut``, pytest): the patterns passed
in (``allow=``, ``--tether-allow``), then ``TETHER_CLIENT_ALLOW`` (comma-separated globs), then
the client config file's ``allow:`` (``TETHER_CONFIG``, else ``~/.config/tether/client.yaml``).
Client classes shipped with tether and those of drivers registered in the ``tether.drivers``
entry-point group are trusted without listing them (installed code, not a name from the wire).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from tether.driver import ClientPolicy
from tether.errors import ConfigError

from ._lease_api import DEFAULT_CONFIG

__all__ = ["ALLOW_VAR", "client_policy", "config_allow"]

#: Environment variable with extra client-class globs, comma-separated.
ALLOW_VAR = "TETHER_CLIENT_ALLOW"


def client_policy(
    allow: Sequence[str] = (),
    unsafe: bool = False,
    *,
    config: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientPolicy:
    """The client policy from every source of allow patterns (see the module docstring).

    Args:
        allow: patterns given by the caller.
        unsafe: import any client class (trusted exporters only).
        config: the client config file (else ``TETHER_CONFIG``, else the default path; a
            missing default file is no error).

    Raises:
        ConfigError: the config file is unreadable, or its ``allow`` is not a list of strings.
    """
    env = os.environ if environ is None else environ
    patterns = [*allow]
    patterns += [g.strip() for g in env.get(ALLOW_VAR, "").split(",") if g.strip()]
    patterns += config_allow(config, env)
    return ClientPolicy(allow=tuple(dict.fromkeys(patterns)), unsafe=unsafe)


def config_allow(config: str | Path | None, environ: Mapping[str, str]) -> list[str]:
    """The ``allow:`` list of the client config file, or [] when there is none."""
    explicit = config or environ.get("TETHER_CONFIG") or None
    path = Path(explicit if explicit is not None else DEFAULT_CONFIG).expanduser()
    if explicit is None and not path.exists():
        return []
    import yaml  # lazily: `import tether` stays light

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the client config: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        return []  # the settings reader reports a malformed file
    allow = data.get("allow", [])
    if isinstance(allow, str):
        allow = [allow]
    if not isinstance(allow, list) or not all(isinstance(p, str) for p in allow):
        raise ConfigError(f"{path}: allow: expected a list of glob patterns (got {allow!r})")
    return list(allow)
