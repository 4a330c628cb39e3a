"""One phase of ``bench.hostile``: a flood in its own process while a legitimate client is
timed, and the verdict against the targets (p50 within 3x of idle, RSS within 200 MB)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench._report import median

__all__ = ["MAX_RATIO", "MAX_RSS_OVER_IDLE_MB", "Samples", "under_flood"]

MAX_RATIO = 3.0
MAX_RSS_OVER_IDLE_MB = 200.0


@dataclass
class Samples:
    """What a phase's legitimate client saw: the seconds each timed request took, by figure
    name (the first is the call count), the target's RSS readings, and the failures."""

    timed: dict[str, list[float]]
    rss: list[float] = field(default_factory=list)
    failures: int = 0

    def figures(self) -> dict[str, Any]:
        """``<name>_p50_ms`` for each timed name, ``rss_max_mb``, ``calls`` and ``failures``."""
        figures: dict[str, Any] = {
            f"{name}_p50_ms": median(seconds) * 1000 for name, seconds in self.timed.items()
        }
        figures["rss_max_mb"] = max(self.rss)
        figures["calls"] = len(next(iter(self.timed.values())))
        figures["failures"] = self.failures
        return figures


def under_flood(
    flood: Callable[..., None],
    args: Sequence[Any],
    measure: Callable[[], dict[str, Any]],
    idle: dict[str, Any],
    timed: Sequence[str],
    settle: float,
) -> dict[str, Any]:
    """Run ``flood(*args, stop)`` in a child process, let it build up for ``settle`` seconds,
    then ``measure()``; stop the flood. Adds ``<name>_ratio`` (to ``idle``) for each
    ``<name>_p50_ms`` in ``timed``, ``rss_over_idle_mb`` and ``ok``."""
    stop = multiprocessing.Event()
    worker = multiprocessing.Process(target=flood, args=(*args, stop), daemon=True)
    worker.start()
    try:
        time.sleep(settle)
        loaded = measure()
    finally:
        stop.set()
        worker.join(30)
        if worker.is_alive():
            worker.kill()
            worker.join()
    ratios = [loaded[f"{name}_p50_ms"] / idle[f"{name}_p50_ms"] for name in timed]
    for name, ratio in zip(timed, ratios, strict=True):
        loaded[f"{name}_ratio"] = ratio
    loaded["rss_over_idle_mb"] = loaded["rss_max_mb"] - idle["rss_max_mb"]
    loaded["ok"] = (
        max(ratios) <= MAX_RATIO
        and loaded["rss_over_idle_mb"] <= MAX_RSS_OVER_IDLE_MB
        and loaded["failures"] == 0
    )
    return loaded
