"""Several controller processes on one PostgreSQL database serve one lab.

PostgreSQL runs on 127.0.0.1:5432 (trust auth); the fixture starts it when it is down and
makes a database with a random name for each test, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

import tether.controller
from pglab import ADMIN_DSN, scratch_database
from tether.controller import Database
from tether.controller.testing import ControllerHandle, run_controller


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with scratch_database() as url:
        yield url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    with scratch_database() as url:
        yield url


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str
) -> Iterator[list[ControllerHandle]]:
    """Three controller processes on one database, shared by this module's tests (each test
    uses its own exporter and client names)."""
    tmp = tmp_path_factory.mktemp("replicas")
    with ExitStack() as stack:
        handles = [
            stack.enter_context(
                run_controller(tmp / f"r{i}", subprocess=True, tls=False, database=pg_url)
            )
            for i in range(3)
        ]
        yield handles


async def _storm(
    replicas: list[ControllerHandle], tokens: list[str], body: dict[str, Any]
) -> list[dict[str, Any]]:
    rng = random.Random(7)
    clients = [replicas[rng.randrange(len(replicas))].async_http(t) for t in tokens]
    try:
        answers = await asyncio.gather(*(c.post("/v1/leases", json=body) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    assert [a.status_code for a in answers] == [201] * len(answers), [a.text for a in answers]
    return [a.json() for a in answers]


def test_a_storm_over_replicas_never_grants_an_exporter_twice(
    replicas: list[ControllerHandle], pg_url: str
) -> None:
    admin = replicas[0].admin
    for i in range(8):
        exporter = admin.create_exporter(f"e{i}", {"pool": "p"})
        with replicas[i % 3].http(exporter.token) as http:
            assert http.post("/v1/exporter/register", json={}).status_code == 200
    tokens = [admin.create_client(f"c{i}").token for i in range(40)]

    leases = asyncio.run(_storm(replicas, tokens, {"selector": "pool=p", "duration": "1h"}))

    ready = [item for item in leases if item["state"] == "ready"]
    granted = [name for item in ready for name in item["exporters"]]
    assert len(granted) == len(set(granted)) == 8
    pending = sorted(item["id"] for item in leases if item["state"] == "pending")
    assert len(pending) == 32
    # Every replica sees the same queue positions.
    by_token = dict(zip([item["id"] for item in leases], tokens, strict=True))
    positions = []
    for k, lease_id in enumerate(pending):
        with replicas[k % 3].http(by_token[lease_id]) as http:
            positions.append(http.get(f"/v1/leases/{lease_id}").json()["position"])
    assert sorted(positions) == list(range(1, 33))

    # The database agrees: one active grant per exporter.
    database = Database(pg_url)
    with database.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT exporter, count(*) FROM lease_exporters "
                "WHERE active AND exporter LIKE 'e%' GROUP BY exporter"
            )
        ).all()
    database.dispose()
    assert sorted(rows) == [(f"e{i}", 1) for i in range(8)]


def test_a_release_on_one_replica_wakes_a_waiter_on_another(
    replicas: list[ControllerHandle],
) -> None:
    admin = replicas[0].admin
    exporter = admin.create_exporter("w1", {})
    with replicas[0].http(exporter.token) as http:
        http.post("/v1/exporter/register", json={})
    alice, bob = admin.create_client("walt"), admin.create_client("wendy")
    with replicas[1].http(alice.token) as a, replicas[2].http(bob.token) as b:
        held = a.post("/v1/leases", json={"exporter": "w1", "duration": "1h"}).json()
        queued = b.post("/v1/leases", json={"exporter": "w1", "duration": "1h"}).json()
        assert queued["state"] == "pending"

        async def wait_and_release() -> dict[str, Any]:
            async with replicas[2].async_http(bob.token) as waiter:
                waiting = asyncio.ensure_future(
                    waiter.get(
                        f"/v1/leases/{queued['id']}", params={"wait": 30, "state": "pending"}
                    )
                )
                async with replicas[0].async_http(alice.token) as releaser:
                    released = await releaser.delete(f"/v1/leases/{held['id']}")
                    assert released.json()["state"] == "ended"
                answer = await waiting
                result: dict[str, Any] = answer.json()
                return result

        granted = asyncio.run(wait_and_release())
    assert (granted["state"], granted["exporters"]) == ("ready", ["w1"])


def test_migrations_run_once_when_replicas_start_together(fresh_pg_url: str) -> None:
    databases = [Database(fresh_pg_url) for _ in range(4)]

    async def migrate_all() -> None:
        await asyncio.gather(*(asyncio.to_thread(db.migrate) for db in databases))

    asyncio.run(migrate_all())
    with databases[0].engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        state = conn.execute(text("SELECT count(*) FROM lab_state")).scalar()
    for db in databases:
        db.dispose()
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option(
        "script_location", str(Path(tether.controller.__file__).parent / "migrations")
    )
    head = ScriptDirectory.from_config(config).get_current_head()
    assert (version, state) == (head, 1)


def test_waiters_recover_when_the_change_feed_drops(
    replicas: list[ControllerHandle], pg_url: str
) -> None:
    admin = replicas[0].admin
    exporter = admin.create_exporter("f1", {})
    with replicas[0].http(exporter.token) as http:
        http.post("/v1/exporter/register", json={})
    alice, bob = admin.create_client("fay"), admin.create_client("fred")
    with replicas[0].http(alice.token) as a, replicas[1].http(bob.token) as b:
        held = a.post("/v1/leases", json={"exporter": "f1", "duration": "1h"}).json()
        queued = b.post("/v1/leases", json={"exporter": "f1", "duration": "1h"}).json()
        name = pg_url.rsplit("/", 1)[1]
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND query LIKE 'LISTEN%%'",
                (name,),
            ).fetchall()
        assert len(killed) == 3  # one change feed per replica

        async def wait_and_release() -> dict[str, Any]:
            async with replicas[1].async_http(bob.token) as waiter:
                waiting = asyncio.ensure_future(
                    waiter.get(
                        f"/v1/leases/{queued['id']}", params={"wait": 30, "state": "pending"}
                    )
                )
                async with replicas[0].async_http(alice.token) as releaser:
                    await releaser.delete(f"/v1/leases/{held['id']}")
                answer = await waiting
                while answer.json()["state"] == "pending":  # woken by the reconnect itself
                    answer = await waiter.get(
                        f"/v1/leases/{queued['id']}", params={"wait": 30, "state": "pending"}
                    )
                result: dict[str, Any] = answer.json()
                return result

        assert asyncio.run(wait_and_release())["state"] == "ready"


def test_an_exporter_on_one_replica_learns_of_a_grant_made_by_another(
    replicas: list[ControllerHandle],
) -> None:
    admin = replicas[0].admin
    exporter = admin.create_exporter("g1", {"board": "g"})
    alice = admin.create_client("gus")
    with replicas[0].http(exporter.token) as e1, replicas[2].http(alice.token) as a:
        e1.post("/v1/exporter/register", json={})
        first = e1.post("/v1/exporter/heartbeat", json={}).json()  # fills replica 0's mirror
        assert first["leases"] == []
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(
                e1.get, "/v1/exporter/leases", params={"wait": 30, "version": first["version"]}
            )
            got = a.post("/v1/leases", json={"selector": "board=g", "duration": 60}).json()
            news = waiting.result().json()
        assert [item["id"] for item in news["leases"]] == [got["id"]]
        # The heartbeat answer (from replica 0's memory) agrees, and so after a release.
        beat = e1.post("/v1/exporter/heartbeat", json={}).json()
        assert [item["id"] for item in beat["leases"]] == [got["id"]]
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(
                e1.get, "/v1/exporter/leases", params={"wait": 30, "version": beat["version"]}
            )
            a.delete(f"/v1/leases/{got['id']}")
            assert waiting.result().json()["leases"] == []
        assert e1.post("/v1/exporter/heartbeat", json={}).json()["leases"] == []


def test_a_grant_on_one_replica_reaches_a_dashboard_stream_on_another_as_rows(
    replicas: list[ControllerHandle],
) -> None:
    admin = replicas[0].admin
    exporter = admin.create_exporter("d1", {"board": "dash"})
    with replicas[0].http(exporter.token) as http:
        assert http.post("/v1/exporter/register", json={}).status_code == 200
    viewer, carol = admin.create_admin("dash-viewer"), admin.create_client("carol")
    cookie = {"Cookie": f"tether_session={viewer.token}"}
    with (
        replicas[2].http() as page,
        page.stream("GET", "/events", headers=cookie, timeout=30) as events,
    ):
        lines = events.iter_lines()
        assert next(lines).startswith("retry:")  # the stream watches the lab from here on
        with replicas[0].http(carol.token) as http:
            granted = http.post("/v1/leases", json={"exporter": "d1", "duration": "1h"}).json()
        assert granted["state"] == "ready"
        update: dict[str, Any] = {}
        for line in lines:  # bounded by the 30 s read timeout
            if line.startswith('data: {"'):
                update = json.loads(line[len("data: ") :])
                if any(item["id"] == granted["id"] for item in update["leases"]):
                    break
    (row,) = [item for item in update["leases"] if item["id"] == granted["id"]]
    assert row["section"] == "live" and "carol" in row["row"]
    assert "leased" in update["exporters"]["d1"]
