"""``Driver``: behaviour that runs on the exporter host, with typed config and a lifecycle.

Config fields are the class's annotated attributes (``voltage: float = 5.0``); they are
validated with pydantic when the driver is constructed, so a bad value fails before anything
starts. Transport never leaks in here: the wire layer calls exported methods, the host calls
the lifecycle hooks.

Lifecycle (one state, one guard)::

    CREATED --start--> STARTING --ok--> RUNNING --prepare_stop--> STOPPING --> PREPARED
                                 \\--error--> FAILED                                  |
    every state --stop()--> STOPPED  <--------------------------------------------------+
"""

from __future__ import annotations

import inspect
import logging
import typing
import uuid
from collections.abc import Mapping
from enum import Enum
from typing import Any, ClassVar

import pydantic

from tether.errors import ConfigError, LifecycleError

from ._export import ExportedMethod, exported_methods
from ._interface import Interface, interfaces_of
from ._node import Node, StartArgs
from ._services import ServiceDirectory

__all__ = ["Driver", "DriverState"]

_RESERVED = frozenset({"children", "description", "labels", "node", "incoming", "outgoing"})


class DriverState(Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPING = "stopping"
    PREPARED = "prepared"
    STOPPED = "stopped"


class Driver:
    """Base class of drivers. Subclass it together with an :class:`~tether.Interface`.

    Args:
        children: child drivers by name (a composite driver).
        description: shown to users in ``dut`` and the report.
        labels: extra node properties.
        **config: values for the class's typed config fields.

    Raises:
        ConfigError: a config value is missing, unknown or of the wrong type.
    """

    _config_model: ClassVar[type[pydantic.BaseModel]]
    _config_fields: ClassVar[tuple[str, ...]] = ()
    _interfaces: ClassVar[tuple[type[Interface], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if klass is Driver or not issubclass(klass, Driver):
                continue  # interfaces and mixins declare no config fields
            own = inspect.get_annotations(klass)
            if not own:
                continue
            hints = typing.get_type_hints(klass, include_extras=True)
            for name in own:
                hint = hints[name]
                if name.startswith("_") or hint is ClassVar or typing.get_origin(hint) is ClassVar:
                    continue
                if name in _RESERVED:
                    raise TypeError(f"{cls.__qualname__}: config field {name!r} is reserved")
                default = klass.__dict__.get(name, ...)
                fields[name] = (hints[name], default)
        cls._config_fields = tuple(fields)
        cls._config_model = pydantic.create_model(
            f"{cls.__name__}Config",
            __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            **fields,
        )
        exported_methods(cls)  # build (and check) the call table once, at class creation
        cls._interfaces = tuple(interfaces_of(cls))

    def __init__(
        self,
        *,
        children: Mapping[str, Driver] | None = None,
        description: str | None = None,
        labels: Mapping[str, str] | None = None,
        **config: Any,
    ) -> None:
        cls = type(self)
        if cls is Driver:
            raise TypeError("Driver is a base class; subclass it")
        try:
            values = cls._config_model.model_validate(config)
        except pydantic.ValidationError as exc:
            raise ConfigError(_describe_validation(cls.__qualname__, exc)) from None
        for name in cls._config_fields:
            setattr(self, name, getattr(values, name))
        self.uuid = str(uuid.uuid4())
        self.children: dict[str, Driver] = dict(children or {})
        for name, child in self.children.items():
            if not isinstance(child, Driver):
                raise ConfigError(f"{cls.__qualname__}: child {name!r} is not a Driver")
        self.description = description or ""
        self.extra_labels: dict[str, str] = dict(labels or {})
        self.state = DriverState.CREATED
        self._start_args: StartArgs | None = None

    # -- lifecycle hooks (override) -----------------------------------------------------------

    async def start(self) -> None:
        """Called once when the driver starts; raise to fail the start."""

    async def prepare_stop(self) -> None:
        """Called before ``stop``, on the driver's loop: finish or cancel async work."""

    def stop(self) -> None:
        """Called last; release resources synchronously."""

    # -- context ------------------------------------------------------------------------------

    @property
    def node(self) -> Node:
        """The node this driver is bound to (add children here)."""
        return self._args("node").node

    @property
    def incoming(self) -> ServiceDirectory:
        """Services this driver uses: ``self.incoming.connect(PowerInterface)``."""
        return self._args("incoming").incoming

    @property
    def outgoing(self) -> ServiceDirectory:
        """Services this driver offers to other drivers and tests."""
        return self._args("outgoing").outgoing

    @property
    def logger(self) -> logging.Logger:
        """A logger named after the driver's node path."""
        args = self._start_args
        if args is not None and args.logger is not None:
            return args.logger
        return logging.getLogger(f"tether.driver.{type(self).__name__}")

    @property
    def labels(self) -> dict[str, str]:
        """The node's properties merged with the driver's own labels."""
        args = self._start_args
        base = dict(args.node.properties) if args is not None else {}
        return {**base, **self.extra_labels}

    @property
    def started(self) -> bool:
        return self.state is DriverState.RUNNING

    def _args(self, what: str) -> StartArgs:
        if self._start_args is None:
            raise LifecycleError(
                f"{type(self).__qualname__}.{what} is available once the driver is started "
                f"(state: {self.state.value})"
            )
        return self._start_args

    # -- used by hosts ------------------------------------------------------------------------

    @classmethod
    def exported(cls) -> dict[str, ExportedMethod]:
        """The class's exported methods by name."""
        return exported_methods(cls)

    @classmethod
    def interfaces(cls) -> list[type[Interface]]:
        return list(cls._interfaces)

    def _guard(self, method: str, *allowed: DriverState) -> None:
        if self.state not in allowed:
            raise LifecycleError(
                f"{type(self).__qualname__}.{method}() is not allowed in state "
                f"{self.state.value} (allowed: {', '.join(s.value for s in allowed)})"
            )

    async def _run_start(self, args: StartArgs) -> None:
        self._guard("start", DriverState.CREATED)
        self._start_args = args
        interfaces = self._interfaces
        if interfaces:
            args.outgoing.add_service(interfaces[0], self)
        self.state = DriverState.STARTING
        try:
            await self.start()
        except BaseException:
            self.state = DriverState.FAILED
            raise
        self.state = DriverState.RUNNING

    async def _run_prepare_stop(self) -> None:
        self._guard("prepare_stop", DriverState.RUNNING)
        self.state = DriverState.STOPPING
        try:
            await self.prepare_stop()
        finally:
            self.state = DriverState.PREPARED

    def _run_stop(self) -> None:
        if self.state is DriverState.STOPPED:
            return
        self.state = DriverState.STOPPED
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self.state.value}>"


def _describe_validation(owner: str, exc: pydantic.ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(config)"
        if err["type"] == "extra_forbidden":
            problems.append(f"{owner}.{where}: unknown config field")
        elif err["type"] == "missing":
            problems.append(f"{owner}.{where}: required config field is missing")
        else:
            problems.append(f"{owner}.{where}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(problems)
