"""The SQLite state store: schema, restore, one-transaction flushes, and refusal.

Real SQLite files in tmp_path, real processes killed with SIGKILL, real
filesystems (tmpfs mounts) that refuse writes. Nothing here is mocked.

Unit level: migrations, and window snapshot + journal replay through the
daemon's own restore path. Reopening, close-once periods and a child process
SIGKILLed in the middle of a flush loop are in tests/test_store_backends.py,
which runs them on SQLite and PostgreSQL alike.

Process level (`slamon run` as a subprocess): a corrupt, foreign, truncated or
newer state file, and an unwritable state directory, stop start-up with one
clear line and a non-zero exit, and leave the file byte-identical. A disk that
refuses writes while slamon runs is logged once, shown on /metrics, and loses
nothing once it accepts writes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from slamon.app.daemon import Daemon
from slamon.config.loader import load_config
from slamon.probers.base import FailureReason, ProbeResult
from slamon.scheduler import phase_offset
from slamon.store.migrations import MIGRATIONS
from slamon.store.sqlite import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    ClosedPeriod,
    StateStore,
    StoreError,
    StoreWriteError,
)
from tests.misbehaving import MisbehavingHttpServer, free_port
from tests.promtext import Samples, parse_metrics, value

REPO = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------- helpers



async def _no_snapshots() -> dict[str, tuple[str, bytes]]:
    return {}

def _ro_query(path: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read a state file without touching it (read-only URI connection)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def _has_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "16m", ro: bool = False) -> Iterator[Path]:
    """A real tmpfs at `where`, unmounted (lazily if busy) whatever happens."""
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {res.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _config_text(state: Path, port: int, url: str, interval: str = "1s",
                 flush: str = "200ms", targets: tuple[str, ...] = ("web",)) -> str:
    tlist = "\n".join(
        f"""  - id: {t}
    kind: http
    interval: {interval}
    timeout: 400ms
    http: {{url: "{url}"}}""" for t in targets)
    return textwrap.dedent(f"""\
        server: {{listen: "127.0.0.1:{port}"}}
        logging: {{level: info, format: json}}
        state: {{path: "{state}", flush_interval: {flush}, snapshot_interval: 2s}}
        slos:
          - id: avail
            targets: [{", ".join(targets)}]
            objective: 0.9
            window: 1h
        slas:
          - id: sla
            slo: avail
            period: {{kind: fixed, length: 1m, anchor: 0}}
            evidence_resolution: 10s
            grace: 1s
        targets:
        """) + tlist + "\n"


def _run_cli(config: Path, timeout: float = 12.0) -> subprocess.CompletedProcess[str]:
    """`slamon run` that is expected to refuse to start (killed if it does not)."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "slamon", "run", "-c", str(config)],
            capture_output=True, text=True, timeout=timeout, cwd=REPO,
        )
    except subprocess.TimeoutExpired as exc:  # it started: a silent reset or no check
        raise AssertionError(f"slamon started instead of refusing: {exc.stdout!r}") from None


def _assert_clear_refusal(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode != 0, res
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line, got: {res.stderr!r}"
    assert lines[0].startswith("slamon: error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _make_real_db(path: Path, periods: int = 1) -> None:
    """A genuine slamon state file with leaves, progress, journal and a closed period."""

    async def fill() -> None:
        store = StateStore(path)
        await store.open()
        for i in range(2000):
            t = 1_000_000.0 + i
            store.note_outcome("web", t, i % 7 != 0, 0.01)
            store.add_leaf("sla", "web", int(t // 10) * 10, int(i % 7 != 0), 1, 0)
        await store.flush()
        for n in range(periods):
            await store.close_period(
                ClosedPeriod("sla", n, n * 60, n * 60 + 60, 1.0, {"good": n}, b"\x01" * 32,
                             b"\x02" * 32), 0)
        await store.close()

    asyncio.run(fill())


# ------------------------------------------------------------ unit: schema


async def test_new_file_gets_schema_and_application_id(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.sqlite3"
    store = StateStore(path)
    await store.open()
    await store.close()
    assert _ro_query(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION == 8
    assert _ro_query(path, "PRAGMA application_id")[0][0] == APPLICATION_ID
    assert _ro_query(path, "PRAGMA journal_mode")[0][0] == "wal"
    tables = {r[0] for r in _ro_query(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "progress", "snapshots", "journal", "series", "leaves", "sla_progress",
            "periods", "reports", "oracle_txs", "oracle_meta"} <= tables
    assert _ro_query(path, "SELECT key FROM meta") == [("schema_migrated_at",)]


async def test_header_only_file_from_a_first_start_killed_early_is_adopted(
    tmp_path: Path,
) -> None:
    """SIGKILL between the switch to WAL and the migration leaves a 4 KiB empty
    database without application_id: nothing to lose, so it must not brick start-up."""
    path = tmp_path / "state.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    assert path.stat().st_size > 0
    store = StateStore(path)
    await store.open()
    await store.close()
    assert _ro_query(path, "PRAGMA application_id")[0][0] == APPLICATION_ID
    assert _ro_query(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION


#: Schema 1 exactly as the previous slamon wrote it: the store's one migration...
_OLD_STORE_SCHEMA_1 = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE progress(
    target TEXT PRIMARY KEY, last_tick REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE snapshots(
    slo TEXT PRIMARY KEY, shape TEXT NOT NULL, data BLOB NOT NULL,
    taken_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE journal(
    seq INTEGER PRIMARY KEY, target TEXT NOT NULL, t REAL NOT NULL,
    ok INTEGER, duration REAL);
CREATE TABLE series(
    id INTEGER PRIMARY KEY, sla TEXT NOT NULL, target TEXT NOT NULL,
    UNIQUE(sla, target));
CREATE TABLE leaves(
    series INTEGER NOT NULL, bucket INTEGER NOT NULL, good INTEGER NOT NULL,
    valid INTEGER NOT NULL, no_data INTEGER NOT NULL,
    PRIMARY KEY(series, bucket)) WITHOUT ROWID;
CREATE TABLE sla_progress(
    sla TEXT PRIMARY KEY, last_closed INTEGER NOT NULL,
    first_period INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE periods(
    sla TEXT NOT NULL, period INTEGER NOT NULL, start INTEGER NOT NULL,
    end INTEGER NOT NULL, closed_at REAL NOT NULL, result TEXT NOT NULL,
    root BLOB NOT NULL, policy_digest BLOB NOT NULL,
    PRIMARY KEY(sla, period)) WITHOUT ROWID;
CREATE TABLE reports(
    sla TEXT NOT NULL, period INTEGER NOT NULL, signer TEXT NOT NULL,
    state TEXT NOT NULL, payload TEXT NOT NULL, signature BLOB,
    tx_hash TEXT, nonce INTEGER, block INTEGER, reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
    PRIMARY KEY(sla, period, signer)) WITHOUT ROWID;
"""

#: ...and the tables the previous oracle journal created on its own, once it first ran
_OLD_JOURNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS oracle_txs(
    sla TEXT NOT NULL, period INTEGER NOT NULL, signer TEXT NOT NULL,
    tx_hash TEXT NOT NULL, nonce INTEGER NOT NULL, max_fee INTEGER NOT NULL,
    priority_fee INTEGER NOT NULL, gas INTEGER NOT NULL, sent_at REAL NOT NULL,
    PRIMARY KEY(sla, period, signer, tx_hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS oracle_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID
"""

_OLD_ROWS: dict[str, list[tuple[object, ...]]] = {
    "progress": [("web", 101.0), ("api", 100.5)],
    "snapshots": [("slo-web", "tiers-v1", b"\x00\x01snap", 99.0)],
    "journal": [(1, "web", 100.0, 1, 0.1), (2, "web", 101.0, 0, 0.2),
                (3, "api", 100.5, None, None)],
    "series": [(1, "sla", "web"), (2, "sla", "api")],
    "leaves": [(1, 100, 1, 2, 0), (2, 100, 0, 0, 1)],
    "sla_progress": [("sla", 6, 1)],
    "periods": [("sla", 6, 360, 420, 500.0, '{"verdict": "met"}', b"\xaa" * 32, b"\xbb" * 32)],
    "reports": [("sla", 6, "0x" + "11" * 20, "sent", '{"report": 1}', b"\x05" * 65,
                 "0x" + "ab" * 32, 4, None, None, 1, 510.0)],
}
_OLD_JOURNAL_ROWS: dict[str, list[tuple[object, ...]]] = {
    "oracle_txs": [("sla", 6, "0x" + "11" * 20, "0x" + "ab" * 32, 4, 100, 10, 200_000, 505.0)],
    "oracle_meta": [("last_success", "400.0")],
}


def _old_state_file(path: Path, journal_tables: bool) -> None:
    """A state file as the previous slamon left it: schema 1 by the store, and the
    journal's tables by the journal itself (when the oracle had run), with rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("PRAGMA journal_mode=WAL")
    # as the old migration ran it: one transaction, statements split on ";"
    conn.execute("BEGIN IMMEDIATE")
    for statement in _OLD_STORE_SCHEMA_1.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version=1")
    conn.execute("INSERT INTO meta(key, value) VALUES ('schema_migrated_at', '1.0')")
    conn.execute("COMMIT")
    rows = dict(_OLD_ROWS)
    if journal_tables:
        for statement in _OLD_JOURNAL_SCHEMA.split(";"):
            conn.execute(statement)
        rows.update(_OLD_JOURNAL_ROWS)
    for table, values in rows.items():
        marks = ", ".join("?" * len(values[0]))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
    conn.close()


def _columns(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's columns (name, type, not null, default, primary key position)."""
    tables = [r[0] for r in _ro_query(path, "SELECT name FROM sqlite_master WHERE type='table'")]
    return {
        str(t): [tuple(c[1:]) for c in _ro_query(path, f"PRAGMA table_info({t})")]
        for t in tables
    }


@pytest.mark.parametrize("journal_tables", [True, False], ids=["oracle-ran", "oracle-never-ran"])
async def test_state_file_of_the_previous_version_opens_and_keeps_everything(
    tmp_path: Path, journal_tables: bool
) -> None:
    path = tmp_path / "state.sqlite3"
    _old_state_file(path, journal_tables)
    before = {t: sorted(_ro_query(path, f"SELECT * FROM {t}"), key=repr)
              for t in (*_OLD_ROWS, *(_OLD_JOURNAL_ROWS if journal_tables else ()))}

    store = StateStore(path)
    await store.open()
    restored = await store.load()
    assert restored.progress == {"web": 101.0, "api": 100.5}
    assert restored.journal == [("web", 100.0, 1, 0.1), ("web", 101.0, 0, 0.2),
                                ("api", 100.5, None, None)]
    assert restored.snapshots == {"slo-web": ("tiers-v1", b"\x00\x01snap")}
    assert restored.sla_progress == {"sla": (6, 1)}
    assert restored.sla_schedules == {}
    assert restored.sla_policies == {}
    assert await store.period_leaves("sla", 0, 200) == {
        "api": [(100, 0, 0, 1)], "web": [(100, 1, 2, 0)]}
    period = await store.get_period("sla", 6)
    assert period is not None and period.result == {"verdict": "met"}
    assert period.policy is None  # closed before periods kept their policy
    assert await store.integrity_check() == "ok"
    await store.close()

    assert _ro_query(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert _ro_query(path, "PRAGMA application_id")[0][0] == APPLICATION_ID
    for table, rows in before.items():
        after = _ro_query(path, f"SELECT * FROM {table}")
        if table in ("reports", "oracle_txs"):
            # migration 4 put the EIP-712 domain first; this payload names none: ''
            assert {r[0] for r in after} <= {""}, table
            after = [r[1:] for r in after]
        if table == "oracle_txs":
            # migration 5 added the relayed calldata: none for an old transaction
            assert {r[-1] for r in after} <= {None}
            after = [r[:-1] for r in after]
        if table == "sla_progress":
            # migrations 6 and 7 added the period schedule and the policies: unknown for
            # an old row
            assert {r[-2:] for r in after} == {(None, None)}
            after = [r[:-2] for r in after]
        if table == "periods":
            # migration 8 added the policy a period was judged by: unknown for an old row
            assert {r[-1] for r in after} == {None}
            after = [r[:-1] for r in after]
        assert sorted(after, key=repr) == rows, table
    if not journal_tables:
        assert _ro_query(path, "SELECT count(*) FROM oracle_txs") == [(0,)]
    # the upgraded file has the very tables and columns a new one gets
    fresh = tmp_path / "fresh.sqlite3"
    new = StateStore(fresh)
    await new.open()
    await new.close()
    assert _columns(path) == _columns(fresh)


def test_migrations_are_numbered_in_order_and_end_at_the_schema_version() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert MIGRATIONS[-1].version == SCHEMA_VERSION


def test_every_table_and_index_is_created_by_the_store_migrations() -> None:
    """One place for the schema: no module creates tables on its own (so the file's
    schema version says what it holds)."""
    package = REPO / "slamon"
    creating = re.compile(r"CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)", re.IGNORECASE)
    offenders = [
        str(py.relative_to(REPO))
        for py in sorted(package.rglob("*.py"))
        if py != package / "store" / "migrations.py" and creating.search(py.read_text())
    ]
    assert offenders == []


async def test_failed_store_stays_failed_until_a_real_write_succeeds(tmp_path: Path) -> None:
    """A flush with nothing to write must not report the store healthy again: a failed
    snapshot-only flush followed by an idle flush is not a recovery (SQLite's own
    query_only refusal stands in for the disk here)."""
    store = StateStore(tmp_path / "state.sqlite3")
    await store.open()

    async def query_only(on: bool) -> None:
        await store._call(lambda: store._db().execute(f"PRAGMA query_only={int(on)}"))

    store.note_outcome("web", 1.0, True, 0.1)
    assert await store.flush() is True
    await query_only(True)
    with pytest.raises(StoreWriteError):
        await store.flush(_no_snapshots)  # snapshot-only flush: the batch is empty
    assert not store.health.healthy and store.health.write_errors == 1
    with pytest.raises(StoreWriteError):
        await store.flush()  # nothing to write: still failed, not "recovered"
    assert not store.health.healthy
    await query_only(False)
    store.note_outcome("web", 2.0, False, 0.1)
    assert await store.flush() is True
    assert store.health.healthy
    assert (await store.load()).progress == {"web": 2.0}
    await store.close()


# ------------------------------- unit: windows restored through the daemon's path


def _daemon_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "slamon.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        server: {{listen: "127.0.0.1:{free_port()}"}}
        state: {{path: "{tmp_path / 'state.sqlite3'}"}}
        targets:
          - {{id: web, kind: http, interval: 10s, timeout: 2s,
              http: {{url: "http://127.0.0.1:9/"}}}}
          - {{id: api, kind: http, interval: 30s, timeout: 2s,
              http: {{url: "http://127.0.0.1:9/api"}}}}
        slos:
          - {{id: web-avail, targets: [web], objective: 0.99, window: 30d}}
          - {{id: web-fast, targets: [web], objective: 0.9, sli: latency,
              latency_threshold: 300ms, window: 7d}}
          - {{id: shop, targets: [web, api], objective: 0.95, window: 1d}}
        slas:
          - {{id: shop-daily, slo: shop, period: {{kind: daily}}, grace: 1m}}
        """))
    return cfg


def _window_view(daemon: Daemon, now: float) -> dict[tuple[str, str | None, float], object]:
    out: dict[tuple[str, str | None, float], object] = {}
    for slo_id, state in daemon.live.slos.items():
        for part in (None, *state.parts):
            for length in (300.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0):
                out[(slo_id, part, length)] = (
                    tuple(state.counts(now, length, part)), state.no_data(now, length, part))
    return out


async def test_snapshot_and_journal_restore_windows_exactly(tmp_path: Path) -> None:
    config = load_config(_daemon_config(tmp_path))
    targets = {t.id: t for t in config.targets}
    now = time.time()
    rng = random.Random(7)

    def feed(daemon: Daemon, start: float, end: float) -> int:
        n = 0
        for tid, target in targets.items():
            off = phase_offset(tid, target.interval)
            k = math.ceil((start - off) / target.interval)
            while (t := k * target.interval + off) < end:
                roll = rng.random()
                if roll < 0.03:
                    daemon._on_missed(target, t)
                elif roll < 0.12:
                    daemon._on_result(target, t, ProbeResult.failure(FailureReason.STATUS, 0.05))
                else:
                    daemon._on_result(target, t, ProbeResult(True, rng.uniform(0.01, 0.6)))
                k += 1
                n += 1
        return n

    first = Daemon(config)
    await first._open_state()
    assert first.store is not None
    fed = feed(first, now - 3 * 3600, now - 2 * 3600)
    first.live.advance(now - 2 * 3600)
    await first._flush(snapshot=True)  # snapshot: journal starts afresh
    fed += feed(first, now - 2 * 3600, now - 60)
    first.live.advance(now - 30)
    await first._flush()  # journal only: the last two hours are replayed
    journal_rows = _ro_query(config.state.resolved_path(), "SELECT count(*) FROM journal")[0][0]
    assert 0 < journal_rows < fed
    before = _window_view(first, now)
    await first.store.close()  # "crash": no final snapshot

    second = Daemon(config)
    await second._open_state()
    assert second.store is not None
    second.live.advance(now - 30)
    after = _window_view(second, now)
    assert after == before
    assert any(v != ((0, 0), 0) for v in before.values())
    await second.store.close()


# ------------------------------------------- process: refusal to start


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(1).randbytes(64 * 1024))


def _truncated(path: Path) -> None:
    _make_real_db(path)
    data = path.read_bytes()
    assert len(data) > 3 * 4096
    path.write_bytes(data[: len(data) // 2 + 1000])


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers(name) VALUES ('precious')")
    conn.commit()
    conn.close()


def _newer_schema(path: Path) -> None:
    _make_real_db(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()


def _damaged_page(path: Path) -> None:
    _make_real_db(path)
    data = bytearray(path.read_bytes())
    # scribble over the b-tree page header of the journal table's root (page 5)
    for i in range(4 * 4096, 4 * 4096 + 64):
        data[i] = 0xA5
    path.write_bytes(bytes(data))


def _damaged_leaves(path: Path) -> None:
    """Damage where start-up reads nothing (the leaves table's root page): only the
    integrity check finds it."""
    _make_real_db(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'leaves'"
                               ).fetchone()
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    for i in range((root - 1) * page, (root - 1) * page + 64):
        data[i] = 0xA5
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (_random_bytes, "not a usable SQLite database"),
        (_truncated, "slamon will not reset it"),
        (_damaged_page, "slamon will not reset it"),
        (_damaged_leaves, "slamon will not reset it"),
        (_foreign, "is not a slamon state file"),
        (_newer_schema, "newer slamon"),
    ],
    ids=["random-bytes", "truncated", "damaged-page", "damaged-unread-table", "foreign-sqlite",
         "newer-schema"],
)
def test_unusable_state_file_refuses_to_start_and_is_left_alone(
    tmp_path: Path, make: object, needle: str
) -> None:
    state = tmp_path / "state" / "slamon.sqlite3"
    state.parent.mkdir()
    assert callable(make)
    make(state)
    before = state.read_bytes()
    config = tmp_path / "slamon.yaml"
    config.write_text(_config_text(state, free_port(), "http://127.0.0.1:9/"))
    res = _run_cli(config)
    _assert_clear_refusal(res, str(state), needle)
    assert state.read_bytes() == before, "the state file was modified"


async def test_the_integrity_check_runs_after_the_reads_and_before_any_write(
        tmp_path: Path) -> None:
    """`open` leaves the check of a current file to `verify`, so that start-up reads its
    state beside it; a write that comes first runs the check first, and a damaged file
    is then refused with nothing written."""
    path = tmp_path / "state.sqlite3"
    await asyncio.to_thread(_damaged_leaves, path)
    before = path.read_bytes()
    store = StateStore(path)
    await store.open()  # the check has not run: it would refuse the file
    try:
        restored = await store.load()
        assert restored.progress == {"web": 1_001_999.0}
        with pytest.raises(StoreError, match=r"is damaged .*slamon will not reset it"):
            await store.verify()
    finally:
        await store.close()
    again = StateStore(path)
    await again.open()
    try:
        again.batch.progress["web"] = 1_002_000.0
        with pytest.raises(StoreWriteError, match="is damaged"):
            await again.flush()
        assert again.batch.progress == {"web": 1_002_000.0}  # kept, not lost
    finally:
        await again.close()
    assert path.read_bytes() == before


def test_state_dir_on_read_only_mount_is_a_clear_error(tmp_path: Path) -> None:
    if not _has_mount():
        pytest.skip("needs root and mount(8)")
    with tmpfs(tmp_path / "ro", size="4m", ro=True) as ro:
        state = ro / "state" / "slamon.sqlite3"
        config = tmp_path / "slamon.yaml"
        config.write_text(_config_text(state, free_port(), "http://127.0.0.1:9/"))
        res = _run_cli(config)
        _assert_clear_refusal(res, "cannot create state directory", str(state.parent),
                              "Read-only file system")


def test_existing_state_on_read_only_mount_is_a_clear_error(tmp_path: Path) -> None:
    if not _has_mount():
        pytest.skip("needs root and mount(8)")
    with tmpfs(tmp_path / "mnt", size="8m") as mnt:
        state = mnt / "slamon.sqlite3"
        _make_real_db(state)
        before = state.read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        config = tmp_path / "slamon.yaml"
        config.write_text(_config_text(state, free_port(), "http://127.0.0.1:9/"))
        res = _run_cli(config)
        _assert_clear_refusal(res, str(state), "read-only filesystem")
        assert state.read_bytes() == before


def test_state_parent_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    state = blocker / "slamon.sqlite3"
    config = tmp_path / "slamon.yaml"
    config.write_text(_config_text(state, free_port(), "http://127.0.0.1:9/"))
    res = _run_cli(config)
    _assert_clear_refusal(res, "cannot create state directory", str(blocker))
    assert blocker.read_text() == "x"


# ------------------------------------- process: the disk refuses writes at run time


def _val(s: Samples, name: str, **labels: str) -> float:
    """The sample, NaN when absent (so comparisons with it are simply false)."""
    found = value(s, name, **labels)
    return math.nan if found is None else found


class _Proc:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.reader: asyncio.Task[None] | None = None
        self._piped = bytearray()

    async def copy_output(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(65536):
            self._piped += chunk

    @property
    def output(self) -> str:
        if self.reader is not None:
            return self._piped.decode(errors="replace")
        return self.log.read_text(errors="replace")

    async def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            await self.proc.wait()
        if self.reader is not None:
            await asyncio.wait_for(self.reader, 5)
        assert self.proc.returncode == 0, self.output

    async def scrape(self, session: aiohttp.ClientSession) -> Samples:
        async with session.get(f"http://127.0.0.1:{self.port}/metrics") as resp:
            assert resp.status == 200
            return parse_metrics(await resp.text())

    async def wait_for(self, session: aiohttp.ClientSession, cond: object, what: str,
                       limit: float = 15.0) -> Samples:
        assert callable(cond)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            assert self.proc.returncode is None, f"daemon exited: {self.output}"
            s = await self.scrape(session)
            if cond(s):
                return s
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def events(self) -> list[dict[str, object]]:
        return [json.loads(ln) for ln in self.output.splitlines() if ln.startswith("{")]


@contextlib.asynccontextmanager
async def _daemon(config: Path, port: int, log: Path,
                  stdout_pipe: bool = False) -> AsyncIterator[_Proc]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "slamon", "run", "-c", str(config),
            stdout=asyncio.subprocess.PIPE if stdout_pipe else out,
            stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )
    d = _Proc(proc, port, log)
    if stdout_pipe:
        d.reader = asyncio.create_task(d.copy_output())
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 20
            while True:
                assert proc.returncode is None, f"daemon exited: {d.output}"
                assert time.monotonic() < deadline, "daemon never became ready"
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield d
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        if d.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(d.reader, 5)


class _Filler:
    """Keeps every free block of a tmpfs taken (re-taking any block freed later), so
    each write that needs space fails with ENOSPC until `release()`."""

    def __init__(self, mnt: Path) -> None:
        self.path = mnt / "filler"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._stop = threading.Event()
        self._take()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _take(self) -> None:
        for size in (1 << 20, 65536, 4096, 512, 64, 1):
            with contextlib.suppress(OSError):
                while os.write(self._fd, b"\0" * size) == size:
                    pass

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self._take()

    def release(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self._fd)
        self.path.unlink()


async def _refusal_scenario(
    tmp_path: Path, state: Path, refuse: Callable[[int], Callable[[], None]],
    reason_word: str, stdout_pipe: bool = False,
) -> None:
    """Run slamon, make its state writes fail (`refuse(pid)` returns the undo),
    check probing continues and the failure shows, undo, check nothing was lost."""
    async with MisbehavingHttpServer() as server:
        port = free_port()
        config = tmp_path / "slamon.yaml"
        config.write_text(_config_text(state, port, server.url("/"), interval="1s",
                                       targets=("web", "api")))
        async with _daemon(config, port, tmp_path / "out.log", stdout_pipe) as d, \
                aiohttp.ClientSession() as session:
            await d.wait_for(session, lambda s: _val(
                s, "slamon_probes_total", target="web", result="success") >= 2, "probes")
            undo = refuse(d.proc.pid)
            try:
                bad = await d.wait_for(
                    session, lambda s: _val(s, "slamon_state_healthy") == 0.0
                    and _val(s, "slamon_state_write_errors_total") >= 1, "state unhealthy")
                probed = _val(bad, "slamon_probes_total", target="web", result="success")
                # several failed flushes (one every 200 ms) while probing goes on and the
                # unwritten events wait in memory; one scrape shows all of it
                still = await d.wait_for(session, lambda s: _val(
                    s, "slamon_probes_total", target="web", result="success") >= probed + 2
                    and _val(s, "slamon_state_write_errors_total") >= 5
                    and _val(s, "slamon_state_pending_events") > 0,
                    "probing continues while writes fail, events pending")
                assert _val(still, "slamon_state_healthy") == 0.0
            finally:
                undo()
            await d.wait_for(session, lambda s: _val(s, "slamon_state_healthy") == 1.0
                             and _val(s, "slamon_state_pending_events") < 10,
                             "state healthy again")
            final = await d.scrape(session)
            await d.stop()

    events = d.events()
    names = [e["event"] for e in events]
    failed_logs = names.count("state_write_failed")
    errors = _val(still, "slamon_state_write_errors_total")
    assert errors >= 5, errors
    # logged on the transition, once, not per failed flush (nor "recovered" by a flush
    # that had nothing to write)
    assert failed_logs == 1 and names.count("state_write_recovered") == 1, d.output
    failed = next(e for e in events if e["event"] == "state_write_failed")
    assert reason_word in str(failed["reason"]), failed
    assert "Traceback" not in d.output

    # nothing probed while writes failed is lost: every tick from the start of the
    # SLA's first period to the last stored tick is in the leaves exactly once
    assert _ro_query(state, "PRAGMA integrity_check") == [("ok",)]
    first_period = int(_ro_query(state, "SELECT first_period FROM sla_progress")[0][0])
    filled = int(next(e for e in events if e["event"] == "state_restored")
                 ["no_data_ticks_filled"])  # type: ignore[call-overload]
    total_no_data = 0
    for tid in ("web", "api"):
        last_tick = float(_ro_query(
            state, "SELECT last_tick FROM progress WHERE target=?", (tid,))[0][0])
        good, valid, no_data = (int(x) for x in _ro_query(
            state, "SELECT sum(good), sum(valid), sum(no_data) FROM leaves l JOIN "
            "series s ON s.id = l.series WHERE s.target=?", (tid,))[0])
        off = phase_offset(tid, 1.0)
        ticks = round(last_tick - off) - math.ceil(first_period * 60 - off) + 1
        assert valid + no_data == ticks, (tid, valid, no_data, ticks)
        scraped = _val(final, "slamon_probes_total", target=tid, result="success")
        assert good == valid >= scraped, (tid, good, valid, scraped)
        total_no_data += no_data
    # no_data is only the ticks before slamon started (and any it missed itself):
    # the spell of failed writes added none
    missed = sum(_val(final, "slamon_probes_total", target=t, result="missed")
                 for t in ("web", "api"))
    assert filled + missed <= total_no_data <= filled + missed + 2, (
        filled, missed, total_no_data)


async def test_disk_full_while_running(tmp_path: Path) -> None:
    """The disk stops taking writes while slamon runs: probing continues, the failure
    is logged once and shown on /metrics, and nothing is lost once writes succeed again.

    Linux refuses `mount -o remount,ro` (EBUSY) while a process holds a file open for
    writing, and SQLite always does (checked below), so the disk's refusal here is a
    tmpfs that fills up (ENOSPC: SQLITE_FULL); the daemon's path is the same for EROFS.
    """
    if not _has_mount():
        pytest.skip("needs root and mount(8)")
    with tmpfs(tmp_path / "mnt", size="16m") as mnt:

        def refuse(pid: int) -> Callable[[], None]:
            remount = subprocess.run(["mount", "-o", "remount,ro", str(mnt)],
                                     capture_output=True, text=True)
            if remount.returncode == 0:  # a kernel that allows it after all: undo
                subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
                raise AssertionError("remount,ro succeeded: test the read-only case instead")
            return _Filler(mnt).release

        await _refusal_scenario(tmp_path, mnt / "slamon.sqlite3", refuse, "full")


async def test_writes_refused_while_running_logged_once(tmp_path: Path) -> None:
    """Every write refused (RLIMIT_FSIZE of 1 byte set on the running daemon with
    prlimit(2): EFBIG on any write past byte 0), then allowed again: one
    state_write_failed, one state_write_recovered, nothing lost."""
    if shutil.which("prlimit") is None:
        pytest.skip("needs prlimit(1)")

    def refuse(pid: int) -> Callable[[], None]:
        subprocess.run(["prlimit", f"--pid={pid}", "--fsize=1:unlimited"], check=True)

        def undo() -> None:
            subprocess.run(["prlimit", f"--pid={pid}", "--fsize=unlimited:unlimited"],
                           check=True)

        return undo

    # the log goes to a pipe: the limit applies to every regular file the daemon writes
    await _refusal_scenario(tmp_path, tmp_path / "state" / "slamon.sqlite3", refuse,
                            "I/O error", stdout_pipe=True)


async def test_one_process_per_state_file_and_a_killed_holder_frees_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = StateStore(path)
    await first.open()
    second = StateStore(path)
    with pytest.raises(StoreError, match="in use by another slamon process"):
        await second.open()
    await second.close()
    await first.close()
    # closed: free again; a holder killed with SIGKILL leaves no stale lock
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import asyncio, sys
            from slamon.store.sqlite import StateStore
            async def main():
                await StateStore({str(path)!r}).open()
                print("held", flush=True)
                await asyncio.sleep(600)
            asyncio.run(main())
            """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        third = StateStore(path)
        with pytest.raises(StoreError):
            await third.open()
        await third.close()
    finally:
        holder.kill()
        holder.wait(10)
    fourth = StateStore(path)
    await fourth.open()
    await fourth.close()
