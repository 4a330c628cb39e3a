"""The exporters' heartbeats for ``bench.controller``, sent from a process of their own.

5,000 exporters beating every 30 s are about 167 TLS requests a second. Sent from the bench's
own event loop, which also runs the 500 long-polls, the probes and Chromium's driver, they
saturated that loop: every figure then measured the bench's lag, not the controller's. In a
process of their own they share nothing with the timed clients but the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import ssl
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

import httpx

__all__ = ["Heartbeats", "Lab"]


class Lab:
    """The controller under test: its URL and the TLS context that trusts it."""

    def __init__(self, url: str, context: ssl.SSLContext) -> None:
        self.url = url
        self.context = context

    def client(self, token: str | None = None, connections: int = 4) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            base_url=self.url,
            verify=self.context,
            headers=headers,
            timeout=120,
            limits=httpx.Limits(max_connections=connections),
        )


@dataclass
class _Shared:
    """What the bench and its heartbeat process share: when to stop, when every exporter is
    online, and the count of answered and failed heartbeats."""

    stop: Event
    online: Event
    ok: Synchronized[int]
    failed: Synchronized[int]


class Heartbeats:
    """Every exporter's heartbeats, from a child process: one quick round (everyone online),
    then each exporter every ``interval`` seconds until :meth:`stop`.

    One process: on two cores a second sender reached 123 heartbeats/s instead of 114 but
    took the CPU from the controller under test (grant p50 41 ms instead of 24).
    """

    def __init__(self, url: str, ca: str, tokens: list[str], interval: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._shared = _Shared(
            context.Event(),
            context.Event(),
            context.Value("q", 0),
            context.Value("q", 0),
        )
        self._process = context.Process(
            target=_main, args=(url, ca, tokens, interval, self._shared), daemon=True
        )
        self._process.start()

    @property
    def ok(self) -> int:
        return self._shared.ok.value

    @property
    def failed(self) -> int:
        return self._shared.failed.value

    async def wait_online(self) -> None:
        """Until the first round is done (every exporter has beaten once)."""
        while not await asyncio.to_thread(self._shared.online.wait, 1.0):
            if not self._process.is_alive():
                raise RuntimeError("the heartbeat process died")

    async def stop(self) -> None:
        self._shared.stop.set()
        await asyncio.to_thread(self._process.join, 60)
        if self._process.is_alive():
            self._process.kill()


def _main(url: str, ca: str, tokens: list[str], interval: float, shared: _Shared) -> None:
    lab = Lab(url, ssl.create_default_context(cafile=ca))
    asyncio.run(_beat_all(lab, tokens, interval, shared))


async def _beat_all(lab: Lab, tokens: list[str], interval: float, shared: _Shared) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    watcher = loop.run_in_executor(
        None, lambda: (shared.stop.wait(), loop.call_soon_threadsafe(stopping.set))
    )
    async with lab.client(connections=16) as http:

        async def beat(token: str) -> None:
            try:
                answer = await http.post(
                    "/v1/exporter/heartbeat",
                    json={},
                    headers={"Authorization": f"Bearer {token}"},
                )
                counter = shared.ok if answer.status_code == 200 else shared.failed
            except httpx.HTTPError:
                counter = shared.failed
            with counter.get_lock():
                counter.value += 1

        queue: asyncio.Queue[str] = asyncio.Queue()
        # Last first: on a loaded machine the first round can outlast the heartbeat timeout,
        # and the busy exporters (the first ones, leased right after) must be online then.
        for token in reversed(tokens):
            queue.put_nowait(token)

        async def worker() -> None:
            while not queue.empty():
                await beat(queue.get_nowait())

        await asyncio.gather(*(worker() for _ in range(16)))
        shared.online.set()
        in_flight: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        sent = 0
        while not stopping.is_set():
            # Spread the steady heartbeats evenly over the interval.
            due = start + sent * interval / len(tokens)
            delay = due - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                continue
            if len(in_flight) >= 256:
                # The controller answers slower than heartbeats are due: wait (and count the
                # lag in the achieved rate) rather than pile up requests without bound.
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            task: asyncio.Task[Any] = asyncio.ensure_future(beat(tokens[sent % len(tokens)]))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += 1
        await asyncio.gather(*in_flight, return_exceptions=True)
    await watcher
