"""The controller's hook for the router relay (``tether controller serve --relay-listen URL``).

:func:`run_relay` ties a :class:`~tether.controller._relay.RelayRouter` to the controller: each
dial is authorised by ``controller.authorize_relay`` (the token must be the lease holder's or
the leased exporter's, and the lease ``ready``), and a watcher per lease in use long-polls
``controller.wait_lease_change`` so the router cuts the lease's connections the moment it is
released, expires or is revoked.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Protocol

from tether.errors import RelayRefused
from tether.wire import RelayHello

from ._relay import RelayGrant, RelayRouter

__all__ = ["LeaseAuthority", "run_relay"]

#: How long one lease-change long-poll lasts before it is renewed.
_WATCH_POLL = 60.0
_MIN_POLL = 0.5


class LeaseAuthority(Protocol):
    """What the relay needs from the controller."""

    async def authorize_relay(
        self, lease_id: str, token: str, role: str, exporter: str = ""
    ) -> str | None: ...

    async def wait_lease_change(
        self, lease_id: str, state: str, seconds: float, /
    ) -> str | None: ...


class _LeaseWatch:
    """Authorises dials and cuts a lease's connections when it stops being ``ready``."""

    def __init__(self, controller: LeaseAuthority) -> None:
        self.controller = controller
        self.router = RelayRouter(self.authorize)
        self._watchers: dict[str, asyncio.Task[None]] = {}

    async def authorize(self, hello: RelayHello) -> RelayGrant:
        name = await self.controller.authorize_relay(
            hello.lease, hello.token, hello.role, hello.exporter
        )
        if name is None:
            raise RelayRefused(
                f"this token may not use lease {hello.lease!r} as its {hello.role}: unknown "
                f"token, not the lease's {'holder' if hello.role == 'client' else 'exporter'}, "
                + (f"{hello.exporter!r} not one of its exporters, " if hello.exporter else "")
                + "or the lease is not ready",
                code="forbidden",
            )
        if hello.lease not in self._watchers:
            task = asyncio.get_running_loop().create_task(self._watch(hello.lease))
            self._watchers[hello.lease] = task
        # An exporter's dial is tagged with its name, so a client naming one is paired with it.
        exporter = name if hello.role == "exporter" else hello.exporter
        return RelayGrant(hello.lease, identity=name, exporter=exporter)

    async def _watch(self, lease_id: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                asked = loop.time()
                state = await self.controller.wait_lease_change(lease_id, "ready", _WATCH_POLL)
                if state != "ready":
                    self.router.end_lease(lease_id, f"the lease is {state or 'gone'}")
                    return
                if loop.time() - asked < _MIN_POLL:
                    # Answered at once although nothing changed (the controller is shutting
                    # down): do not spin, the answer may not even have yielded to the loop.
                    await asyncio.sleep(_MIN_POLL)
        finally:
            self._watchers.pop(lease_id, None)

    async def close(self) -> None:
        for task in list(self._watchers.values()):
            task.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        await self.router.close()


async def run_relay(
    controller: LeaseAuthority,
    listen: str,
    ssl_context: ssl.SSLContext | None,
    started: Callable[[str], None],
) -> None:
    """Serve the relay on ``listen`` until cancelled.

    Args:
        controller: the running controller (``authorize_relay``, ``wait_lease_change``).
        listen: ``tls://HOST:PORT`` (port 0 picks a free one).
        ssl_context: the relay's server context (the controller's certificate).
        started: called once listening, with the URL clients and exporters dial.
    """
    watch = _LeaseWatch(controller)
    try:
        address = await watch.router.start(listen, ssl_context)
        started(str(address))
        await asyncio.Future()  # until cancelled
    finally:
        await watch.close()
