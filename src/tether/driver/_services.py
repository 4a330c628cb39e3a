"""Service directories: what a driver uses (incoming) and what it offers (outgoing).

A directory maps ``(interface name, instance)`` to an implementation. ``connect`` returns a
:class:`ServiceProxy` that exposes only the interface's methods, each as an async callable.
When the implementation lives on another event loop (a test-kit background dispatcher), the
proxy runs each call on that loop and awaits the result, so callers never touch a foreign
loop's objects directly.

A proxy is as strict as the wire: arguments and results make the same msgpack round trip a
remote call makes (a tuple arrives as a list, a model as its dict), arguments are then bound
and validated against the implementation's exported signature (a driver's own hints; for any
other implementation the interface's declaration), and results are rebuilt from the
interface's return annotation as a typed client would. So ``level("7")`` calls ``level(7)``,
``level("lots")`` raises ``InvalidArgument``, and a result the wire could not carry raises
``DriverError`` in a unit test too, not first on the exporter.
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pydantic

from tether.errors import DriverError, LocalProtocolError, TetherError

from ._export import ExportedMethod, MethodKind, exported_methods, interface_exports
from ._interface import Interface, interface_methods

__all__ = ["ServiceDirectory", "ServiceNotFound", "ServiceProxy"]


class ServiceNotFound(TetherError, LookupError):
    """No service is offered under that interface and instance."""


def _key(interface: type[Interface] | str) -> str:
    if isinstance(interface, str):
        return interface
    if not interface.name:
        raise TypeError(f"{interface.__qualname__} has no interface name")
    return interface.name


@dataclass(frozen=True, slots=True)
class _Entry:
    impl: Any
    loop: asyncio.AbstractEventLoop | None


class ServiceDirectory:
    """A set of services by interface and instance name (default instance: ``"default"``)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}

    def add_service(
        self,
        interface: type[Interface] | str,
        impl: Any,
        instance: str = "default",
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Offer ``impl`` under ``interface`` and ``instance``.

        Args:
            loop: the event loop ``impl`` belongs to; defaults to the caller's running loop
                (none when called outside a loop). Callers on another loop reach ``impl``
                through a proxy that runs each call on this loop.

        Raises:
            ValueError: that interface and instance is offered already.
        """
        key = (_key(interface), instance)
        if key in self._entries:
            raise ValueError(f"service {key[0]!r} instance {instance!r} is offered already")
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None  # offered outside a loop: callers on any loop call it directly
        self._entries[key] = _Entry(impl, loop)

    def remove_service(self, interface: type[Interface] | str, instance: str = "default") -> None:
        """Withdraw a service; raises ServiceNotFound when it is not offered."""
        key = (_key(interface), instance)
        if self._entries.pop(key, None) is None:
            raise ServiceNotFound(f"no service {key[0]!r} instance {instance!r} to remove")

    def services(self) -> list[tuple[str, str]]:
        """``(interface name, instance)`` of every offered service, sorted."""
        return sorted(self._entries)

    def get(self, interface: type[Interface] | str, instance: str = "default") -> Any:
        """The implementation itself (same-loop callers only)."""
        return self._lookup(interface, instance).impl

    def connect(self, interface: type[Interface], instance: str = "default") -> ServiceProxy:
        """A proxy exposing ``interface``'s methods of the service, each awaitable.

        Raises:
            ServiceNotFound: nothing is offered under that interface and instance; the message
                lists what is.
        """
        entry = self._lookup(interface, instance)
        return ServiceProxy(interface, entry.impl, entry.loop)

    def _lookup(self, interface: type[Interface] | str, instance: str) -> _Entry:
        key = (_key(interface), instance)
        entry = self._entries.get(key)
        if entry is None:
            offered = ", ".join(f"{n}[{i}]" for n, i in sorted(self._entries)) or "nothing"
            raise ServiceNotFound(
                f"no service {key[0]!r} instance {instance!r} is offered (offered: {offered})"
            )
        return entry


class ServiceProxy:
    """The client side of an in-process service: the interface's methods, awaitable, with the
    wire's conversions (see the module docstring)."""

    def __init__(
        self, interface: type[Interface], impl: Any, loop: asyncio.AbstractEventLoop | None
    ) -> None:
        from ._driver import Driver  # the driver module imports this one

        self._interface = interface
        self._impl = impl
        self._loop = loop
        self._methods = interface_methods(interface)
        self._declared = interface_exports(interface)
        self._own = exported_methods(type(impl)) if isinstance(impl, Driver) else {}

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name not in self._methods:
            raise AttributeError(
                f"{self._interface.__qualname__} has no method {name!r} "
                f"(methods: {', '.join(sorted(self._methods))})"
            )
        bound = getattr(self._impl, name)
        loop = self._loop
        method = self._own.get(name) or self._declared[name]
        convert = _result_converter(self._interface, self._declared[name], method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            sent_args, sent_kwargs = _through_wire((args, kwargs), f"{name}() arguments")
            call_args, call_kwargs = method.bind(sent_args, sent_kwargs)
            if loop is None or loop is asyncio.get_running_loop():
                value = await _maybe_await(bound(*call_args, **call_kwargs))
            else:
                # The method itself is called on its own loop, not here (sync methods too).
                future = asyncio.run_coroutine_threadsafe(
                    _call(bound, call_args, call_kwargs), loop
                )
                value = await asyncio.wrap_future(future)
            return convert(value)

        call.__name__ = name
        return call

    def __repr__(self) -> str:
        return f"<ServiceProxy {self._interface.name} -> {type(self._impl).__qualname__}>"


_PLAIN = (int, float, str, bool, bytes, type(None), Any, inspect.Parameter.empty)
_ITERATORS = (
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
)
_converters: dict[tuple[type, str, MethodKind], Callable[[Any], Any]] = {}


def _result_converter(
    interface: type[Interface], declared: ExportedMethod, method: ExportedMethod
) -> Callable[[Any], Any]:
    """What a remote call does to a result: the wire round trip, then the typed client's
    rebuild from the interface's annotation. Byte streams pass as they are."""
    key = (interface, declared.name, method.kind)
    converter = _converters.get(key)
    if converter is not None:
        return converter
    if MethodKind.BYTE_STREAM in (method.kind, declared.kind):
        _converters[key] = _unchanged
        return _unchanged
    returns = declared.signature.return_annotation
    streaming = method.kind is MethodKind.STREAMING or typing.get_origin(returns) in _ITERATORS
    if streaming:
        item_args = typing.get_args(returns)
        returns = item_args[0] if item_args else Any
    adapter = None
    if returns not in _PLAIN:
        try:
            adapter = pydantic.TypeAdapter(returns)
        except pydantic.PydanticSchemaGenerationError:
            adapter = None  # not data a typed client could rebuild: the plain round trip only
    what = f"{declared.name}() result"

    def value(result: Any) -> Any:
        if hasattr(result, "__aenter__"):
            return result  # a byte stream's context manager (a fake's, undeclared): as it is
        plain = _through_wire(result, what)
        return plain if adapter is None else adapter.validate_python(plain)

    def items(result: Any) -> Any:
        return _items(result, value)

    converter = items if streaming else value
    _converters[key] = converter
    return converter


def _unchanged(result: Any) -> Any:
    return result


async def _items(source: Any, convert: Callable[[Any], Any]) -> AsyncIterator[Any]:
    if hasattr(source, "__aiter__"):
        async for item in source:
            yield convert(item)
    else:
        for item in source:
            yield convert(item)


def _encode_extension(value: Any) -> Any:
    """The wire's rules for what msgpack lacks (``tether.wire``'s frame codec has the same)."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot encode a {type(value).__qualname__}")


_encode = msgspec.msgpack.Encoder(enc_hook=_encode_extension).encode
_decode = msgspec.msgpack.Decoder().decode


def _through_wire(value: Any, what: str) -> Any:
    try:
        encoded = _encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        if what.endswith("arguments"):
            raise LocalProtocolError(f"{what}: value cannot be sent on the wire: {exc}") from exc
        raise DriverError(
            f"{what} cannot be sent: value cannot be sent on the wire: {exc}",
            remote_type="TypeError",
        ) from exc
    return _decode(encoded)


async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return await _maybe_await(fn(*args, **kwargs))


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
