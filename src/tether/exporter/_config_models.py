"""The exporter config's typed models: the shape pydantic checks (pass 2 of ``_config``)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)

from tether.security import describe_bad_hash, is_token_hash, read_token_hashes
from tether.wire import Address, parse_address

from ._problems import KeyPath, Reporter, show

__all__ = [
    "NAME_RE",
    "NAME_RULE",
    "ControllerConfig",
    "ExporterConfig",
    "HealthConfig",
    "HooksConfig",
    "LimitsConfig",
    "NodeConfig",
    "OnFailure",
    "TLSConfig",
    "TokensConfig",
]

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
NAME_RULE = "letters, digits, '_' and '-', starting with a letter or '_' (no dots)"


# -- models ---------------------------------------------------------------------------------


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    value = value.expanduser()
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        value = Path(base) / value
    return value


def _parse_listen(value: Any) -> Address:
    if isinstance(value, Address):
        return value
    if not isinstance(value, str):
        raise ValueError(
            f"expected an address such as tls://0.0.0.0:7443 or unix:///run/tether.sock "
            f"(got {show(value)})"
        )
    return parse_address(value)  # its ConfigError is a ValueError: pydantic reports it


def _check_hash(value: str) -> str:
    value = value.strip()
    if not is_token_hash(value):
        raise ValueError(describe_bad_hash(value))
    return value


#: A file path; relative paths are relative to the config file's directory.
ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
_NonEmpty = Annotated[str, Field(min_length=1)]
_ListenAddress = Annotated[Address, PlainValidator(_parse_listen)]
_TokenHash = Annotated[str, AfterValidator(_check_hash)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OnFailure(StrEnum):
    """What the exporter does when a hook fails (non-zero exit or timeout)."""

    WARN = "warn"  #: log it and carry on
    END_LEASE = "end_lease"  #: a failed before_lease ends the lease; after_lease: as warn
    EXIT = "exit"  #: end the lease and exit the exporter with a non-zero status


class HooksConfig(_Model):
    """Shell commands run around each lease (``hooks:``)."""

    before_lease: str | None = None
    after_lease: str | None = None
    timeout: float = Field(default=120.0, gt=0, strict=True)
    on_failure: OnFailure = OnFailure.WARN


class HealthConfig(_Model):
    """The exporter's health check (``health:``): a shell ``command``, or ``transition`` a
    node (a BootStrategy) to a state; run every ``interval`` seconds and after each lease."""

    command: str | None = None
    transition: str | None = None
    node: str | None = None
    timeout: float = Field(default=30.0, gt=0, strict=True)
    interval: float = Field(default=300.0, gt=0, strict=True)


class ControllerConfig(_Model):
    """The controller to register with (``controller:``): its URL, the exporter's token (inline
    or in ``token_file``) and ``ca``, the CA that signed the controller's certificate."""

    endpoint: _NonEmpty
    token: str | None = Field(default=None, repr=False)
    token_file: ConfigPath | None = None
    ca: ConfigPath | None = None


class TLSConfig(_Model):
    """The TLS listener's certificate and key; ``ca`` makes client certificates required."""

    cert: ConfigPath
    key: ConfigPath
    ca: ConfigPath | None = None


class TokensConfig(_Model):
    """Accepted bearer tokens, as hashes (``tokens:`` as a list, or with a ``token_file``)."""

    hashes: tuple[_TokenHash, ...] = ()
    token_file: ConfigPath | None = None

    def accepted_hashes(self) -> list[str]:
        """The inline hashes plus those in ``token_file`` (read now, so it can change).

        Raises:
            ConfigError: the token file cannot be read or has a bad line.
        """
        from_file = read_token_hashes(self.token_file) if self.token_file is not None else []
        return [*self.hashes, *from_file]


class LimitsConfig(_Model):
    """Bounds on what one client may cost the exporter (``limits:``; docs/protocol.md)."""

    handshake_timeout: float = Field(default=10.0, gt=0, strict=True)
    max_connections: int | None = Field(default=None, gt=0, strict=True)
    max_connections_per_peer: int = Field(default=64, gt=0, strict=True)
    max_backlog: int = Field(default=32 << 20, gt=0, strict=True)


class NodeConfig(_Model):
    """One exported node: a driver (``type``) or another node under a second name (``ref``)."""

    type: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    children: dict[str, NodeConfig] = Field(default_factory=dict)
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    uses: dict[str, str] = Field(default_factory=dict)
    ref: str | None = None


class ExporterConfig(_Model):
    """A validated exporter config. Make one with :func:`load_config` or :func:`parse_config`."""

    name: _NonEmpty
    labels: dict[str, str] = Field(default_factory=dict)
    controller: ControllerConfig | None = None
    hooks: HooksConfig = Field(default_factory=HooksConfig)
    health: HealthConfig | None = None
    metrics_listen: str | None = None
    listen: tuple[_ListenAddress, ...] = ()
    tls: TLSConfig | None = None
    tokens: TokensConfig | None = None
    keepalive: float = Field(default=10.0, gt=0, strict=True)
    session_grace: float = Field(default=30.0, ge=0, strict=True)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    export: dict[str, NodeConfig] = Field(default_factory=dict)

    _source: str = PrivateAttr(default="<config>")
    _lines: dict[KeyPath, int] = PrivateAttr(default_factory=dict)
    # ``_config._Analysis`` once analysed (typed there: the analysis imports these models).
    _analysis: Any = PrivateAttr(default=None)

    @field_validator("tokens", mode="before")
    @classmethod
    def _tokens_as_list(cls, value: Any) -> Any:
        return {"hashes": value} if isinstance(value, list) else value

    @property
    def source(self) -> str:
        """The file this config was read from (``<string>`` or ``<config>`` otherwise)."""
        return self._source

    def line_of(self, path: str) -> int | None:
        """The line of a key path such as ``export.power.config`` or ``listen[1]``, if known."""
        parts = path.replace("[", ".").replace("]", "").split(".")
        keys: KeyPath = tuple(int(p) if p.isdigit() else p for p in parts if p)
        return Reporter(self._source, self._lines).line(keys)
