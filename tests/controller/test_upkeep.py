"""The upkeep's rhythm: a grant or an end only makes it re-read the next lease end."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tether.controller import Controller, Database, Limits
from tether.controller._records import Changes, LeaseRecord, LeaseState
from tether.controller.testing import FakeClock


def test_a_moved_deadline_rereads_the_next_expiry_without_a_whole_round(tmp_path: Path) -> None:
    async def run() -> tuple[int, int]:
        controller = Controller(Database(f"sqlite:///{tmp_path / 'c.db'}"))
        rounds = 0
        reads = asyncio.Queue[None]()
        next_expiry, upkeep_once = controller.store.next_expiry, controller.upkeep_once

        def counting_next_expiry() -> float | None:
            reads.put_nowait(None)
            return next_expiry()

        async def counting_upkeep_once(last_pass: float | None = None) -> float:
            nonlocal rounds
            rounds += 1
            reads.put_nowait(None)
            return await upkeep_once(last_pass)

        controller.store.next_expiry = counting_next_expiry  # type: ignore[method-assign]
        controller.upkeep_once = counting_upkeep_once  # type: ignore[method-assign]
        await controller.start()
        try:
            await reads.get()  # the upkeep waits
            for _ in range(20):
                await controller.apply(Changes(exporters={"e1"}))  # as a grant does
                await reads.get()
            moved_rounds = rounds
            controller.poke()  # tests still get a whole round at once
            while rounds == moved_rounds:
                await reads.get()
            return moved_rounds, rounds - moved_rounds
        finally:
            await controller.close()

    moved_rounds, poked_rounds = asyncio.run(run())
    # 20 moved deadlines: 20 re-reads, and at most the one timed round (once a second).
    assert moved_rounds <= 1
    assert poked_rounds == 1


def test_a_long_poll_in_progress_is_written_as_polled_a_tenth_of_the_timeout_apart(
    tmp_path: Path,
) -> None:
    clock = FakeClock(1000.0)
    database = Database(f"sqlite:///{tmp_path / 'c.db'}")
    controller = Controller(database, clock=clock, limits=Limits(pending_poll_timeout=300))

    async def run() -> list[dict[str, float]]:
        controller._watch("l:abc")  # a long-poll on lease abc
        taken = [controller._take_polls()[0]]
        clock.advance(29)
        taken.append(controller._take_polls()[0])
        controller.note_seen_by_client(_pending("def"))  # a plain read is always written
        taken.append(controller._take_polls()[0])
        clock.advance(1)
        taken.append(controller._take_polls()[0])
        return taken

    assert asyncio.run(run()) == [{"abc": 1000.0}, {}, {"def": 1029.0}, {"abc": 1030.0}]


def _pending(lease_id: str) -> LeaseRecord:
    return LeaseRecord(0, lease_id, "alice", LeaseState.PENDING, [], 60.0, 60.0, 0, 0.0)
