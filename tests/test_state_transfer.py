"""`slamon state export|import`: a target group's history moves to another shard's file.

The first instance records real windows (snapshot plus journal, as after a
stop), the CLI exports two of its targets and imports them into another
instance's file, and the second instance's restored windows equal the first's,
to the count. Importing twice adds nothing; a file in use is refused.
"""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from slamon.app.daemon import Daemon
from slamon.config.loader import load_config
from slamon.probers.base import FailureReason, ProbeResult
from slamon.scheduler import phase_offset
from slamon.store.sqlite import StateStore
from tests.test_reload import slamon_env
from tests.test_store import _window_view


def noon_zone(now: float) -> str:
    """A fixed-offset zone in which it is 12:00-12:59 at `now`.

    The test's six hours of data then fall in the daily period under way, whatever the
    hour it runs at; in UTC, just after midnight, they would all be in yesterday's.
    """
    shift = 12 - time.gmtime(now).tm_hour  # -11..+12 hours east of UTC
    # POSIX signs: Etc/GMT-12 is twelve hours *east* of UTC
    return "Etc/UTC" if shift == 0 else f"Etc/GMT{-shift:+d}"


def write_config(tmp_path: Path, name: str, zone: str = "UTC") -> Path:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        server: {{listen: "127.0.0.1:0"}}
        state: {{path: "{tmp_path / name}.sqlite3"}}
        targets:
          - {{id: web, kind: http, interval: 10s, timeout: 2s,
              http: {{url: "http://127.0.0.1:9/"}}}}
          - {{id: api, kind: http, interval: 30s, timeout: 2s,
              http: {{url: "http://127.0.0.1:9/api"}}}}
          - {{id: db, kind: tcp, interval: 10s, timeout: 2s, tcp: {{host: 127.0.0.1, port: 9}}}}
        slos:
          - {{id: shop, targets: [web, api], objective: 0.95, window: 1d}}
          - {{id: db-avail, targets: [db], objective: 0.99, window: 1d}}
        slas:
          - {{id: shop-daily, slo: shop, period: {{kind: daily, timezone: "{zone}"}},
              grace: 1m}}
        """))
    return cfg


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slamon", *args], capture_output=True,
                          text=True, env=slamon_env(), timeout=120, check=False)


def rows(path: Path, sql: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


async def test_export_then_import_restores_the_same_windows(tmp_path: Path) -> None:
    now = time.time()
    zone = noon_zone(now)
    old_cfg, new_cfg = write_config(tmp_path, "old", zone), write_config(tmp_path, "new", zone)
    config = load_config(old_cfg)
    rng = random.Random(3)
    first = Daemon(config)
    await first._open_state()
    assert first.store is not None
    for start, end, snapshot in ((now - 6 * 3600, now - 3600, True), (now - 3600, now - 60, False)):
        for target in config.targets:
            off = phase_offset(target.id, target.interval)
            k = math.ceil((start - off) / target.interval)
            while (t := k * target.interval + off) < end:
                roll = rng.random()
                if roll < 0.05:
                    first._on_missed(target, t)
                elif roll < 0.2:
                    first._on_result(target, t, ProbeResult.failure(FailureReason.STATUS, 0.1))
                else:
                    first._on_result(target, t, ProbeResult(True, 0.05))
                k += 1
        first.live.advance(end)
        await first._flush(snapshot=snapshot)  # the last hour stays in the journal
    first.live.advance(now - 30)
    before = {k: v for k, v in _window_view(first, now).items() if k[0] == "shop"}
    assert any(v != ((0, 0), 0) for v in before.values())
    old_db = tmp_path / "old.sqlite3"
    leaves = rows(old_db, "SELECT count(*) FROM leaves")
    assert leaves > 0
    # the source is in use: refused, nothing written
    out = cli("state", "export", "-c", str(old_cfg), "--targets", "web,api",
              "-o", str(tmp_path / "moved.db"))
    assert out.returncode == 1 and "in use by another slamon process" in out.stderr
    assert not (tmp_path / "moved.db").exists()
    await first.store.close()

    out = cli("state", "export", "-c", str(old_cfg), "--targets", "web,a*",
              "-o", str(tmp_path / "moved.db"))
    assert out.returncode == 0, out.stderr
    assert "exported 2 targets, 1 SLOs, 1 SLAs" in out.stdout
    moved = tmp_path / "moved.db"
    assert rows(moved, "SELECT count(*) FROM progress WHERE target = 'db'") == 0
    # the SLO's state and its two targets' events
    assert rows(moved, "SELECT count(*) FROM snapshots") == 3
    assert rows(moved, "SELECT count(*) FROM journal") > 0
    assert rows(moved, "SELECT count(*) FROM leaves") == leaves

    for _ in range(2):  # the second import adds nothing
        out = cli("state", "import", "-c", str(new_cfg), str(moved))
        assert out.returncode == 0, out.stderr
    assert "already there" in out.stdout
    second = Daemon(load_config(new_cfg))
    await second._open_state()
    assert second.store is not None
    try:
        second.live.advance(now - 30)
        after = {k: v for k, v in _window_view(second, now).items() if k[0] == "shop"}
        assert after == before
        # every moved leaf is there; opening the store may add no-data leaves for the ticks
        # since the data ended (now - 60 s), in a bucket of their own if the wall clock
        # crossed a bucket boundary meanwhile
        settled = f"SELECT count(*) FROM leaves WHERE bucket < {int(now) - 120}"
        assert rows(tmp_path / "new.sqlite3", settled) == rows(old_db, settled) > 0
        assert rows(tmp_path / "new.sqlite3", "SELECT count(*) FROM leaves") >= leaves
    finally:
        await second.store.close()


def test_bad_arguments_name_the_problem(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "old")
    out = cli("state", "export", "-c", str(cfg), "--targets", "web", "-o",
              str(tmp_path / "x.db"))
    assert out.returncode == 1 and "no such state file" in out.stderr
    async def touch() -> None:  # the file an instance leaves behind
        store = StateStore(tmp_path / "old.sqlite3")
        await store.open()
        await store.close()

    asyncio.run(touch())
    out = cli("state", "export", "-c", str(cfg), "--targets", "nope*", "-o",
              str(tmp_path / "x.db"))
    assert out.returncode == 2 and "no target" in out.stderr
    out = cli("state", "import", "-c", str(cfg), str(tmp_path / "missing.db"))
    assert out.returncode == 1 and "missing.db: no such state file" in out.stderr
    assert "Traceback" not in out.stderr
