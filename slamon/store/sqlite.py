"""Durable state: one SQLite file (WAL), written in batches from one thread.

What is kept, and why:
- `progress`: the last scheduled tick whose outcome is stored, per target. On
  restart every tick between it and the first new tick is recorded as *no
  data*: slamon's own downtime is never good and never bad.
- `snapshots` + `journal`: SLO windows are snapshotted every
  `snapshot_interval`; every probe outcome since then is journaled, so a
  restart replays the journal on top of the snapshot and resumes exactly.
- `leaves`: per SLA and target, (good, valid, no_data) per evidence bucket.
  A period's verdict and Merkle root are computed from these at close time.
- `periods`: closed periods, primary key (sla, period): a period can close
  once only, even if two closers race or slamon dies mid-close.
- `reports`, `oracle_txs`, `oracle_meta`: the oracle's journal (signed -> sent
  -> confirmed | failed) and every transaction it broadcast.

Every table is created by the ordered migrations in `slamon.store.migrations`,
applied here when the file opens (and nowhere else).

Leaves, progress and journal of one flush go in one transaction, so after a
crash they agree with each other. The event loop never waits on SQLite: every
statement runs on the store's own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

# re-exported: what every backend shares, under the names callers always used
from slamon.store.base import JOURNAL_CAP as JOURNAL_CAP
from slamon.store.base import SNAPSHOT_KEEP, Sql, Store
from slamon.store.base import Batch as Batch
from slamon.store.base import ClosedPeriod as ClosedPeriod
from slamon.store.base import Restored as Restored
from slamon.store.base import StoreError as StoreError
from slamon.store.base import StoreHealth as StoreHealth
from slamon.store.base import StoreWriteError as StoreWriteError

# re-exported: readers of the state file (report export) check the same marks
from slamon.store.migrations import APPLICATION_ID as APPLICATION_ID
from slamon.store.migrations import SCHEMA_VERSION as SCHEMA_VERSION
from slamon.store.migrations import migrate

T = TypeVar("T")


class StateStore(Store):
    """The embedded backend: one SQLite file in WAL mode, one process."""

    backend: ClassVar[str] = "sqlite"
    write_errors: ClassVar[tuple[type[BaseException], ...]] = (sqlite3.Error, StoreError)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        #: opened without its integrity check, which `verify` runs: until then a file that
        #: turns out unreadable is called damaged, and nothing but a read runs
        self._unverified = False

    def where(self) -> str:
        return str(self.path)

    def own(self, targets: Iterable[str], slos: Iterable[str] = ()) -> None:
        """Nothing to claim: the file is this process's alone (its lock)."""

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        # an unverified file gets only the reads of start-up until its check has run:
        # anything else runs the check first (on the store's thread, in order)
        return super()._submit(self._after_check, fn, *args)

    def _after_check(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            if self._unverified and getattr(fn, "__func__", None) not in _BEFORE_CHECK:
                self._verify()
            return fn(*args)
        except sqlite3.DatabaseError as exc:
            if self._unverified:  # unreadable before its check: what the check would say
                raise self._damaged(exc) from None
            raise

    def is_open(self) -> bool:
        return self._conn is not None

    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None, "store not open"
        self._on_thread()
        return self._conn

    async def run_sql(self, fn: Callable[[Sql], T]) -> T:
        """Run `fn(connection)` on the store's thread: for modules that keep rows in
        the state (incidents, the oracle's report journal; their tables come from the
        migrations like every other), without touching the loop."""
        return await self._call(lambda: fn(self._db()))

    # -- open / close -----------------------------------------------------
    def _open(self) -> None:
        path = self.path
        parent = path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create state directory {parent}: {exc.strerror or exc}"
            ) from None
        if _read_only_fs(parent):
            raise StoreError(f"state file {path}: its directory is on a read-only filesystem")
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"state file {path} is not readable and writable by this user")
        if not os.access(parent, os.W_OK):
            raise StoreError(
                f"state directory {parent} is not writable (SQLite needs it for its WAL files)"
            )
        self._lock_fd = take_lock(path)
        new_file = not path.exists() or path.stat().st_size == 0
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        except sqlite3.Error as exc:
            self._release_lock()
            raise StoreError(f"cannot open state file {path}: {exc}") from None
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if not new_file and app_id == 0:
                # killed during its very first start, between the switch to WAL
                # (which writes the header) and the migration: an empty database
                # with nothing to lose, not a foreign file
                version0 = conn.execute("PRAGMA user_version").fetchone()[0]
                objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                new_file = version0 == 0 and objects == 0
            if not new_file and app_id != APPLICATION_ID:
                raise StoreError(
                    f"{path} is not a slamon state file (application_id {app_id:#x}); "
                    "refusing to touch it: point state.path elsewhere"
                )
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot switch {path} to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
            version = 0 if new_file else int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version == SCHEMA_VERSION:
                # the check reads the whole file (~5 ms a MB): `verify` runs it here on the
                # store's thread while start-up goes on in the loop
                self._unverified = True
            else:
                self._quick_check()  # before a migration writes to it
                self._migrate(new_file)
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._release_lock()
            raise StoreError(
                f"state file {path} is not a usable SQLite database ({exc}); slamon will not "
                "reset it. Restore a backup, or move the file away to start with empty state."
            ) from None
        except StoreError:
            conn.close()
            self._release_lock()
            raise

    def _damaged(self, what: object) -> StoreError:
        return StoreError(
            f"state file {self.path} is damaged ({what}); slamon will not reset it. "
            "Restore a backup, or move the file away to start with empty state."
        )

    def _quick_check(self) -> None:
        assert self._conn is not None, "store not open"
        check = self._conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise self._damaged(check)

    def verify(self) -> Awaitable[None]:
        return self._submit(self._verify)

    def _verify(self) -> None:
        if self._unverified:
            self._quick_check()
            self._unverified = False

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _migrate(self, new_file: bool) -> None:
        db = self._db()
        if new_file:
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            version = 0
        else:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"state file {self.path} has schema {version}, written by a newer slamon "
                f"(this one knows up to {SCHEMA_VERSION}); upgrade slamon or use another file"
            )
        migrate(db, version)

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None
        self._release_lock()

    # -- writing (store thread) -------------------------------------------
    def _series_ids(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        db = self._db()
        out, missing = self._split_series(keys)
        for sla, target in missing:
            row = db.execute(
                "SELECT id FROM series WHERE sla=? AND target=?", (sla, target)
            ).fetchone()
            if row is None:
                cur = db.execute("INSERT INTO series(sla, target) VALUES (?, ?)", (sla, target))
                out[(sla, target)] = int(cur.lastrowid or 0)
            else:
                out[(sla, target)] = int(row[0])
        return out

    @staticmethod
    @contextlib.contextmanager
    def _immediate(db: sqlite3.Connection) -> Iterator[None]:
        """One write transaction (the connection is in autocommit mode): committed when
        the block ends, rolled back on any exception, which goes on."""
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _write(self, batch: Batch, snapshots: Mapping[str, tuple[str, bytes]] | None) -> None:
        db = self._db()
        ids: dict[tuple[str, str], int] = {}
        with self._immediate(db):
            if batch.leaves:
                ids = self._series_ids({(s, t) for s, t, _ in batch.leaves})
                db.executemany(
                    "INSERT INTO leaves(series, bucket, good, valid, no_data) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(series, bucket) DO UPDATE SET "
                    "good = good + excluded.good, valid = valid + excluded.valid, "
                    "no_data = no_data + excluded.no_data",
                    [
                        (ids[(s, t)], b, c[0], c[1], c[2])
                        for (s, t, b), c in batch.leaves.items()
                    ],
                )
            if batch.forget:
                db.executemany("DELETE FROM progress WHERE target = ?",
                               [(key,) for key in sorted(batch.forget)])
            if batch.progress:
                db.executemany(
                    "INSERT INTO progress(target, last_tick) VALUES (?, ?) "
                    "ON CONFLICT(target) DO UPDATE SET "
                    "last_tick = max(last_tick, excluded.last_tick)",
                    list(batch.progress.items()),
                )
            if snapshots is not None:
                # the snapshot already contains every journaled event: start afresh
                db.execute("DELETE FROM journal")
                now = time.time()
                # an SLO that is not running keeps its last snapshot for as long as
                # its windows reach back, so adding it again brings its history back
                db.execute("DELETE FROM snapshots WHERE taken_at < ?", (now - SNAPSHOT_KEEP,))
                db.executemany(
                    "INSERT OR REPLACE INTO snapshots(slo, shape, data, taken_at) "
                    "VALUES (?, ?, ?, ?)",
                    [(slo, shape, data, now) for slo, (shape, data) in snapshots.items()],
                )
            elif batch.journal:
                db.executemany(
                    "INSERT INTO journal(target, t, ok, duration) VALUES (?, ?, ?, ?)",
                    batch.journal,
                )
        self._committed_series(ids)

    # -- restore ----------------------------------------------------------
    def _load(self) -> Restored:
        db = self._db()
        progress = {t: float(v) for t, v in db.execute("SELECT target, last_tick FROM progress")}
        snapshots = {
            slo: (shape, bytes(data))
            for slo, shape, data in db.execute("SELECT slo, shape, data FROM snapshots")
        }
        journal = [
            (str(t), float(ts), None if ok is None else int(ok), dur)
            for t, ts, ok, dur in db.execute(
                "SELECT target, t, ok, duration FROM journal ORDER BY seq"
            )
        ]
        slap: dict[str, tuple[int, int]] = {}
        schedules: dict[str, str] = {}
        policies: dict[str, str] = {}
        for sla, last, first, schedule, policy in db.execute(
            "SELECT sla, last_closed, first_period, schedule, policies FROM sla_progress"
        ):
            slap[sla] = (int(last), int(first))
            if schedule is not None:
                schedules[sla] = str(schedule)
            if policy is not None:
                policies[sla] = str(policy)
        return Restored(progress, snapshots, journal, slap, schedules, policies)

    # -- periods ----------------------------------------------------------
    def _period_leaves(
        self, sla: str, start: int, end: int
    ) -> dict[str, list[tuple[int, int, int, int]]]:
        db = self._db()
        out: dict[str, list[tuple[int, int, int, int]]] = {}
        rows = db.execute(
            "SELECT s.target, l.bucket, l.good, l.valid, l.no_data FROM leaves l "
            "JOIN series s ON s.id = l.series WHERE s.sla = ? AND l.bucket >= ? "
            "AND l.bucket < ? ORDER BY s.target, l.bucket",
            (sla, start, end),
        )
        for target, bucket, good, valid, no_data in rows:
            out.setdefault(target, []).append((bucket, good, valid, no_data))
        return out

    def _close_periods(self, periods: Sequence[tuple[ClosedPeriod, int]]) -> list[bool]:
        db = self._db()
        inserted: list[bool] = []
        with self._immediate(db):
            for p, first_period in periods:
                cur = db.execute(
                    "INSERT OR IGNORE INTO periods(sla, period, start, end, closed_at, result, "
                    "root, policy_digest, policy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (p.sla, p.period, p.start, p.end, p.closed_at,
                     json.dumps(p.result, sort_keys=True), p.root, p.policy_digest, p.policy),
                )
                inserted.append(cur.rowcount == 1)
                db.execute(
                    "INSERT INTO sla_progress(sla, last_closed, first_period) VALUES (?, ?, ?) "
                    "ON CONFLICT(sla) DO UPDATE SET "
                    "last_closed = max(last_closed, excluded.last_closed)",
                    (p.sla, p.period, first_period),
                )
        return inserted

    def _set_sla_starts(self, starts: Sequence[tuple[str, int, str]]) -> None:
        db = self._db()
        with self._immediate(db):
            db.executemany(
                "INSERT INTO sla_progress(sla, last_closed, first_period, schedule) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(sla) DO UPDATE SET "
                "schedule = coalesce(schedule, excluded.schedule)",
                [(sla, first - 1, first, schedule) for sla, first, schedule in starts],
            )

    def _set_sla_policies(self, rows: Sequence[tuple[str, str]]) -> None:
        db = self._db()
        with self._immediate(db):
            db.executemany("UPDATE sla_progress SET policies = ? WHERE sla = ?",
                           [(text, sla) for sla, text in rows])

    def _periods(self, sla: str, first: int | None, last: int | None) -> list[ClosedPeriod]:
        db = self._db()
        lo = first if first is not None else -(2**62)
        hi = last if last is not None else 2**62
        rows = period_rows(db, "sla = ? AND period >= ? AND period <= ? ORDER BY period",
                           (sla, lo, hi), has_policy=True)
        return [ClosedPeriod(*row) for row in rows]

    # -- maintenance ------------------------------------------------------
    def _prune(self, sla: str, before_bucket: int) -> int:
        cur = self._db().execute(
            "DELETE FROM leaves WHERE bucket < ? AND series IN "
            "(SELECT id FROM series WHERE sla = ?)",
            (before_bucket, sla),
        )
        return int(cur.rowcount)

    def _integrity(self) -> str:
        return str(self._db().execute("PRAGMA integrity_check").fetchone()[0])

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total


def take_lock(path: Path) -> int:
    """An exclusive advisory lock on `<state file>.lock`, held while the file is
    open: two processes writing one state file would each overwrite the other's
    windows. The kernel drops it when the process dies, so a crash leaves no
    stale lock. Returns the descriptor that holds it."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create lock file {lock_path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(
            f"state file {path} is in use by another slamon process (it holds {lock_path}); "
            "stop it first, or give this instance its own state.path"
        ) from None
    return fd


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


#: a stored closed period's fields, in ClosedPeriod's order
PeriodRow = tuple[str, int, int, int, float, dict[str, object], bytes, bytes, str | None]


def period_rows(db: sqlite3.Connection, where: str, params: Sequence[object],
                has_policy: bool | None = None) -> list[PeriodRow]:
    """The closed periods `where` selects (SQL after WHERE, `?` for `params`), as
    ClosedPeriod's fields in order. `has_policy` None: look whether the file has the
    `policy` column. A read-only reader (export, report) opens files of older schemas
    as they are, and a file from before the periods kept their policy has none: None."""
    if has_policy is None:
        has_policy = "policy" in {str(c[1]) for c in db.execute("PRAGMA table_info(periods)")}
    policy = "policy" if has_policy else "NULL"
    rows = db.execute(
        "SELECT sla, period, start, end, closed_at, result, root, policy_digest, "
        f"{policy} FROM periods WHERE {where}", tuple(params))
    return [(str(s), int(n), int(a), int(b), float(c), json.loads(r), bytes(root), bytes(d),
             None if kept is None else str(kept))
            for s, n, a, b, c, r, root, d, kept in rows]


#: what may run on a file opened without its integrity check, before `verify`: reads, and
#: a close (of a file nothing was written to)
_BEFORE_CHECK = frozenset((StateStore._open_on_thread, StateStore._load, StateStore._verify,
                           StateStore._close))
