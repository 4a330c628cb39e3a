"""Service directories: what a driver uses (incoming) and what it offers (outgoing).

A directory maps ``(interface name, instance)`` to an implementation. ``connect`` returns a
:class:`ServiceProxy` that exposes only the interface's methods, each as an async callable.
When the implementation lives on another event loop (a test-kit background dispatcher), the
proxy runs each call on that loop and awaits the result, so callers never touch a foreign
loop's objects directly.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tether.errors import TetherError

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
            loop = asyncio.events._get_running_loop()
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
    """The client side of an in-process service: the interface's methods, awaitable."""

    def __init__(
        self, interface: type[Interface], impl: Any, loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self._interface = interface
        self._impl = impl
        self._loop = loop
        self._methods = interface_methods(interface)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name not in self._methods:
            raise AttributeError(
                f"{self._interface.__qualname__} has no method {name!r} "
                f"(methods: {', '.join(sorted(self._methods))})"
            )
        bound = getattr(self._impl, name)
        loop = self._loop

        async def call(*args: Any, **kwargs: Any) -> Any:
            if loop is None or loop is asyncio.get_running_loop():
                return await _maybe_await(bound(*args, **kwargs))
            # The method itself is called on its own loop, not here (sync methods too).
            future = asyncio.run_coroutine_threadsafe(_call(bound, args, kwargs), loop)
            return await asyncio.wrap_future(future)

        call.__name__ = name
        return call

    def __repr__(self) -> str:
        return f"<ServiceProxy {self._interface.name} -> {type(self._impl).__qualname__}>"


async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return await _maybe_await(fn(*args, **kwargs))


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
