"""The state store on both backends: a SQLite file, and a real PostgreSQL server
(tests/pg.py starts one per session, a fresh database per test).

The same tests run against both: what is flushed comes back after a reopen,
leaves accumulate, a period closes once, a failed write loses nothing, a writer
killed with SIGKILL mid-flush leaves leaves, progress and journal that agree,
and incidents written in one batch come back. PostgreSQL-only: several
instances in one database (period closing raced between two owners, journals
kept apart, one process per instance name), a dropped connection, and no
password in any error.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from slamon.config.loader import ConfigError, load_config
from slamon.sli.events import events_key
from slamon.store.base import ClosedPeriod, Store, StoreError, StoreWriteError
from slamon.store.postgres import PostgresStore
from slamon.store.sqlite import StateStore
from slamon.util.events import Event, EventKind
from slamon.web.status import incidents
from slamon.web.status.incidents import IncidentLog
from tests.misbehaving import HOST, free_port
from tests.pg import PgServer

REPO = Path(__file__).resolve().parent.parent

Opener = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Makes (unopened) stores on one state: a file, or a database as one instance."""
    if request.param == "sqlite":
        return lambda: StateStore(tmp_path / "state.sqlite3")
    dsn = request.getfixturevalue("pg_dsn")
    return lambda: PostgresStore(dsn, "shard-0")


async def test_reopen_keeps_data(opener: Opener) -> None:
    store = opener()
    await store.open()
    store.note_outcome("web", 100.0, True, 0.1)
    store.note_outcome("web", 101.0, False, 0.2)
    store.note_outcome("api", 100.5, None, None)
    store.add_leaf("sla", "web", 100, 1, 2, 0)
    store.add_leaf("sla", "api", 100, 0, 0, 1)
    await store.flush()
    await store.set_sla_starts([("sla", 1, '{"s":1}')])
    migrated = await _rows(store, "SELECT value FROM meta WHERE key = 'schema_migrated_at'")
    await store.close()

    again = opener()
    await again.open()
    # the schema is there: no second migration
    assert await _rows(again, "SELECT value FROM meta WHERE key = 'schema_migrated_at'"
                       ) == migrated != []
    restored = await again.load()
    assert restored.progress == {"web": 101.0, "api": 100.5}
    assert restored.journal == [("web", 100.0, 1, 0.1), ("web", 101.0, 0, 0.2),
                                ("api", 100.5, None, None)]
    assert restored.sla_progress == {"sla": (0, 1)}
    assert restored.sla_schedules == {"sla": '{"s":1}'}
    assert await again.period_leaves("sla", 0, 200) == {
        "api": [(100, 0, 0, 1)], "web": [(100, 1, 2, 0)]}
    # leaves accumulate across flushes, never overwrite; progress never goes back
    again.add_leaf("sla", "web", 100, 1, 1, 0)
    again.note_outcome("web", 99.0, True, 0.1)
    await again.flush()
    assert (await again.period_leaves("sla", 0, 200))["web"] == [(100, 2, 3, 0)]
    assert (await again.load()).progress["web"] == 101.0

    # a snapshot replaces the journal it covers
    async def snap() -> dict[str, tuple[str, bytes]]:
        return {"slo-a": ("shape-1", b"\x00\x01windows")}

    again.note_outcome("web", 102.0, True, 0.1)
    await again.flush(snap)
    restored = await again.load()
    assert restored.journal == [] and restored.snapshots == {
        "slo-a": ("shape-1", b"\x00\x01windows")}
    assert await again.prune_leaves("sla", 101) == 2
    assert await again.period_leaves("sla", 0, 200) == {}
    assert await again.integrity_check() == "ok"
    await again.close()


async def test_a_period_closes_once(opener: Opener) -> None:
    store = opener()
    await store.open()
    first = ClosedPeriod("sla", 7, 420, 480, 500.0, {"verdict": "met", "good": 5},
                         b"\xaa" * 32, b"\xbb" * 32, '{"judged": "by this"}')
    second = ClosedPeriod("sla", 7, 420, 480, 999.0, {"verdict": "breached", "good": 1},
                          b"\xcc" * 32, b"\xdd" * 32)
    assert await store.close_period(first, 3) is True
    assert await store.close_period(second, 3) is False
    assert await store.get_period("sla", 7) == first
    assert (await store.load()).sla_progress == {"sla": (7, 3)}
    # a row from before the schedule column gets one; progress and a stored one stay
    await store.set_sla_starts([("sla", 1, "first"), ("other", 4, "x")])
    await store.set_sla_starts([("sla", 1, "second")])
    loaded = await store.load()
    assert loaded.sla_progress == {"sla": (7, 3), "other": (3, 4)}
    assert loaded.sla_schedules == {"sla": "first", "other": "x"}
    # an older period closed late never moves last_closed backwards
    assert await store.close_period(
        ClosedPeriod("sla", 5, 300, 360, 501.0, {}, b"\x00" * 32, b"\x00" * 32), 3) is True
    assert (await store.load()).sla_progress == {"sla": (7, 3), "other": (3, 4)}
    # the policies of the unclosed periods: replaced whole, progress and schedule stay
    await store.set_sla_policies([("sla", "[1]"), ("other", "[2]")])
    await store.set_sla_policies([("sla", "[3]")])
    loaded = await store.load()
    assert loaded.sla_policies == {"sla": "[3]", "other": "[2]"}
    assert loaded.sla_progress == {"sla": (7, 3), "other": (3, 4)}
    assert loaded.sla_schedules == {"sla": "first", "other": "x"}
    assert [(p.period, p.policy) for p in await store.periods("sla")] == [
        (5, None), (7, '{"judged": "by this"}')]
    await store.close()


_FLUSHER = textwrap.dedent("""
    import asyncio, sys
    from slamon.store.postgres import PostgresStore
    from slamon.store.sqlite import StateStore

    TARGETS = ("a", "b", "c")

    async def main(backend, where):
        store = StateStore(where) if backend == "sqlite" else PostgresStore(where, "shard-0")
        await store.open()
        progress = (await store.load()).progress
        t = {x: progress.get(x, -1.0) + 1 for x in TARGETS}
        print("ready", flush=True)
        while True:
            for _ in range(50):
                for x in TARGETS:
                    tick = t[x]
                    ok = int(tick) % 5 != 0
                    store.note_outcome(x, tick, ok, 0.01)
                    store.add_leaf("sla", x, int(tick // 10) * 10, int(ok), 1, 0)
                    t[x] = tick + 1
            await store.flush()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


async def _const(value: dict[str, tuple[str, bytes]]) -> dict[str, tuple[str, bytes]]:
    return value


async def _rows(store: Store, sql: str) -> list[Any]:
    return await store.run_sql(lambda db: db.execute(sql).fetchall())


async def test_a_writer_killed_mid_flush_leaves_agreeing_rows(
    opener: Opener, tmp_path: Path
) -> None:
    """SIGKILL a flushing child at random moments, 8 times: after each, leaves,
    progress and journal agree (every tick stored once, or not at all)."""
    seed = int(os.environ.get("SLAMON_TEST_SEED", time.time_ns() % 1_000_000))
    print(f"seed={seed}")
    rng = random.Random(seed)
    probe = opener()
    backend = probe.backend
    where = str(tmp_path / "state.sqlite3") if backend == "sqlite" else probe._dsn  # type: ignore[attr-defined]
    script = tmp_path / "flusher.py"
    script.write_text(_FLUSHER)
    last_progress: dict[str, float] = {}
    for round_ in range(8):
        proc = subprocess.Popen([sys.executable, str(script), backend, where], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == b"ready\n", (line, proc.stderr.read() if proc.stderr else b"")
            await asyncio.sleep(rng.uniform(0.05, 0.6))
        finally:
            proc.kill()
            proc.wait(10)
        reader = opener()  # also shows the killed writer's instance lock is gone
        await reader.open()
        try:
            assert await reader.integrity_check() == "ok"
            progress = {str(t): float(v) for t, v in
                        await _rows(reader, "SELECT target, last_tick FROM progress")}
            leaves = {str(t): (int(v), int(g)) for t, v, g in await _rows(
                reader, "SELECT s.target, sum(l.valid), sum(l.good) FROM leaves l "
                        "JOIN series s ON s.id = l.series GROUP BY s.target")}
            journal = {str(t): (int(n), float(hi)) for t, n, hi in await _rows(
                reader, "SELECT target, count(*), max(t) FROM journal GROUP BY target")}
        finally:
            await reader.close()
        for target in ("a", "b", "c"):
            if target not in progress:
                assert target not in leaves and target not in journal, round_
                continue
            ticks = int(progress[target]) + 1  # ticks 0..last_tick, all stored once
            assert leaves[target][0] == ticks, (round_, target, progress, leaves)
            assert leaves[target][1] == ticks - (ticks + 4) // 5, (round_, target)
            assert journal[target] == (ticks, progress[target]), (round_, target, journal)
            assert progress[target] >= last_progress.get(target, -1.0)
        last_progress = progress
    assert last_progress, "the child never completed a flush"


# ------------------------------------------------------------- PostgreSQL only

async def test_two_owners_racing_to_close_a_period_close_it_once(pg_dsn: str) -> None:
    """Two instances that both believe they own an SLA (a resharding, a split brain):
    the primary key lets exactly one record each period; the other learns it lost."""
    a, b = PostgresStore(pg_dsn, "shard-0"), PostgresStore(pg_dsn, "shard-1")
    await asyncio.gather(a.open(), b.open())  # migrate together: once
    try:
        wins = {"shard-0": 0, "shard-1": 0}
        for n in range(40):
            pa = ClosedPeriod("sla", n, n * 60, n * 60 + 60, 1.0, {"by": "a"}, b"a" * 32,
                              b"d" * 32)
            pb = ClosedPeriod("sla", n, n * 60, n * 60 + 60, 2.0, {"by": "b"}, b"b" * 32,
                              b"d" * 32)
            got = await asyncio.gather(a.close_period(pa, 0), b.close_period(pb, 0))
            assert sorted(got) == [False, True], (n, got)
            wins["shard-0" if got[0] else "shard-1"] += 1
            stored = await a.get_period("sla", n)
            assert stored == (pa if got[0] else pb)
        assert (await b.load()).sla_progress == {"sla": (39, 0)}
        closers = await _rows(a, "SELECT closed_by, count(*) FROM periods GROUP BY closed_by")
        assert dict(closers) == {k: v for k, v in wins.items() if v}
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_instances_keep_their_own_journal_and_one_process_per_name(pg_dsn: str) -> None:
    a, b = PostgresStore(pg_dsn, "shard-0"), PostgresStore(pg_dsn, "shard-1")
    await a.open()
    await b.open()
    twin = PostgresStore(pg_dsn, "shard-0")
    twin.lock_wait = 0.5  # a live holder: waiting longer changes nothing
    with pytest.raises(StoreError, match="another slamon process is connected as instance "
                                         "'shard-0'"):
        await twin.open()
    await twin.close()
    a.note_outcome("web", 10.0, True, 0.1)
    b.note_outcome("api", 20.0, False, 0.2)
    await a.flush()
    await b.flush()

    async def snap() -> dict[str, tuple[str, bytes]]:
        return {"web-slo": ("s", b"w")}

    await a.flush(snap)  # clears shard-0's journal, not shard-1's
    ra, rb = await a.load(), await b.load()
    assert ra.journal == [] and rb.journal == [("api", 20.0, 0, 0.2)]
    # progress and snapshots are shared: a target that moves keeps its history
    assert ra.progress == rb.progress == {"web": 10.0, "api": 20.0}
    assert rb.snapshots == {"web-slo": ("s", b"w")}
    await a.close()
    again = PostgresStore(pg_dsn, "shard-0")  # the name is free once its holder left
    await again.open()
    await again.close()
    await b.close()


async def test_a_dropped_connection_loses_nothing(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, "shard-0")
    await store.open()
    store.note_outcome("web", 1.0, True, 0.1)
    store.add_leaf("sla", "web", 0, 1, 1, 0)
    await store.flush()
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = 'slamon shard-0'")
    store.note_outcome("web", 2.0, False, 0.1)
    store.add_leaf("sla", "web", 0, 0, 1, 0)
    with pytest.raises(StoreWriteError):
        await store.flush()  # the write that finds the connection gone
    assert not store.health.healthy
    store.note_outcome("web", 3.0, True, 0.1)
    store.add_leaf("sla", "web", 0, 1, 1, 0)
    assert await store.flush() is True  # reconnects, takes its lock again, writes all
    assert store.health.healthy
    restored = await store.load()
    assert restored.progress == {"web": 3.0}
    assert [r[:2] for r in restored.journal] == [("web", 1.0), ("web", 2.0), ("web", 3.0)]
    assert await store.period_leaves("sla", 0, 10) == {"web": [(0, 2, 3, 0)]}
    await store.close()


async def test_no_password_in_any_error(pg_server: PgServer) -> None:
    secret = "s3cret-Pa55"
    dead = free_port()
    for dsn in (f"host={HOST} port={dead} user=slamon password={secret} dbname=x",
                f"postgresql://slamon:{secret}@{HOST}:{dead}/x"):
        store = PostgresStore(dsn, "default", connect_timeout=2)
        with pytest.raises(StoreError) as err:
            await store.open()
        await store.close()
        assert secret not in str(err.value) and "cannot connect to postgres://" in str(err.value)
        assert f"{HOST}:{dead}/x" in str(err.value)


# -------------------------------------------------------------- the daemon on it

def _config(tmp_path: Path, body: str) -> Path:
    cfg = tmp_path / "slamon.yaml"
    cfg.write_text(textwrap.dedent(body))
    return cfg


def test_config_rules_for_the_backend(tmp_path: Path) -> None:
    base = textwrap.dedent("""\
        targets:
          - {id: web, kind: http, interval: 10s, timeout: 2s,
             http: {url: "http://127.0.0.1:9/"}}
        """)
    cases = {
        "state: {backend: postgres}\n": "state.dsn: backend postgres needs exactly one of",
        "state: {backend: postgres, dsn: x, path: /tmp/s}\n": "state.path: is for backend sqlite",
        "state: {dsn: x}\n": "state.dsn: is for backend postgres",
    }
    for extra, message in cases.items():
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            load_config(_config(tmp_path, base + extra))
    config = load_config(_config(tmp_path, base + "state: {backend: postgres, dsn: x}\n"
                                 "shard: {index: 2, count: 3}\n"))
    assert config.state.instance_name(config.shard) == "shard-2"


async def test_daemon_runs_on_postgres_and_resumes(pg_dsn: str, tmp_path: Path) -> None:
    """`slamon run` with backend postgres: probes are stored, /metrics says so, and a
    restart resumes from the database (the downtime filled as no data)."""
    from aiohttp import web

    app = web.Application()
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="OK")

    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site_port = free_port()
    await web.TCPSite(runner, HOST, site_port).start()
    port = free_port()
    (tmp_path / "dsn").write_text(pg_dsn + "\n")
    cfg = _config(tmp_path, f"""\
        server: {{listen: "{HOST}:{port}"}}
        logging: {{format: json}}
        state: {{backend: postgres, dsn_file: "{tmp_path / 'dsn'}", flush_interval: 200ms}}
        targets:
          - {{id: web, kind: http, interval: 1s, timeout: 500ms,
             http: {{url: "http://{HOST}:{site_port}/"}}}}
        slos:
          - {{id: web-avail, targets: [web], objective: 0.9, window: 1h}}
        """)
    try:
        async with aiohttp.ClientSession() as session:
            first = -1.0
            for run in range(2):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "slamon", "run", "-c", str(cfg), cwd=REPO,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
                try:
                    progress = await _wait_progress(session, port, pg_dsn, proc,
                                                    after=first)
                finally:
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGTERM)
                    out, _ = await asyncio.wait_for(proc.communicate(), 15)
                    print(out.decode()[-3000:])
                assert proc.returncode == 0, out.decode()[-2000:]
                events = [json.loads(line) for line in out.decode().splitlines()
                          if line.startswith("{")]
                restored = [e for e in events if e["event"] == "state_restored"]
                assert restored and restored[0]["backend"] == "postgres"
                # the snapshots taken at the first stop (the SLO's state and its
                # target's events) are what the second run resumes
                assert restored[0]["snapshots"] == 2 * run
                assert pg_dsn not in out.decode()
                first = progress
    finally:
        await runner.cleanup()


async def _wait_progress(session: aiohttp.ClientSession, port: int, dsn: str,
                         proc: asyncio.subprocess.Process, after: float) -> float:
    """Wait until a probe outcome newer than `after` is in the database and /metrics
    shows the backend healthy; the stored progress."""
    for _ in range(300):
        if proc.returncode is not None:
            raise AssertionError("slamon exited")
        try:
            async with session.get(f"http://{HOST}:{port}/metrics") as resp:
                text = await resp.text()
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
            continue
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT to_regclass('progress') IS NOT NULL").fetchone()
            got = conn.execute("SELECT last_tick FROM progress WHERE target = 'web'"
                               ).fetchone() if row and row[0] else None
        if got and float(got[0]) > after and "slamon_state_healthy 1.0" in text:
            return float(got[0])
        await asyncio.sleep(0.1)
    raise AssertionError("no probe outcome reached the database")


async def test_a_failed_flush_leaves_no_phantom_series(opener: Opener) -> None:
    """Series ids are remembered only once their transaction committed: a flush that
    inserted a new series and then failed must not let the next flush attach leaves
    to the rolled-back id (they would be lost from every period)."""
    store = opener()
    await store.open()
    store.add_leaf("sla", "new", 0, 1, 1, 0)
    store.batch.journal.append(("new", None, 1, 0.1))  # type: ignore[arg-type]  # NOT NULL
    with pytest.raises(StoreWriteError):
        await store.flush()
    store.batch.journal = [row for row in store.batch.journal if row[1] is not None]
    store.add_leaf("sla", "new", 0, 0, 1, 0)
    assert await store.flush() is True
    assert await store.period_leaves("sla", 0, 10) == {"new": [(0, 1, 2, 0)]}
    await store.close()


async def test_the_last_instance_to_claim_a_target_is_the_only_one_writing_it(
    pg_dsn: str,
) -> None:
    """Two instances that both probe a target (a rolling reshard, a config skew): once
    the second claims it, the first's outcomes for it are refused, and counted, so no
    tick is counted twice in the shared leaves; the first keeps writing its others."""
    a, b = PostgresStore(pg_dsn, "shard-0"), PostgresStore(pg_dsn, "shard-1")
    await a.open()
    await b.open()
    try:
        a.own(["web", "api"])
        a.note_outcome("web", 1.0, True, 0.1)
        a.add_leaf("sla", "web", 0, 1, 1, 0)
        await a.flush()
        b.own(["web"])  # b takes web over
        await b.flush()
        for store in (a, b):
            store.note_outcome("web", 2.0, True, 0.1)
            store.add_leaf("sla", "web", 0, 1, 1, 0)
        a.note_outcome("api", 2.0, False, 0.1)
        await asyncio.gather(a.flush(), b.flush())
        assert a.health.not_owned == 1 and b.health.not_owned == 0  # web's one outcome
        assert await a.period_leaves("sla", 0, 10) == {"web": [(0, 2, 2, 0)]}
        assert (await a.load()).progress == {"web": 2.0, "api": 2.0}
        owners = await _rows(a, "SELECT kind, id, instance FROM owners ORDER BY kind, id")
        assert owners == [("target", "api", "shard-0"), ("target", "web", "shard-1")]
        # SLO snapshots are fenced by SLO the same way, and a target's events
        # (under events_key) by the target
        a.own([], ["web-slo", "api-slo"])
        await a.flush()
        b.own([], ["web-slo"])

        async def snap() -> dict[str, tuple[str, bytes]]:
            return {"web-slo": ("s", b"from a"), "api-slo": ("s", b"from a"),
                    events_key("web"): ("e", b"from a"), events_key("api"): ("e", b"from a")}

        await b.flush(lambda: _const({"web-slo": ("s", b"from b"),
                                      events_key("web"): ("e", b"from b")}))
        await a.flush(snap)
        assert (await a.load()).snapshots == {
            "web-slo": ("s", b"from b"), "api-slo": ("s", b"from a"),
            events_key("web"): ("e", b"from b"), events_key("api"): ("e", b"from a")}
        assert a.health.not_owned == 1  # no outcome refused: snapshots are not outcomes
    finally:
        await a.close()
        await b.close()


async def test_a_database_that_is_down_keeps_the_batch_until_it_is_back(
    pg_server: PgServer,
) -> None:
    """The connection drops and reconnecting fails (the database is gone): the flush
    fails like any write, the outcomes stay pending, and they are written once it is
    back."""
    dsn = pg_server.create_database()
    store = PostgresStore(dsn, "shard-0", connect_timeout=1)
    await store.open()
    name = dsn.split("dbname=")[1]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:  # the postgres db
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")  # type: ignore[arg-type]
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s", (name,))
        # termination is asynchronous: a flush before the backend is gone would succeed
        for _ in range(100):
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                (name,)).fetchone()
            if row is not None and row[0] == 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the store's backend was not terminated")
    store.note_outcome("web", 1.0, True, 0.1)
    for _ in range(2):  # the drop is noticed, then the reconnect is refused
        with pytest.raises(StoreWriteError):
            await store.flush()
    assert len(store.batch.journal) == 1 and not store.health.healthy
    with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")  # type: ignore[arg-type]
    assert await store.flush() is True
    assert (await store.load()).progress == {"web": 1.0}
    await store.close()


async def test_a_database_at_schema_3_gets_the_closed_periods_policy(pg_dsn: str) -> None:
    """PostgreSQL migration 4 on a database a previous slamon left at schema 3, with a
    closed period: the period stays as it was, with no policy, and new ones keep theirs."""
    store = PostgresStore(pg_dsn, "shard-0")
    await store.open()
    old = ClosedPeriod("sla", 7, 420, 480, 500.0, {"verdict": "met"}, b"\xaa" * 32, b"\xbb" * 32)
    assert await store.close_period(old, 3) is True
    await store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # as schema 3 had it
        conn.execute("ALTER TABLE periods DROP COLUMN policy")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    again = PostgresStore(pg_dsn, "shard-0")
    await again.open()
    try:
        assert await again.get_period("sla", 7) == old  # policy None
        new = ClosedPeriod("sla", 8, 480, 540, 560.0, {"verdict": "met"}, b"\xcc" * 32,
                           b"\xdd" * 32, '{"kept": true}')
        assert await again.close_period(new, 3) is True
        assert [p.policy for p in await again.periods("sla")] == [None, '{"kept": true}']
    finally:
        await again.close()
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert row is not None and row[0] == "4"


async def test_forgotten_progress_rows_are_deleted_and_a_later_tick_stays(
    opener: Opener,
) -> None:
    """The progress rows of held probes that no open period names any more go at the
    next flush; a tick recorded for the same name after that is kept."""
    store = opener()
    await store.open()
    store.note_outcome("web", 100.0, True, 0.1)
    for name in ("web@00aa", "web@00bb", "web@00cc"):
        store.batch.progress[name] = 100.0  # as the tracker records a held probe's tick
    await store.flush()
    store.batch.forget_progress("web@00aa")
    store.batch.progress["web@00bb"] = 101.0
    store.batch.forget_progress("web@00bb")  # its pending tick goes with it
    store.batch.forget_progress("web@00cc")
    store.batch.progress["web@00cc"] = 102.0  # held again meanwhile
    await store.flush()
    assert (await store.load()).progress == {"web": 100.0, "web@00cc": 102.0}
    assert store.batch.empty()
    await store.close()


def test_a_batch_put_back_keeps_what_was_forgotten_since_forgotten() -> None:
    from slamon.store.base import Batch

    older, newer = Batch(), Batch()
    older.progress.update({"web": 5.0, "web@00aa": 5.0, "web@00bb": 5.0})
    older.forget.add("web@00cc")
    newer.forget_progress("web@00aa")  # released after the batch that failed
    newer.progress["web@00cc"] = 6.0  # held again after the failed batch forgot it
    newer.merge_older(older)
    # written in this order: the deletes, then the progress rows
    assert newer.forget == {"web@00aa", "web@00cc"}
    assert newer.progress == {"web": 5.0, "web@00bb": 5.0, "web@00cc": 6.0}
    assert not newer.empty() and Batch(forget={"x"}).empty() is False


async def test_incidents_written_in_one_batch_come_back_after_a_reopen(
    opener: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Automatic incidents batched into one transaction (a target down and up again in
    it, another left open) and a manual incident and its update, on either backend: a
    reopened store reads back exactly what the log held, the updates read two incidents
    per query (so a query covers several, and the last one fewer)."""
    def shown(log: IncidentLog) -> list[tuple[int, str, str, list[str]]]:
        return [(i.id, i.source, i.target, [u.status for u in i.updates])
                for i in log.incidents]

    def ev(kind: EventKind, target: str) -> Event:
        return Event(kind, 100.0, target=target, details={"reason": "refused"})

    store = opener()
    await store.open()
    try:
        log = IncidentLog()
        await log.load(store)
        await log.record_many([ev(EventKind.TARGET_DOWN, "web"), ev(EventKind.TARGET_DOWN, "api"),
                               ev(EventKind.TARGET_UP, "web")])
        manual = await log.open("Payments delayed", "looking into it", ("api",))
        await log.update(manual.id, "identified", "a provider is slow")
        assert [(s, t, u) for _, s, t, u in shown(log)] == [
            ("auto", "web", ["investigating", "resolved"]), ("auto", "api", ["investigating"]),
            ("manual", "api", ["investigating", "identified"])]
    finally:
        await store.close()
    monkeypatch.setattr(incidents, "_UPDATES_PER_QUERY", 2)
    again_store = opener()
    await again_store.open()
    try:
        again = IncidentLog()
        await again.load(again_store)
        assert shown(again) == shown(log)
    finally:
        await again_store.close()
