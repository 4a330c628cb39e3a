"""What a dashboard stream's watch gathers between two reads."""

from __future__ import annotations

import asyncio

from tether.controller._lab_watch import MAX_KEYS, LabChange, LabWatch


def test_a_watch_gathers_lease_and_exporter_keys_until_taken() -> None:
    async def run() -> None:
        watch = LabWatch()
        assert not watch.changed.is_set()
        watch.note(["l:abc", "e:bench-1"])
        watch.note(["l:def"])
        assert watch.changed.is_set()
        assert watch.take() == LabChange(frozenset({"abc", "def"}), frozenset({"bench-1"}))
        assert not watch.changed.is_set()
        assert watch.take() == LabChange()

    asyncio.run(run())


def test_too_many_names_or_an_unknown_change_make_everything() -> None:
    async def run() -> None:
        watch = LabWatch()
        watch.note(f"e:bench-{i}" for i in range(MAX_KEYS + 1))
        watch.note(["l:abc"])  # nothing more is kept once it is everything
        assert watch.take() == LabChange(everything=True)
        watch.note(["l:abc"])
        watch.note_everything()
        assert watch.take() == LabChange(everything=True)
        assert watch.take() == LabChange()

    asyncio.run(run())
