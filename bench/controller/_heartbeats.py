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


class Heartbeats:
    """Every exporter's heartbeats, from ``processes`` child processes (each beats a share of
    the tokens): one quick round (everyone online), then each exporter every ``interval``
    seconds until :meth:`stop`. ``ok`` and ``failed`` count the answers of all of them.

    One process by default: on two cores a second sender reached 123 heartbeats/s instead of
    114 but took the CPU from the controller under test (grant p50 41 ms instead of 24).
    """

    def __init__(
        self, url: str, ca: str, tokens: list[str], interval: float, processes: int = 1
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._ok = [context.Value("q", 0) for _ in range(processes)]
        self._failed = [context.Value("q", 0) for _ in range(processes)]
        self._online = [context.Event() for _ in range(processes)]
        self._processes = [
            context.Process(
                target=_main,
                args=(
                    url,
                    ca,
                    tokens[k::processes],
                    interval,
                    self._stop,
                    self._online[k],
                    self._ok[k],
                    self._failed[k],
                ),
                daemon=True,
            )
            for k in range(processes)
        ]
        for process in self._processes:
            process.start()

    @property
    def ok(self) -> int:
        return sum(count.value for count in self._ok)

    @property
    def failed(self) -> int:
        return sum(count.value for count in self._failed)

    async def wait_online(self) -> None:
        """Until the first round is done (every exporter has beaten once)."""
        for online, process in zip(self._online, self._processes, strict=True):
            while not await asyncio.to_thread(online.wait, 1.0):
                if not process.is_alive():
                    raise RuntimeError("a heartbeat process died")

    async def stop(self) -> None:
        self._stop.set()
        for process in self._processes:
            await asyncio.to_thread(process.join, 60)
            if process.is_alive():
                process.kill()


def _main(
    url: str,
    ca: str,
    tokens: list[str],
    interval: float,
    stop: Event,
    online: Event,
    ok: Synchronized[int],
    failed: Synchronized[int],
) -> None:
    lab = Lab(url, ssl.create_default_context(cafile=ca))
    asyncio.run(_beat_all(lab, tokens, interval, stop, online, ok, failed))


async def _beat_all(
    lab: Lab,
    tokens: list[str],
    interval: float,
    stop: Event,
    online: Event,
    ok: Synchronized[int],
    failed: Synchronized[int],
) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    watcher = loop.run_in_executor(
        None, lambda: (stop.wait(), loop.call_soon_threadsafe(stopping.set))
    )
    async with lab.client(connections=16) as http:

        async def beat(token: str) -> None:
            try:
                answer = await http.post(
                    "/v1/exporter/heartbeat",
                    json={},
                    headers={"Authorization": f"Bearer {token}"},
                )
                counter = ok if answer.status_code == 200 else failed
            except httpx.HTTPError:
                counter = failed
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
        online.set()
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
