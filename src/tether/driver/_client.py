"""``DriverClient``: what the user calls, locally or remotely.

A client is bound to one node of a session's report and forwards calls through a
:class:`CallTarget` (the wire layer implements it). Typed clients subclass ``DriverClient`` and
wrap ``call`` / ``streaming_call`` / ``stream`` in friendly methods; when a typed client cannot
be loaded, the node gets a plain ``DriverClient`` that still calls any exported method by name.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

import pydantic

from tether.errors import ClientNotAllowed, MethodNotFound

from ._interface import Interface

__all__ = ["ByteStream", "CallTarget", "DriverClient"]


class ByteStream(Protocol):
    """A blocking byte stream as clients see it."""

    def send(self, data: bytes) -> None: ...

    def receive(self) -> bytes: ...

    def send_eof(self) -> None: ...


class CallTarget(Protocol):
    """The session a client calls through (implemented by ``tether.wire``)."""

    def call(self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any: ...

    def streaming_call(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[Any]: ...

    def open_stream(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> AbstractContextManager[ByteStream]: ...


_PLAIN = (int, float, str, bool, bytes, type(None), typing.Any)


class DriverClient:
    """Client of one driver node.

    Class attributes:
        interface: the interface this client speaks; return values are rebuilt from its
            method annotations (pydantic models, dataclasses) and its version is checked.
            Methods the interface does not declare are rebuilt from the class the report
            names for them (``result_types``), when the client's allow-list lets it in.
        versions: interface versions this client speaks (default: ``{interface.version}``).

    Attributes:
        name, uuid, labels, description, methods (exported methods with signatures),
        children (child clients by name, also reachable as attributes).
    """

    interface: ClassVar[type[Interface] | None] = None
    versions: ClassVar[frozenset[int] | None] = None

    def __init__(
        self,
        *,
        target: CallTarget,
        report: dict[str, Any],
        children: dict[str, DriverClient] | None = None,
        unavailable: str | None = None,
        result_types: dict[str, type] | None = None,
    ) -> None:
        self._target = target
        self.report = report
        self.uuid: str = report["uuid"]
        self.name: str = report["name"]
        self.labels: dict[str, str] = dict(report.get("labels", {}))
        self.description: str = report.get("description", "")
        self.methods: dict[str, dict[str, Any]] = dict(report.get("methods", {}))
        self.children: dict[str, DriverClient] = dict(children or {})
        self._unavailable = unavailable
        self._result_types = result_types or {}
        self._result_adapters: dict[tuple[str, bool], pydantic.TypeAdapter[Any] | None] = {}

    @property
    def unavailable(self) -> str | None:
        """Why this node has the generic client instead of its typed one (None if it has it)."""
        return self._unavailable

    @classmethod
    def supported_versions(cls) -> frozenset[int] | None:
        if cls.versions is not None:
            return cls.versions
        if cls.interface is not None:
            return frozenset({cls.interface.version})
        return None

    # -- calling ------------------------------------------------------------------------------

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call an exported unary method and return its result.

        Raises:
            MethodNotFound, InvalidArgument, DriverError: as reported by the exporter.
            ConnectionLost: the connection died during the call.
        """
        value = self._target.call(self.uuid, method, list(args), kwargs)
        adapter = self._result_adapter(method, streaming=False)
        return value if adapter is None else adapter.validate_python(value)

    def streaming_call(self, method: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Call an exported generator method; yields its items as they arrive."""
        adapter = self._result_adapter(method, streaming=True)
        for item in self._target.streaming_call(self.uuid, method, list(args), kwargs):
            yield item if adapter is None else adapter.validate_python(item)

    def stream(self, method: str, *args: Any, **kwargs: Any) -> AbstractContextManager[ByteStream]:
        """Open a byte stream on an ``export_stream`` method (a context manager)."""
        return self._target.open_stream(self.uuid, method, list(args), kwargs)

    # -- tree ---------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        children = self.__dict__.get("children", {})
        if name in children:
            return children[name]
        methods = self.__dict__.get("methods", {})
        if name in methods and self.__dict__.get("_unavailable"):
            raise ClientNotAllowed(
                f"{self.__dict__['name']!r}: {self.__dict__['_unavailable']}; "
                f"meanwhile call it by name: .call({name!r}, ...)"
            )
        raise AttributeError(
            f"{type(self).__name__} {self.__dict__.get('name')!r} has no attribute {name!r}"
            + (f" (children: {', '.join(children)})" if children else "")
        )

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.children})

    def walk(self) -> Iterator[tuple[str, DriverClient]]:
        """``(path, client)`` for this client and every descendant."""
        yield self.name, self
        for child in self.children.values():
            for path, client in child.walk():
                yield f"{self.name}.{path}" if self.name else path, client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    _adapters: ClassVar[dict[tuple[type, str, bool], pydantic.TypeAdapter[Any] | None]] = {}
    _type_adapters: ClassVar[dict[type, pydantic.TypeAdapter[Any]]] = {}

    def _result_adapter(self, method: str, *, streaming: bool) -> pydantic.TypeAdapter[Any] | None:
        try:
            return self._result_adapters[method, streaming]
        except KeyError:
            pass
        adapter = self._interface_adapter(method, streaming=streaming)
        if adapter is None:
            cls = self._result_types.get(method)
            if cls is not None:
                adapter = DriverClient._type_adapters.get(cls)
                if adapter is None:
                    adapter = DriverClient._type_adapters[cls] = pydantic.TypeAdapter(cls)
        self._result_adapters[method, streaming] = adapter
        return adapter

    def _interface_adapter(
        self, method: str, *, streaming: bool
    ) -> pydantic.TypeAdapter[Any] | None:
        key = (type(self), method, streaming)
        try:
            return DriverClient._adapters[key]
        except KeyError:
            pass
        adapter = None
        interface = type(self).interface
        fn = getattr(interface, method, None) if interface is not None else None
        if fn is not None:
            hints = typing.get_type_hints(fn)
            returns = hints.get("return", Any)
            if streaming:
                args = typing.get_args(returns)
                returns = args[0] if args else Any
            if returns not in _PLAIN:
                adapter = pydantic.TypeAdapter(returns)
        DriverClient._adapters[key] = adapter
        return adapter


def method_not_found(node: str, method: str) -> MethodNotFound:
    return MethodNotFound(f"node {node!r} has no exported method {method!r}", method=method)
