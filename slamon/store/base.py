"""What every state backend shares: the batch of pending writes, the flush, health.

A backend (SQLite file, shared PostgreSQL database) only says how rows are
written and read; it runs every statement on the store's own thread, so the
event loop never waits on the database and never encodes rows. Recording an
outcome (`note_outcome`, `add_leaf`) touches memory only; `flush` hands the
batch to the thread in one transaction, and on failure puts it back in front
of what arrived since, so nothing is lost while the database refuses writes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from slamon.util.docpack import kept_document

T = TypeVar("T")

#: journal events kept in memory while the database refuses writes; past this the
#: oldest are dropped (windows then restore approximately; leaves stay exact)
JOURNAL_CAP = 1_000_000

#: how long the snapshot of an SLO no longer configured is kept: its windows' reach
SNAPSHOT_KEEP = 90 * 86400.0


class StoreError(Exception):
    """The state cannot be used; the message says why and what to do."""


class StoreWriteError(Exception):
    """A flush failed (disk full, read-only, connection lost); the data is still pending."""


@dataclass(slots=True)
class Batch:
    """Writes accumulated on the event loop between two flushes."""

    leaves: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)
    progress: dict[str, float] = field(default_factory=dict)
    journal: list[tuple[str, float, int | None, float | None]] = field(default_factory=list)
    #: ("target" | "slo", id) this instance takes ownership of (a shared backend fences
    #: writes by it: outcomes and leaves by target, window snapshots by SLO)
    claims: set[tuple[str, str]] = field(default_factory=set)
    #: progress rows to delete before `progress` is written: held probes that no open
    #: period names any more (`forget_progress`)
    forget: set[str] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.leaves or self.progress or self.journal or self.claims
                    or self.forget)

    def forget_progress(self, key: str) -> None:
        """Delete `key`'s progress row at the next flush; a tick recorded for it after
        this call is written after the delete, so it stays."""
        self.progress.pop(key, None)
        self.forget.add(key)

    def merge_older(self, older: Batch) -> None:
        """Put back a batch that failed to write, ahead of what came since."""
        for key, counts in older.leaves.items():
            mine = self.leaves.setdefault(key, [0, 0, 0])
            for i in range(3):
                mine[i] += counts[i]
        for target, tick in older.progress.items():
            if target in self.forget:
                continue  # forgotten since (a tick recorded after that is newer anyway)
            if tick > self.progress.get(target, float("-inf")):
                self.progress[target] = tick
        self.forget |= older.forget
        self.journal[:0] = older.journal
        self.claims |= older.claims


@dataclass(slots=True)
class Restored:
    progress: dict[str, float]
    snapshots: dict[str, tuple[str, bytes]]
    journal: list[tuple[str, float, int | None, float | None]]
    sla_progress: dict[str, tuple[int, int]]
    #: sla -> the period schedule its periods are numbered by (`schedule_text`); SLAs
    #: whose row predates the schedule column are absent
    sla_schedules: dict[str, str] = field(default_factory=dict)
    #: sla -> the policies its unclosed periods are judged by (`policies_text`); SLAs
    #: whose row predates the policies column are absent
    sla_policies: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ClosedPeriod:
    sla: str
    period: int
    start: int
    end: int
    closed_at: float
    result: dict[str, Any]
    root: bytes
    policy_digest: bytes
    #: the SLA, SLO and maintenance windows the period was judged by (the tracker's
    #: `policy_text`), so that it can be signed and audited after the config moved on;
    #: None for periods closed before the store kept it
    policy: str | None = None

    def policy_document(self) -> str | None:
        """The canonical policy document the period's digest is the keccak256 of
        (docs/evidence.md, section 7), exactly as hashed; None when the store kept none
        (closed by a slamon that did not keep it) or what it kept does not hash to the
        digest."""
        if self.policy is None:
            return None
        try:
            packed = json.loads(self.policy).get("document")
        except (ValueError, AttributeError):
            return None
        return kept_document(packed, self.policy_digest)

    def judged_by(self) -> dict[str, Any] | None:
        """The SLA, SLO and maintenance windows (config form, as stored) the period was
        judged by; None for a period closed before the store kept them."""
        if self.policy is None:
            return None
        try:
            doc = json.loads(self.policy)
            return {key: doc[key] for key in ("sla", "slo", "maintenance")}
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(slots=True)
class StoreHealth:
    write_errors: int = 0
    last_error: str | None = None
    healthy: bool = True
    flushes: int = 0
    last_flush_seconds: float = 0.0
    journal_dropped: int = 0
    #: outcomes not written because another instance owns their target (shared backend)
    not_owned: int = 0


class Rows(Protocol):
    """A cursor, as both drivers give one."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Sql(Protocol):
    """What modules keeping rows in the state (incidents) may call: SQL that both
    backends run as written, with `?` parameters and BEGIN IMMEDIATE ... COMMIT."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Rows: ...


Snapshots = Callable[[], Awaitable[Mapping[str, tuple[str, bytes]]]]


class Store:
    """The backend-independent half of a state store; subclasses do the SQL.

    A subclass implements the ``_``-prefixed methods below, each called on the
    store's thread, and names the exceptions its driver raises for a failed
    write in `write_errors`.
    """

    #: what `slamon_state_*` metrics and logs call the backend
    backend: ClassVar[str] = ""
    #: driver exceptions that mean "this write failed, keep the batch"
    write_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slamon-store")
        self._thread_id: int | None = None
        self.batch = Batch()
        self.health = StoreHealth()
        self._flush_lock = asyncio.Lock()
        #: (sla, target) -> series id, as committed (an id never changes once it is)
        self._series: dict[tuple[str, str], int] = {}

    # -- thread plumbing --------------------------------------------------
    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._submit(fn, *args)

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """`fn(*args)` queued on the store's thread now (not when awaited)."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _on_thread(self) -> None:
        assert threading.get_ident() == self._thread_id, "store used off its thread"

    async def run_sql(self, fn: Callable[[Sql], T]) -> T:
        """Run `fn(connection)` on the store's thread with SQL both backends take."""
        raise NotImplementedError

    # -- open / close -----------------------------------------------------
    async def open(self) -> None:
        await self._call(self._open_on_thread)

    def verify(self) -> Awaitable[None]:
        """The integrity check `open` left to run beside the rest of start-up, if any,
        queued on the store's thread at once (StoreError, awaited, if the state is
        damaged); a write runs it first anyway."""
        return self._submit(lambda: None)

    def _open_on_thread(self) -> None:
        self._thread_id = threading.get_ident()
        self._open()

    async def close(self) -> None:
        if self.is_open():
            await self._call(self._close)
        self._executor.shutdown(wait=True)

    def where(self) -> str:
        """Where the state lives, for logs and errors (never a secret)."""
        raise NotImplementedError

    def is_open(self) -> bool:
        raise NotImplementedError

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    # -- recording (event loop thread, no I/O) ----------------------------
    def note_outcome(
        self, target: str, t: float, ok: bool | None, duration: float | None
    ) -> None:
        """One tick's outcome: ok True/False, or None for no data."""
        batch = self.batch
        batch.journal.append((target, t, None if ok is None else int(ok), duration))
        if t > batch.progress.get(target, float("-inf")):
            batch.progress[target] = t

    def add_leaf(
        self, sla: str, target: str, bucket: int, good: int, valid: int, no_data: int
    ) -> None:
        counts = self.batch.leaves.get((sla, target, bucket))
        if counts is None:
            self.batch.leaves[(sla, target, bucket)] = [good, valid, no_data]
        else:
            counts[0] += good
            counts[1] += valid
            counts[2] += no_data

    def own(self, targets: Iterable[str], slos: Iterable[str] = ()) -> None:
        """This instance probes `targets` and keeps the windows of `slos`: with a shared
        backend the next flush takes them over, and from then on another instance's
        writes for them are refused (the last to claim owns). A no-op for a file of
        one's own."""
        self.batch.claims.update(("target", t) for t in targets)
        self.batch.claims.update(("slo", s) for s in slos)

    # -- flushing ---------------------------------------------------------
    async def flush(self, snapshot: Snapshots | None = None) -> bool:
        """Write the pending batch (and window snapshots) in one transaction.

        `snapshot` is called right when the batch is taken, with no await in
        between, and must fix its content at that instant (it may take its time
        to serialise it): the snapshot holds exactly the events journaled so far.
        On failure nothing is lost: the batch goes back in front of newer
        writes and the next flush tries again (StoreWriteError is raised).
        """
        async with self._flush_lock:
            batch, self.batch = self.batch, Batch()
            snapshots = await snapshot() if snapshot is not None else None
            if batch.empty() and snapshots is None:
                if not self.health.healthy:
                    # writing nothing proves nothing: stay failed (and let the caller
                    # keep saying so) until a real write succeeds
                    raise StoreWriteError(self.health.last_error or "last write failed")
                return True
            started = time.perf_counter()
            try:
                await self._call(self._write, batch, snapshots)
            except self.write_errors as exc:
                self.batch.merge_older(batch)
                self._cap_journal()
                self.health.write_errors += 1
                self.health.last_error = self.describe_error(exc)
                self.health.healthy = False
                raise StoreWriteError(self.health.last_error) from None
            self.health.healthy = True
            self.health.flushes += 1
            self.health.last_flush_seconds = time.perf_counter() - started
            return True

    def describe_error(self, exc: BaseException) -> str:
        """A driver error as a user may see it: no connection string, no password."""
        return str(exc)

    def _cap_journal(self) -> None:
        excess = len(self.batch.journal) - JOURNAL_CAP
        if excess > 0:
            del self.batch.journal[:excess]
            self.health.journal_dropped += excess

    def _write(self, batch: Batch, snapshots: Mapping[str, tuple[str, bytes]] | None) -> None:
        raise NotImplementedError

    def _split_series(
        self, keys: Iterable[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], int], list[tuple[str, str]]]:
        """The ids already committed, and the keys a flush must look up or insert: a
        flush then costs no statement per known series."""
        known, out, missing = self._series, {}, []
        for key in keys:
            sid = known.get(key)
            if sid is None:
                missing.append(key)
            else:
                out[key] = sid
        return out, missing

    def _committed_series(self, ids: Mapping[tuple[str, str], int]) -> None:
        """Call after the transaction that used `ids` committed (a rolled-back insert's
        id is not real)."""
        self._series.update(ids)

    # -- restore ----------------------------------------------------------
    async def load(self) -> Restored:
        return await self._call(self._load)

    def _load(self) -> Restored:
        raise NotImplementedError

    # -- periods ----------------------------------------------------------
    async def period_leaves(
        self, sla: str, start: int, end: int
    ) -> dict[str, list[tuple[int, int, int, int]]]:
        """Leaves with bucket in [start, end), by target, ordered by bucket."""
        return await self._call(self._period_leaves, sla, start, end)

    async def periods_leaves(
        self, wanted: Sequence[tuple[str, int, int]]
    ) -> list[dict[str, list[tuple[int, int, int, int]]]]:
        """`period_leaves` for every (sla, start, end), in one call to the store's thread."""
        return await self._call(lambda: [self._period_leaves(*w) for w in wanted])

    def _period_leaves(
        self, sla: str, start: int, end: int
    ) -> dict[str, list[tuple[int, int, int, int]]]:
        raise NotImplementedError

    async def close_period(self, period: ClosedPeriod, first_period: int) -> bool:
        """Record a closed period once; False if it was already closed (by anyone)."""
        (inserted,) = await self.close_periods([(period, first_period)])
        return inserted

    async def close_periods(self, periods: Sequence[tuple[ClosedPeriod, int]]) -> list[bool]:
        """`close_period` for each (period, first period of its SLA), in one transaction:
        thousands of SLAs closing in the same second cost one commit."""
        return await self._call(self._close_periods, periods)

    def _close_periods(self, periods: Sequence[tuple[ClosedPeriod, int]]) -> list[bool]:
        raise NotImplementedError

    async def set_sla_starts(self, starts: Sequence[tuple[str, int, str]]) -> None:
        """For each (sla, first period, schedule): remember where a new SLA's accounting
        began (last_closed = first - 1) and the schedule its periods are numbered by;
        an SLA already stored keeps its progress and gets the schedule only if its row
        has none. One transaction."""
        if starts:
            await self._call(self._set_sla_starts, starts)

    def _set_sla_starts(self, starts: Sequence[tuple[str, int, str]]) -> None:
        raise NotImplementedError

    async def set_sla_policies(self, rows: Sequence[tuple[str, str]]) -> None:
        """For each (sla, policies): the policies its unclosed periods are judged by, for
        an SLA whose start is stored (`set_sla_starts`). One transaction."""
        if rows:
            await self._call(self._set_sla_policies, rows)

    def _set_sla_policies(self, rows: Sequence[tuple[str, str]]) -> None:
        raise NotImplementedError

    async def get_period(self, sla: str, period: int) -> ClosedPeriod | None:
        rows = await self._call(self._periods, sla, period, period)
        return rows[0] if rows else None

    async def periods(self, sla: str, first: int | None = None,
                      last: int | None = None) -> list[ClosedPeriod]:
        return await self._call(self._periods, sla, first, last)

    def _periods(self, sla: str, first: int | None, last: int | None) -> list[ClosedPeriod]:
        raise NotImplementedError

    # -- maintenance ------------------------------------------------------
    async def prune_leaves(self, sla: str, before_bucket: int) -> int:
        """Drop evidence leaves older than the retention (closed periods only)."""
        return await self._call(self._prune, sla, before_bucket)

    def _prune(self, sla: str, before_bucket: int) -> int:
        raise NotImplementedError

    async def integrity_check(self) -> str:
        """'ok', or what the backend found wrong."""
        return await self._call(self._integrity)

    def _integrity(self) -> str:
        raise NotImplementedError

    def size_bytes(self) -> int:
        """Bytes the state takes (read on the event loop: no I/O beyond a stat)."""
        raise NotImplementedError
