"""The controller service: the store on database threads, waiters, and background upkeep.

Theory of operation. Store operations are synchronous and short; they run on a thread pool
(one thread for SQLite, whose writers take turns anyway; several for PostgreSQL). Each
operation reports the leases and exporters it changed (:class:`~._records.Changes`); the
controller wakes the long-polls waiting on those keys and, on PostgreSQL, publishes them with
``NOTIFY`` so long-polls held by other replicas wake too.

One background task (the *upkeep*) writes collected heartbeats, ends leases at their end
time (it sleeps exactly until the next one is due, or until a grant makes a closer deadline),
and now and then runs a grant pass as a safety net.

A waiter registers *before* reading the state it waits on, so a change that lands between the
read and the wait still wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import text

from tether.errors import ControllerError

from . import _audit as audit_log
from ._admin import Admin
from ._database import Database
from ._lab_watch import LabWatch
from ._limits import Limits
from ._records import Changes, Identity, LeaseRecord, LeaseState
from ._store import Store

__all__ = ["Controller", "lease_version"]

_log = logging.getLogger("tether.controller")
_P = ParamSpec("_P")
_T = TypeVar("_T")
_CHANNEL = "tether_changes"
_SAFETY_PASS_SECONDS = 5.0


class Controller:
    """The lab's controller: identities, exporters, the lease queue, on one database.

    Args:
        database: where state lives (migrated by :meth:`start`).
        heartbeat_interval: what exporters are told to use, seconds.
        heartbeat_timeout: silence after which an exporter is offline, seconds.
        relay_url: advertised in leases as ``relay`` (set by the relay when it runs).
        clock: seconds since the epoch.
        limits: the queue's bounds (pending requests per client, poll and claim timeouts).
        audit_retention: how long audit entries are kept, seconds (default 90 days).
    """

    def __init__(
        self,
        database: Database,
        *,
        heartbeat_interval: float = 10.0,
        heartbeat_timeout: float = 30.0,
        relay_url: str | None = None,
        clock: Callable[[], float] = time.time,
        limits: Limits | None = None,
        audit_retention: float = 90 * 86400.0,
    ) -> None:
        if heartbeat_timeout <= heartbeat_interval:
            raise ControllerError(
                f"heartbeat timeout ({heartbeat_timeout:g} s) must be longer than the interval "
                f"({heartbeat_interval:g} s)",
                code="bad_config",
            )
        self.database = database
        self.limits = limits or Limits()
        self.store = Store(
            database,
            heartbeat_timeout=heartbeat_timeout,
            clock=clock,
            max_pending_per_client=self.limits.max_pending_per_client,
        )
        self.admin = Admin(database, clock=clock)
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.relay_url = relay_url
        self.clock = clock
        self._inline = database.is_sqlite
        self._executor = ThreadPoolExecutor(
            max_workers=1 if database.is_sqlite else 8, thread_name_prefix="tether-db"
        )
        # Listings can be long (a client's queue, a big lab): never on the event loop.
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tether-db-read")
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._seen: dict[str, float] = {}
        # Set when the next lease end may have moved (a grant, an end) or the upkeep should
        # run now (``_run_upkeep`` also set: poke, another replica's change).
        self._deadline_moved = asyncio.Event()
        self._run_upkeep = False
        self._tasks: list[asyncio.Task[None]] = []
        # Heartbeat mirror: live leases and hook flags per exporter (None: load everything).
        self._mirror: dict[str, list[LeaseRecord]] | None = None
        self._hooks: dict[str, tuple[bool, str | None]] = {}
        #: Second agents refused, per exporter (shown to the admin in ``/v1/exporters``).
        self.agents_refused: dict[str, int] = {}
        # Client polls of pending leases and first sights of granted ones, written in batches.
        self._polled: dict[str, float] = {}
        # When each lease with a long-poll in progress was last marked polled.
        self._long_polls_marked: dict[str, float] = {}
        self._claimed: dict[str, float] = {}
        self._stale: set[str] = set()
        self._versions: tuple[int, int] | None = None
        self._closing = False
        self._listener: Any = None
        self._lab_watchers: set[LabWatch] = set()
        self._auth_failures: dict[str, int] = {}
        self.audit_retention = audit_retention
        self._pruned_at = 0.0

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate the database and start the upkeep (and the NOTIFY listener on PostgreSQL)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.database.migrate)
        self._versions = await self.run_db(self.store.versions)
        loop = asyncio.get_running_loop()
        if not self.database.is_sqlite:
            await self._listen()
        self._tasks.append(loop.create_task(self._upkeep(), name="tether-controller-upkeep"))

    async def close(self) -> None:
        """Wake every waiter, stop the upkeep, write pending heartbeats, release the database."""
        self.wake_all()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._listener is not None:
            await self._listener.close()
        with contextlib.suppress(ControllerError):
            await self.run_db(self.store.flush_heartbeats, self._take_seen())
            await self.run_db(self.store.flush_polls, *self._take_polls())
        self._executor.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.database.dispose()

    def wake_all(self) -> None:
        """Answer every long-poll now (at shutdown)."""
        self._closing = True
        self._wake_everyone()

    def _wake_everyone(self) -> None:
        for watch in self._lab_watchers:
            watch.note_everything()
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)

    async def run_db(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a blocking store call: on the database threads (PostgreSQL), or right here.

        SQLite writers take turns on one file anyway and each call is well under a
        millisecond to a few; running them on the event loop saves two thread hops a call,
        which under load cost more than the call itself.
        """
        if self._inline:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # who acts, for the audit log
        return await loop.run_in_executor(self._executor, lambda: context.run(fn, *args, **kwargs))

    async def run_read(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a read-only store call that may take long, on a reader thread (never inline).

        ``fn`` must only read (on SQLite it runs in a deferred transaction, beside writers).
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(*args, **kwargs))

    # -- API used by the HTTP layer and the relay ---------------------------------------------

    async def identify(self, token: str) -> Identity | None:
        """The identity behind a bearer token, or None."""
        return await self.run_db(self.store.identify, token)

    async def authorize_relay(
        self, lease_id: str, token: str, role: str, exporter: str = ""
    ) -> str | None:
        """The identity's name when ``token`` may join ``lease_id``'s relay as ``role``
        (client / exporter), else None.

        The lease must be ready; a client token must be its holder (and ``exporter``, when
        given, one of the lease's exporters), an exporter token one of its exporters. Never
        raises for bad input.
        """
        try:
            identity = await self.identify(token)
            if identity is None or identity.kind != role:
                return None
            lease = await self.run_db(self.store.get_lease, lease_id)
        except ControllerError:
            return None
        if lease is None or lease.state is not LeaseState.READY:
            return None
        if role == "client":
            if lease.client == identity.name and (not exporter or exporter in lease.exporters):
                self.note_claimed(lease_id)
                return identity.name
            return None
        return identity.name if identity.name in lease.exporters else None

    async def wait_lease_change(
        self,
        lease_id: str,
        state: str,
        timeout: float,  # noqa: ASYNC109 (part of the relay contract)
    ) -> str | None:
        """The lease's state once it differs from ``state``, or after ``timeout`` seconds.

        Returns None for an unknown lease.
        """
        lease = await self.wait_lease(lease_id, state, timeout)
        return None if lease is None else lease.state.value

    async def wait_lease(
        self, lease_id: str, state: str | None, wait: float, *, hooks: int | None = None
    ) -> LeaseRecord | None:
        """The lease, as soon as its state differs from ``state`` (or after ``wait`` seconds);
        with ``hooks``, also as soon as its ``hooks_version`` passes it."""
        deadline = time.monotonic() + wait
        while True:
            future = self._watch(f"l:{lease_id}")
            try:
                lease = await self.run_db(self.store.get_lease, lease_id)
                remaining = deadline - time.monotonic()
                if lease is None or state is None or lease.state.value != state:
                    return lease
                if hooks is not None and lease.hooks_version > hooks:
                    return lease
                if remaining <= 0 or self._closing:
                    return lease
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), remaining)
            finally:
                self._unwatch(f"l:{lease_id}", future)

    async def wait_exporter_leases(
        self, name: str, version: str | None, wait: float
    ) -> tuple[list[LeaseRecord], str]:
        """The exporter's live leases once their version differs from ``version``."""
        deadline = time.monotonic() + wait
        while True:
            future = self._watch(f"e:{name}")
            try:
                current = await self.run_db(self.store.exporter_leases, name)
                tag = lease_version(current)
                remaining = deadline - time.monotonic()
                if tag != version or remaining <= 0 or self._closing:
                    return current, tag
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), remaining)
            finally:
                self._unwatch(f"e:{name}", future)

    async def check_versions(self) -> bool:
        """Notice identity and exporter changes made elsewhere (e.g. by ``tether admin``).

        Drops the token cache and the heartbeat mirror when identities changed.

        Returns:
            True when anything changed since the last check.
        """
        versions = await self.run_db(self.store.versions)
        previous, self._versions = self._versions, versions
        if previous is None or previous == versions:
            return False
        if previous[1] != versions[1]:
            self.store.forget_tokens()
            self._mirror = None
        return True

    @property
    def closing(self) -> bool:
        """True once the controller is shutting down (long-lived streams end)."""
        return self._closing

    async def end_lease(
        self, admin: Identity, lease_id: str, address: str | None = None
    ) -> LeaseRecord:
        """An admin ends a lease (pending or ready); recorded in the audit log."""
        with audit_log.acting(admin.name, address):
            lease, changes = await self.run_db(self.store.end_lease, admin.name, lease_id)
        await self.apply(changes)
        return lease

    async def set_maintenance(
        self,
        admin: Identity,
        name: str,
        reason: str | None,
        *,
        end_lease: bool = False,
        address: str | None = None,
    ) -> list[str]:
        """Take an exporter out of the pool (``reason``) or put it back (None).

        Returns:
            The ids of the leases this ended (only with ``end_lease``).
        """
        with audit_log.acting(admin.name, address):
            ended, changes = await self.run_db(
                self.store.set_maintenance, name, reason, end_lease=end_lease
            )
        await self.apply(changes)
        return ended

    async def set_health(self, name: str, failure: str | None) -> None:
        """An exporter reports its health check: ``failure`` is the failed check's output."""
        with audit_log.acting(name, None):
            changes = await self.run_db(self.store.set_health, name, failure)
        await self.apply(changes)

    @contextlib.contextmanager
    def watch_lab(self) -> Iterator[LabWatch]:
        """Gathers which leases and exporters change, here or in another replica.

        The dashboard's live stream waits on it and takes what changed before each read.
        """
        watch = LabWatch()
        self._lab_watchers.add(watch)
        try:
            yield watch
        finally:
            self._lab_watchers.discard(watch)

    async def note_auth_failure(self, address: str) -> None:
        """Record a failed authentication from ``address`` in the audit log.

        The first failure from an address is written at once; more from it are counted and
        written by the upkeep about once a second, one entry with the count, so a flood of
        bad tokens writes little.
        """
        if address in self._auth_failures:
            self._auth_failures[address] += 1
        elif len(self._auth_failures) < 10_000:
            self._auth_failures[address] = 0
            await self.run_db(self.admin.write_audit, {address: 1}, None)

    def poke(self) -> None:
        """Make the upkeep run now (tests call it after moving a fake clock)."""
        self._run_upkeep = True
        self._deadline_moved.set()

    def heartbeat_seen(self, name: str) -> None:
        """Note a heartbeat; the upkeep writes them in batches."""
        self._seen[name] = self.clock()

    async def exporter_heartbeat(
        self, name: str, hook: bool, agent: str | None = None
    ) -> list[LeaseRecord]:
        """Record a heartbeat (and a hook status change); the exporter's live leases.

        Answered from the in-memory mirror: no database work unless something changed.

        Raises:
            ControllerError: the exporter was deleted (401); ``agent`` is not the agent that
                registered it last (``agent_fenced``, 409).
        """
        mirror = await self._fresh_mirror(name)
        self._check_agent(name, agent)
        self.heartbeat_seen(name)
        if self._hooks[name][0] != hook:
            changes = await self.run_db(self.store.set_hook, name, hook)
            changes.exporters.add(name)
            await self.apply(changes)
            mirror = await self._fresh_mirror(name)
        return list(mirror.get(name, ()))

    async def exporter_offline(self, name: str, agent: str | None = None) -> list[LeaseRecord]:
        """The exporter is shutting down: offline now (never granted) until it registers or
        heartbeats again; its leases stay (it may come back before they end).

        Raises:
            ControllerError: the exporter was deleted (401), or ``agent`` was fenced (409).
        """
        await self._fresh_mirror(name)
        self._check_agent(name, agent)
        self._seen.pop(name, None)
        changes = await self.run_db(self.store.set_offline, name)
        await self.apply(changes)
        mirror = await self._fresh_mirror(name)
        if name not in self._hooks:
            raise ControllerError(f"exporter {name!r} was deleted", code="unauthorized", status=401)
        return list(mirror.get(name, ()))

    async def register(
        self, name: str, labels: dict[str, str], report: Any, agent: str | None
    ) -> dict[str, str]:
        """An exporter (agent) registers; the effective labels.

        Raises:
            ControllerError: another agent serves the exporter (``agent_conflict``, 409).
        """
        try:
            labels, changes = await self.run_db(
                self.store.register, name, labels, report, agent, self._seen.get(name)
            )
        except ControllerError as exc:
            if exc.code == "agent_conflict":
                self.agents_refused[name] = self.agents_refused.get(name, 0) + 1
                _log.warning(
                    "exporter %s: refused a second agent (%d so far): another one is live",
                    name,
                    self.agents_refused[name],
                )
            raise
        await self.apply(changes)
        self._stale.add(name)
        return labels

    async def verify_agent(self, name: str, agent: str | None) -> None:
        """Raise unless ``agent`` is the exporter's registered agent (None: not checked).

        Raises:
            ControllerError: as :meth:`_check_agent`.
        """
        await self._fresh_mirror(name)
        self._check_agent(name, agent)

    def _check_agent(self, name: str, agent: str | None) -> None:
        """Raise unless ``agent`` is the exporter's registered agent (None: not checked).

        Raises:
            ControllerError: the exporter was deleted (401), or another agent registered
                since (``agent_fenced``, 409).
        """
        if name not in self._hooks:
            raise ControllerError(f"exporter {name!r} was deleted", code="unauthorized", status=401)
        current = self._hooks[name][1]
        if agent is not None and current is not None and current != agent:
            raise ControllerError(
                f"exporter {name!r} is now served by another agent that registered since; "
                "this one must stop",
                code="agent_fenced",
                status=409,
                exporter=name,
            )

    async def _fresh_mirror(self, name: str) -> dict[str, list[LeaseRecord]]:
        if self._mirror is None:
            self._stale.clear()
            leases, hooks = await self.run_db(self.store.load_mirror, None)
            self._mirror, self._hooks = leases, hooks
        elif self._stale or name not in self._hooks:
            names, self._stale = self._stale | {name}, set()
            leases, hooks = await self.run_db(self.store.load_mirror, names)
            if self._mirror is not None:
                for each in names:
                    self._mirror.pop(each, None)
                    self._hooks.pop(each, None)
                self._mirror.update(leases)
                self._hooks.update(hooks)
        return self._mirror if self._mirror is not None else {}

    async def apply(self, changes: Changes) -> None:
        """Wake waiters on ``changes`` here and, on PostgreSQL, in the other replicas."""
        if not changes:
            return
        self._wake(changes)
        if changes.exporters:  # a grant or an end: the next expiry may have moved
            self._deadline_moved.set()
        if not self.database.is_sqlite:
            with contextlib.suppress(ControllerError):
                await self.run_db(self._publish, changes)

    # -- internals ----------------------------------------------------------------------------

    def note_seen_by_client(self, lease: LeaseRecord) -> None:
        """The lease's client just read it: a pending one is polled, a ready one claimed."""
        if lease.state is LeaseState.PENDING:
            self._polled[lease.id] = self.clock()
        elif lease.state is LeaseState.READY and lease.claimed_at is None:
            self._claimed.setdefault(lease.id, self.clock())

    def note_claimed(self, lease_id: str) -> None:
        """The lease's client joined its relay."""
        self._claimed.setdefault(lease_id, self.clock())

    def _take_polls(self) -> tuple[dict[str, float], dict[str, float]]:
        now = self.clock()
        # A long-poll in progress is a client polling right now. Marked again only every
        # tenth of the poll timeout: rewriting a full queue's rows every second buys nothing.
        every = self.limits.pending_poll_timeout / 10
        marked: dict[str, float] = {}
        for key in self._waiters:
            if key.startswith("l:"):
                lease_id = key[2:]
                last = self._long_polls_marked.get(lease_id)
                if last is None or not 0 <= now - last < every:
                    self._polled[lease_id] = last = now
                marked[lease_id] = last
        self._long_polls_marked = marked
        polled, self._polled = self._polled, {}
        claimed, self._claimed = self._claimed, {}
        return polled, claimed

    def _take_seen(self) -> dict[str, float]:
        seen, self._seen = self._seen, {}
        return seen

    def _watch(self, key: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, set()).add(future)
        return future

    def _unwatch(self, key: str, future: asyncio.Future[None]) -> None:
        futures = self._waiters.get(key)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiters[key]

    def _wake_keys(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for watch in self._lab_watchers:
            watch.note(keys)
        for key in keys:
            for future in self._waiters.get(key, ()):
                if not future.done():
                    future.set_result(None)

    def _wake(self, changes: Changes) -> None:
        self._stale |= changes.exporters
        self._wake_keys(f"l:{i}" for i in changes.leases)
        self._wake_keys(f"e:{n}" for n in changes.exporters)

    def _publish(self, changes: Changes) -> None:
        keys = [f"l:{i}" for i in changes.leases] + [f"e:{n}" for n in changes.exporters]
        chunks: list[list[str]] = [[]]
        size = 0
        for key in keys:
            # NOTIFY payloads must stay under 8000 bytes.
            if size + len(key) > 7000:
                chunks.append([])
                size = 0
            chunks[-1].append(key)
            size += len(key) + 1
        with self.database.begin("publishing changes") as conn:
            for chunk in chunks:
                conn.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": _CHANNEL, "payload": " ".join(chunk)},
                )

    async def _listen(self) -> None:
        await self._connect_listener()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._notifications(), name="tether-listen"))

    async def _connect_listener(self) -> None:
        import psycopg

        url = self.database.engine.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        try:
            self._listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            await self._listener.execute(f"LISTEN {_CHANNEL}")
        except psycopg.Error as exc:
            raise ControllerError(
                f"cannot listen for changes on {self.database.url}: {exc}",
                code="database_error",
                status=503,
            ) from exc

    async def _notifications(self) -> None:
        import psycopg

        while True:
            try:
                async for note in self._listener.notifies():
                    keys = note.payload.split()
                    self._stale.update(key[2:] for key in keys if key.startswith("e:"))
                    self._wake_keys(keys)
                    self._run_upkeep = True
                    self._deadline_moved.set()
            except psycopg.Error as exc:
                _log.warning("controller: lost the change feed (%s); reconnecting", exc)
            with contextlib.suppress(psycopg.Error):
                await self._listener.close()
            while True:
                await asyncio.sleep(1.0)
                try:
                    await self._connect_listener()
                    break
                except ControllerError as exc:
                    _log.warning("controller: %s", exc)
            # Changes made while we were deaf were missed: forget the mirror, and let every
            # waiter re-read (only now, so nothing from the gap slips through).
            self._mirror = None
            self._wake_everyone()

    async def upkeep_once(self, last_pass: float | None = None) -> float:
        """One round of upkeep: write heartbeats and polls, expire due leases, end abandoned
        ones, notice admin changes, and (now and then, or after changes) run a grant pass.

        Returns:
            When the last grant pass ran (``time.monotonic()``).
        """
        if last_pass is None:
            last_pass = time.monotonic() - 2 * _SAFETY_PASS_SECONDS
        changes = await self.run_db(self.store.flush_heartbeats, self._take_seen())
        changes.update(await self.run_db(self.store.expire_due))
        await self.run_db(self.store.flush_polls, *self._take_polls())
        changes.update(
            await self.run_db(
                self.store.lapse,
                self.limits.pending_poll_timeout,
                self.limits.claim_timeout,
            )
        )
        moved = await self.check_versions()
        if moved:
            # An admin changed identities or policies (maybe ending leases): let
            # every waiter re-read.
            self._wake_everyone()
        if moved or time.monotonic() - last_pass > _SAFETY_PASS_SECONDS:
            last_pass = time.monotonic()
            changes.update(await self.run_db(self.store.run_pass))

        await self.apply(changes)
        await self._write_audit()
        return last_pass

    async def _upkeep(self) -> None:
        flush_every = min(1.0, self.heartbeat_timeout / 4)
        last_pass = time.monotonic()
        next_round = last_pass + flush_every
        while True:
            try:
                self._deadline_moved.clear()
                due = await self.run_db(self.store.next_expiry)
                delay = next_round - time.monotonic()
                if due is not None:
                    delay = min(delay, due - self.clock())
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._deadline_moved.wait(), delay)
                    if self._deadline_moved.is_set() and not self._round_due(next_round):
                        # A grant or an end moved the next expiry: only re-read it. A whole
                        # round (every long-poll's lease written as polled...) after each
                        # grant and release would cost more than the grant itself.
                        continue
                self._run_upkeep = False
                last_pass = await self.upkeep_once(last_pass)
                next_round = time.monotonic() + flush_every
            except Exception:
                # The upkeep must outlive a bad moment (database restart, a bug in one
                # pass): leases still have to expire.
                _log.exception("controller upkeep failed; retrying")
                await asyncio.sleep(flush_every)

    def _round_due(self, next_round: float) -> bool:
        """True when the upkeep's round should run now rather than at ``next_round``."""
        return self._run_upkeep or time.monotonic() >= next_round

    async def _write_audit(self) -> None:
        counted = {a: n for a, n in self._auth_failures.items() if n}
        self._auth_failures = dict.fromkeys(counted, 0)  # addresses quiet for a second leave
        now = self.clock()
        prune = now - self._pruned_at > 60.0
        if counted or prune:
            before = now - self.audit_retention if prune else None
            await self.run_db(self.admin.write_audit, counted, before)
        if prune:
            self._pruned_at = now


def lease_version(leases: list[LeaseRecord]) -> str:
    """A short tag that changes whenever an exporter's set of live leases (or ends) changes."""
    return ",".join(f"{lease.id}@{lease.ends_at!r}" for lease in leases) or "none"
