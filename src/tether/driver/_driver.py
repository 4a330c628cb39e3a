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

#: Names a config field (or a class attribute) of a driver may not take, with what the
#: framework means by them. ``state`` is not here: it is the user's (the lifecycle state is
#: ``lifecycle``). ``children``, ``description`` and ``labels`` are the constructor's own
#: keywords (and the exporter config's node keys), so a field of that name would be ambiguous.
_RESERVED: dict[str, str] = {
    "node": "self.node, the node the driver is bound to",
    "incoming": "self.incoming, the services the driver uses",
    "outgoing": "self.outgoing, the services the driver offers",
    "logger": "self.logger, the driver's logger",
    "labels": "self.labels and the labels= keyword, the node's properties",
    "children": "the children= keyword, the driver's child drivers",
    "description": "the description= keyword, the node's description",
    "uuid": "self.uuid, the node's id in reports",
    "lifecycle": "self.lifecycle, the driver's lifecycle state",
    "started": "self.started, whether the driver runs",
    "extra_labels": "self.extra_labels, the labels= keyword's values",
    "exported": "Driver.exported(), the export table",
    "interfaces": "Driver.interfaces(), the interfaces the driver implements",
}
#: Lifecycle hooks: a subclass overrides them with methods, never with a field or value.
_HOOKS = frozenset({"start", "prepare_stop", "stop"})


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

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        """Check the class and build its config model and export table, once.

        Args:
            abstract: the class leaves interface methods to its subclasses.

        Raises:
            TypeError: a config field or class attribute takes a reserved name, or an
                interface method is unimplemented (both named in the message).
        """
        super().__init_subclass__(**kwargs)
        cls.__tether_abstract__ = abstract  # type: ignore[attr-defined]
        _check_names(cls)
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
        self._lifecycle = DriverState.CREATED
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
    def lifecycle(self) -> DriverState:
        """The driver's lifecycle state (``state`` is left to the driver's own fields)."""
        return self._lifecycle

    @property
    def started(self) -> bool:
        return self._lifecycle is DriverState.RUNNING

    def _args(self, what: str) -> StartArgs:
        if self._start_args is None:
            raise LifecycleError(
                f"{type(self).__qualname__}.{what} is available once the driver is started "
                f"(state: {self._lifecycle.value})"
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
        if self._lifecycle not in allowed:
            raise LifecycleError(
                f"{type(self).__qualname__}.{method}() is not allowed in state "
                f"{self._lifecycle.value} (allowed: {', '.join(s.value for s in allowed)})"
            )

    async def _run_start(self, args: StartArgs) -> None:
        self._guard("start", DriverState.CREATED)
        self._start_args = args
        interfaces = self._interfaces
        if interfaces:
            args.outgoing.add_service(interfaces[0], self)
        self._lifecycle = DriverState.STARTING
        try:
            await self.start()
        except BaseException:
            self._lifecycle = DriverState.FAILED
            raise
        self._lifecycle = DriverState.RUNNING

    async def _run_prepare_stop(self) -> None:
        self._guard("prepare_stop", DriverState.RUNNING)
        self._lifecycle = DriverState.STOPPING
        try:
            await self.prepare_stop()
        finally:
            self._lifecycle = DriverState.PREPARED

    def _run_stop(self) -> None:
        if self._lifecycle is DriverState.STOPPED:
            return
        self._lifecycle = DriverState.STOPPED
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self._lifecycle.value}>"


Driver._config_model = pydantic.create_model(
    "DriverConfig", __config__=pydantic.ConfigDict(extra="forbid")
)
Driver.__tether_abstract__ = False  # type: ignore[attr-defined]


def _check_names(cls: type[Driver]) -> None:
    """Refuse config fields and class attributes that would shadow the framework's names."""
    for name in inspect.get_annotations(cls):
        if name in _RESERVED or name in _HOOKS:
            what = _RESERVED.get(name, f"the {name}() lifecycle hook")
            raise TypeError(
                f"{cls.__qualname__}: config field {name!r} is reserved ({what}); rename the field"
            )
    for name, value in vars(cls).items():
        if name in _RESERVED and name not in inspect.get_annotations(cls):
            raise TypeError(
                f"{cls.__qualname__}: class attribute {name!r} is reserved "
                f"({_RESERVED[name]}); rename it"
            )
        if name in _HOOKS and not callable(value):
            raise TypeError(
                f"{cls.__qualname__}: {name!r} is the {name}() lifecycle hook; "
                f"define it as a method"
            )


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
