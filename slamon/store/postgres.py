"""The shared backend: one PostgreSQL database for a fleet of slamon instances.

Several instances (shards) write to one database; each writes only the
targets it owns, under its `instance` name:

- `progress`, `series` and `leaves` are keyed by target: a target that moves
  to another shard keeps its leaves and progress, which the new owner reads.
- `journal` rows carry their writer's instance name: a snapshot clears only
  its own instance's journal, and a restart replays only its own.
- `periods` has the primary key (sla, period): two instances that both think
  they own an SLA cannot both close one of its periods; the second insert
  does nothing and the second closer learns it lost (a constraint, not a lock
  held in Python).
- `owners` says which instance writes a target's rows and an SLO's snapshot:
  an instance claims what it runs before it reads it, the last claim wins, and
  a flush drops what another instance owns, so two instances probing one
  target during a reshard count it once.
- An instance holds a session advisory lock on its name while connected, so
  two processes started with the same name are refused, as the SQLite
  backend's lock file refuses a second process on one file. PostgreSQL drops
  the lock when the session ends, also after a kill -9.

The driver is psycopg 3 used synchronously on the store's thread, like the
SQLite backend: the event loop neither waits on the database nor encodes its
rows. Statements are plain SQL with `%s` parameters; the schema is created by
the ordered steps in `slamon.store.migrations.POSTGRES_MIGRATIONS`, under a
transaction-scoped advisory lock so that instances starting together migrate
once.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final, TypeVar

import psycopg

from slamon.sli.events import EVENTS_KEY, events_key
from slamon.store.base import (
    SNAPSHOT_KEEP,
    Batch,
    ClosedPeriod,
    Restored,
    Sql,
    Store,
    StoreError,
)
from slamon.store.migrations import POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION

T = TypeVar("T")

#: arbitrary constants naming slamon's advisory locks (migration; instance names)
_MIGRATION_LOCK: Final = 0x534C4D4E
_INSTANCE_LOCK_SPACE: Final = "slamon-instance:"
_OWNERS_LOCK: Final = 0x534C4D4F

#: the tables this backend owns, for its size metric
_TABLES: Final = ("meta", "progress", "snapshots", "journal", "series", "leaves",
                  "sla_progress", "periods", "incidents", "incident_updates", "reports",
                  "oracle_txs", "oracle_meta", "owners")

#: how often the size metric is refreshed (a query on the store's thread)
_SIZE_EVERY: Final = 60.0


class Statements:
    """The connection handed to `PostgresStore.run_sql` callers: the SQL they share with
    the SQLite backend, taken as written there (`?` parameters, BEGIN IMMEDIATE)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        if sql.strip().upper() == "BEGIN IMMEDIATE":
            sql = "BEGIN"
        # no statement slamon shares has a literal '?' or '%'
        return self._conn.execute(sql.replace("?", "%s"), tuple(parameters))


class PostgresStore(Store):
    """State in a PostgreSQL database shared by several instances."""

    backend: ClassVar[str] = "postgres"
    #: StoreError: a reconnect inside a flush failed (database down, name still held);
    #: the batch is kept like after any failed write
    write_errors: ClassVar[tuple[type[BaseException], ...]] = (psycopg.Error, StoreError)

    #: how long to wait for an instance name held by a process that just died
    lock_wait: float = 5.0

    def __init__(self, dsn: str, instance: str, connect_timeout: float = 10.0) -> None:
        super().__init__()
        if not instance:
            raise StoreError("state.instance must not be empty")
        self._dsn = dsn
        self.instance = instance
        self._timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._size = 0
        self._size_at = float("-inf")

    def where(self) -> str:
        """Host, port and database, never the user's password."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self._dsn)
        except psycopg.Error:
            return f"postgres (instance {self.instance})"
        host = info.get("host") or "local socket"
        port = info.get("port") or 5432
        db = info.get("dbname") or info.get("user") or "?"
        return f"postgres://{host}:{port}/{db} (instance {self.instance})"

    def describe_error(self, exc: BaseException) -> str:
        return self.redact(str(exc).strip())

    def redact(self, text: str) -> str:
        """Remove the password (and the whole connection string) from a message."""
        with contextlib.suppress(psycopg.Error):
            password = psycopg.conninfo.conninfo_to_dict(self._dsn).get("password")
            if password:
                text = text.replace(str(password), "***")
        return text.replace(self._dsn, self.where())

    def is_open(self) -> bool:
        return self._conn is not None

    # -- connection -------------------------------------------------------
    def _db(self) -> psycopg.Connection[Any]:
        self._on_thread()
        if self._conn is None or self._conn.broken or self._conn.closed:
            # a dropped connection (database restart, failover): connect again and
            # take the instance lock again before writing anything
            self._connect()
        assert self._conn is not None
        return self._conn

    def _connect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
        try:
            conn = psycopg.connect(self._dsn, autocommit=True,
                                   connect_timeout=max(1, round(self._timeout)),
                                   application_name=f"slamon {self.instance}"[:63])
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to {self.where()}: {self.describe_error(exc)}") from None
        try:
            # A process killed a moment ago still holds the lock until PostgreSQL has
            # noticed its connection closed (unlike a file lock, which the kernel drops
            # at once): wait a little for it before calling the name taken
            deadline = time.monotonic() + self.lock_wait
            while True:
                got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                                   (_INSTANCE_LOCK_SPACE + self.instance,)).fetchone()
                if (got and got[0]) or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
            if not (got and got[0]):
                raise StoreError(
                    f"{self.where()}: another slamon process is connected as instance "
                    f"{self.instance!r} (waited {self.lock_wait:g} s); stop it first, or "
                    "give this one its own "
                    "state.instance (each shard needs its own name)")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _open(self) -> None:
        self._connect()
        try:
            self._migrate()
        except psycopg.Error as exc:
            self._close()
            raise StoreError(
                f"cannot prepare the schema in {self.where()}: {self.describe_error(exc)}"
            ) from None
        except StoreError:
            self._close()
            raise

    def _migrate(self) -> None:
        db = self._db()
        with db.transaction():
            # instances starting together: one migrates, the others wait and see it done
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            exists = db.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
            version = 0
            if exists and exists[0]:
                row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    raise StoreError(
                        f"{self.where()} has a table 'meta' that is not slamon's; "
                        "point state.dsn at a database of its own")
                version = int(row[0])
            if version > POSTGRES_SCHEMA_VERSION:
                raise StoreError(
                    f"{self.where()} has schema {version}, written by a newer slamon "
                    f"(this one knows up to {POSTGRES_SCHEMA_VERSION}); upgrade slamon")
            for step in POSTGRES_MIGRATIONS:
                if step.version <= version:
                    continue
                for statement in step.statements:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', %s) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(step.version),))
                db.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_migrated_at', %s) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(time.time()),))

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()  # ends the session: PostgreSQL drops the instance lock
            self._conn = None

    async def run_sql(self, fn: Callable[[Sql], T]) -> T:
        return await self._call(lambda: fn(Statements(self._db())))

    # -- writing (store thread) -------------------------------------------
    def _series_ids(self, db: psycopg.Connection[Any],
                    keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Ids of (sla, target) series; new ones are inserted."""
        out, missing = self._split_series(keys)
        if missing:
            with db.cursor() as cur:
                # another instance may insert the same series meanwhile: DO NOTHING, then read
                cur.executemany("INSERT INTO series(sla, target) VALUES (%s, %s) "
                                "ON CONFLICT(sla, target) DO NOTHING", missing)
                cur.execute("SELECT sla, target, id FROM series WHERE (sla, target) IN "
                            "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                            ([k[0] for k in missing], [k[1] for k in missing]))
                for sla, target, sid in cur:
                    out[(str(sla), str(target))] = int(sid)
        return out

    def _fence(self, cur: psycopg.Cursor[Any], batch: Batch,
               snapshots: Mapping[str, tuple[str, bytes]] | None
               ) -> tuple[int, Mapping[str, tuple[str, bytes]] | None]:
        """Take over the batch's claims, then drop its rows for targets, and its window
        snapshots for SLOs, that another instance owns; the number of outcomes (journal
        rows) dropped, and the snapshots left to write.

        Claims and writes are serialised by one advisory lock: a claim takes it
        exclusively, a flush shared, so a flush sees every claim committed before it,
        and a claim waits for the flushes under way (no row locks, nothing written
        per row to fence)."""
        if batch.claims:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_OWNERS_LOCK,))
            cur.executemany(
                "INSERT INTO owners(kind, id, instance, since) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT(kind, id) DO UPDATE SET instance = excluded.instance, "
                "since = excluded.since WHERE owners.instance <> excluded.instance",
                [(kind, key, self.instance, time.time()) for kind, key in sorted(batch.claims)])
        else:
            cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (_OWNERS_LOCK,))
        targets = set(batch.progress) | {t for _, t, _ in batch.leaves} | {
            row[0] for row in batch.journal}
        keys = set(snapshots or ())
        # a target's events are snapshotted under events_key(target): fenced as the target
        lost = self._owned_elsewhere(cur, "target", targets | {
            k[len(EVENTS_KEY):] for k in keys if k.startswith(EVENTS_KEY)})
        lost_keys = self._owned_elsewhere(cur, "slo", {
            k for k in keys if not k.startswith(EVENTS_KEY)}) | {events_key(t) for t in lost}
        if snapshots is not None and lost_keys & keys:
            snapshots = {k: v for k, v in snapshots.items() if k not in lost_keys}
        if not lost & targets:
            return 0, snapshots
        outcomes = len(batch.journal)
        batch.progress = {t: v for t, v in batch.progress.items() if t not in lost}
        batch.leaves = {k: v for k, v in batch.leaves.items() if k[1] not in lost}
        batch.journal = [row for row in batch.journal if row[0] not in lost]
        return outcomes - len(batch.journal), snapshots

    def _owned_elsewhere(self, cur: psycopg.Cursor[Any], kind: str, ids: set[str]) -> set[str]:
        if not ids:
            return set()
        cur.execute("SELECT id FROM owners WHERE kind = %s AND id = ANY(%s) AND instance <> %s",
                    (kind, sorted(ids), self.instance))
        return {str(i) for (i,) in cur.fetchall()}

    def _write(self, batch: Batch, snapshots: Mapping[str, tuple[str, bytes]] | None) -> None:
        db = self._db()
        ids: dict[tuple[str, str], int] = {}
        with db.transaction(), db.cursor() as cur:
            dropped, snapshots = self._fence(cur, batch, snapshots)
            if batch.leaves:
                ids = self._series_ids(db, {(s, t) for s, t, _ in batch.leaves})
                cur.executemany(
                    "INSERT INTO leaves(series, bucket, good, valid, no_data) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT(series, bucket) DO UPDATE SET "
                    "good = leaves.good + excluded.good, valid = leaves.valid + excluded.valid, "
                    "no_data = leaves.no_data + excluded.no_data",
                    [(ids[(s, t)], b, c[0], c[1], c[2])
                     for (s, t, b), c in sorted(batch.leaves.items())],
                )
            if batch.forget:
                cur.execute("DELETE FROM progress WHERE target = ANY(%s)",
                            (sorted(batch.forget),))
            if batch.progress:
                cur.executemany(
                    "INSERT INTO progress(target, last_tick) VALUES (%s, %s) "
                    "ON CONFLICT(target) DO UPDATE SET "
                    "last_tick = GREATEST(progress.last_tick, excluded.last_tick)",
                    sorted(batch.progress.items()),
                )
            if snapshots is not None:
                # the snapshot already contains every event this instance journaled
                cur.execute("DELETE FROM journal WHERE instance = %s", (self.instance,))
                now = time.time()
                cur.execute("DELETE FROM snapshots WHERE taken_at < %s", (now - SNAPSHOT_KEEP,))
                cur.executemany(
                    "INSERT INTO snapshots(slo, shape, data, taken_at) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT(slo) DO UPDATE SET shape = excluded.shape, "
                    "data = excluded.data, taken_at = excluded.taken_at",
                    [(slo, shape, data, now) for slo, (shape, data) in snapshots.items()],
                )
            elif batch.journal:
                cur.executemany(
                    "INSERT INTO journal(instance, target, t, ok, duration) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [(self.instance, *row) for row in batch.journal],
                )
        self._committed_series(ids)
        self.health.not_owned += dropped
        self._refresh_size(db)

    def _refresh_size(self, db: psycopg.Connection[Any]) -> None:
        now = time.monotonic()
        if now - self._size_at < _SIZE_EVERY:
            return
        self._size_at = now
        row = db.execute(
            "SELECT COALESCE(sum(pg_total_relation_size(to_regclass(t))), 0) "
            "FROM unnest(%s::text[]) AS t", (list(_TABLES),)).fetchone()
        self._size = int(row[0]) if row else 0

    # -- restore ----------------------------------------------------------
    def _load(self) -> Restored:
        db = self._db()
        progress = {str(t): float(v) for t, v in
                    db.execute("SELECT target, last_tick FROM progress")}
        snapshots = {str(slo): (str(shape), bytes(data)) for slo, shape, data in
                     db.execute("SELECT slo, shape, data FROM snapshots")}
        journal = [
            (str(t), float(ts), None if ok is None else int(ok), dur)
            for t, ts, ok, dur in db.execute(
                "SELECT target, t, ok, duration FROM journal WHERE instance = %s ORDER BY seq",
                (self.instance,))
        ]
        slap: dict[str, tuple[int, int]] = {}
        schedules: dict[str, str] = {}
        policies: dict[str, str] = {}
        for sla, last, first, schedule, policy in db.execute(
                "SELECT sla, last_closed, first_period, schedule, policies FROM sla_progress"):
            slap[str(sla)] = (int(last), int(first))
            if schedule is not None:
                schedules[str(sla)] = str(schedule)
            if policy is not None:
                policies[str(sla)] = str(policy)
        self._refresh_size(db)
        return Restored(progress, snapshots, journal, slap, schedules, policies)

    # -- periods ----------------------------------------------------------
    def _period_leaves(
        self, sla: str, start: int, end: int
    ) -> dict[str, list[tuple[int, int, int, int]]]:
        out: dict[str, list[tuple[int, int, int, int]]] = {}
        rows = self._db().execute(
            "SELECT s.target, l.bucket, l.good, l.valid, l.no_data FROM leaves l "
            "JOIN series s ON s.id = l.series WHERE s.sla = %s AND l.bucket >= %s "
            "AND l.bucket < %s ORDER BY s.target, l.bucket",
            (sla, start, end),
        )
        for target, bucket, good, valid, no_data in rows:
            out.setdefault(str(target), []).append(
                (int(bucket), int(good), int(valid), int(no_data)))
        return out

    def _close_periods(self, periods: Sequence[tuple[ClosedPeriod, int]]) -> list[bool]:
        db = self._db()
        inserted: list[bool] = []
        with db.transaction():
            for p, first_period in periods:
                cur = db.execute(
                    'INSERT INTO periods(sla, period, start, "end", closed_at, result, root, '
                    "policy_digest, closed_by, policy) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT(sla, period) DO NOTHING",
                    (p.sla, p.period, p.start, p.end, p.closed_at,
                     json.dumps(p.result, sort_keys=True), p.root, p.policy_digest,
                     self.instance, p.policy),
                )
                inserted.append(cur.rowcount == 1)
                db.execute(
                    "INSERT INTO sla_progress(sla, last_closed, first_period) "
                    "VALUES (%s, %s, %s) ON CONFLICT(sla) DO UPDATE SET "
                    "last_closed = GREATEST(sla_progress.last_closed, excluded.last_closed)",
                    (p.sla, p.period, first_period),
                )
        return inserted

    def _set_sla_starts(self, starts: Sequence[tuple[str, int, str]]) -> None:
        db = self._db()
        with db.transaction(), db.cursor() as cur:
            cur.executemany(
                "INSERT INTO sla_progress(sla, last_closed, first_period, schedule) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT(sla) DO UPDATE SET "
                "schedule = COALESCE(sla_progress.schedule, excluded.schedule)",
                [(sla, first - 1, first, schedule) for sla, first, schedule in starts],
            )

    def _set_sla_policies(self, rows: Sequence[tuple[str, str]]) -> None:
        db = self._db()
        with db.transaction(), db.cursor() as cur:
            cur.executemany("UPDATE sla_progress SET policies = %s WHERE sla = %s",
                            [(text, sla) for sla, text in rows])

    def _periods(self, sla: str, first: int | None, last: int | None) -> list[ClosedPeriod]:
        lo = first if first is not None else -(2**62)
        hi = last if last is not None else 2**62
        rows = self._db().execute(
            'SELECT sla, period, start, "end", closed_at, result, root, policy_digest, policy '
            "FROM periods WHERE sla = %s AND period >= %s AND period <= %s ORDER BY period",
            (sla, lo, hi),
        )
        return [
            ClosedPeriod(str(s), int(n), int(a), int(b), float(c), json.loads(r), bytes(root),
                         bytes(d), None if pol is None else str(pol))
            for s, n, a, b, c, r, root, d, pol in rows
        ]

    # -- maintenance ------------------------------------------------------
    def _prune(self, sla: str, before_bucket: int) -> int:
        cur = self._db().execute(
            "DELETE FROM leaves WHERE bucket < %s AND series IN "
            "(SELECT id FROM series WHERE sla = %s)",
            (before_bucket, sla),
        )
        return int(cur.rowcount)

    def _integrity(self) -> str:
        """Rows that break what slamon relies on (the constraints guard the rest)."""
        db = self._db()
        problems: list[str] = []
        row = db.execute("SELECT count(*) FROM leaves WHERE valid < good OR good < 0 "
                         "OR no_data < 0").fetchone()
        if row and row[0]:
            problems.append(f"{row[0]} leaves with good > valid or a negative count")
        row = db.execute("SELECT count(*) FROM periods WHERE \"end\" <= start").fetchone()
        if row and row[0]:
            problems.append(f"{row[0]} periods that end before they start")
        return "; ".join(problems) or "ok"

    def size_bytes(self) -> int:
        return self._size

