"""Scale-out on the shared PostgreSQL backend, end to end with real processes.

Four shards (one database) and one single instance (its own database on the
same server) probe the same loopback targets. The targets' outcomes are a
pure function of the tick a request arrives in, so every daemon sees the same
outcome for a tick. The SLA periods are fixed 1-minute periods anchored just
after start-up:

- period 0 runs with 4 shards: its closed result, Merkle root and every
  evidence leaf in the shards' database equal the single instance's;
- then a rolling reshard to 5 on the same database: the fifth shard starts
  while the four still run, and each of the four is then replaced by one
  counting 5. The targets that move are the ones rendezvous hashing gives the
  new shard (at most 30 %); they are probed by two processes until their old
  owner is replaced, and counted once: the database refuses the old owner's
  outcomes once the new one has claimed them. Period 1, across the reshard,
  is closed by the new owners from the old owners' leaves plus their own:
  every tick of every target counted once, and outside a target's own
  owner's restart every bucket equal to the single instance's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web

from slamon.app.shard import assignment
from slamon.config.loader import load_config
from slamon.scheduler import phase_offset
from tests.misbehaving import HOST, free_port, serve
from tests.pg import PgServer

REPO = Path(__file__).resolve().parent.parent
TARGETS = [f"t{i:02d}" for i in range(40)]
COMPOSITE = ("t00", "t01")  # one SLO over two targets: they move together
INTERVAL, TIMEOUT, PERIOD, RESOLUTION, GRACE = 1.0, 0.8, 60, 10, 1


def down(tid: str, tick: int) -> bool:
    return hashlib.blake2b(f"{tid}:{tick}".encode(), digest_size=2).digest()[0] < 40


class Farm:
    """`/t/{tid}`: 503 when the tick the request arrives in is down, else 200."""

    def __init__(self) -> None:
        self.offsets = {t: phase_offset(t, INTERVAL) for t in TARGETS}
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        tid = request.match_info["tid"]
        tick = math.floor((time.time() - self.offsets[tid]) / INTERVAL + 1e-9)
        return web.Response(status=503 if down(tid, tick) else 200, text="OK")

    async def __aenter__(self) -> Farm:
        app = web.Application()
        app.router.add_get("/t/{tid}", self._handle)
        self._runner, self.port = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _config(path: Path, farm_port: int, dsn: str, anchor: int, shard: tuple[int, int] | None
            ) -> tuple[Path, int]:
    port = free_port()
    slos = [f"  - {{id: s-{COMPOSITE[0]}, targets: [{', '.join(COMPOSITE)}], "
            "objective: 0.9, window: 1h}"]
    slos += [f"  - {{id: s-{t}, targets: [{t}], objective: 0.9, window: 1h}}"
             for t in TARGETS if t not in COMPOSITE]
    slas = [f"  - {{id: a-{s.split('id: s-')[1].split(',')[0]}, "
            f"slo: s-{s.split('id: s-')[1].split(',')[0]}, "
            f"period: {{kind: fixed, length: {PERIOD}s, anchor: {anchor}}}, "
            f"evidence_resolution: {RESOLUTION}s, grace: {GRACE}s}}" for s in slos]
    targets = [f"  - {{id: {t}, kind: http, interval: 1s, timeout: {TIMEOUT * 1000:g}ms, "
               f"http: {{url: \"http://{HOST}:{farm_port}/t/{t}\"}}}}" for t in TARGETS]
    text = textwrap.dedent(f"""\
        server: {{listen: "{HOST}:{port}"}}
        logging: {{level: info, format: json}}
        state: {{backend: postgres, dsn: "{dsn}", flush_interval: 200ms}}
        """)
    if shard is not None:
        text += f"shard: {{index: {shard[0]}, count: {shard[1]}}}\n"
    text += "\n".join(["targets:", *targets, "slos:", *slos, "slas:", *slas]) + "\n"
    path.write_text(text)
    return path, port


class Proc:
    def __init__(self, name: str, config: Path, port: int, log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "slamon", "run", "-c", str(config)], cwd=REPO,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    async def ready(self, session: aiohttp.ClientSession) -> None:
        for _ in range(300):
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"http://{HOST}:{self.port}/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready in 30 s")

    async def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        for _ in range(200):
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert self.proc.returncode == 0, (self.name, self.log.read_text()[-2000:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(10)


def _leaves(dsn: str) -> dict[tuple[str, str, int], tuple[int, int, int]]:
    with psycopg.connect(dsn) as conn:
        return {(str(sla), str(t), int(b)): (int(g), int(v), int(n)) for sla, t, b, g, v, n in
                conn.execute("SELECT s.sla, s.target, l.bucket, l.good, l.valid, l.no_data "
                             "FROM leaves l JOIN series s ON s.id = l.series")}


def _periods(dsn: str) -> dict[tuple[str, int], dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        return {(str(sla), int(n)): {**json.loads(r), "root": bytes(root).hex()}
                for sla, n, r, root in conn.execute(
                    "SELECT sla, period, result, root FROM periods")}


def _sla_targets() -> dict[str, tuple[str, ...]]:
    out = {f"a-{COMPOSITE[0]}": COMPOSITE}
    out.update({f"a-{t}": (t,) for t in TARGETS if t not in COMPOSITE})
    return out


@pytest.mark.timeout(240)
async def test_four_shards_equal_one_instance_and_a_reshard_loses_nothing(
    pg_server: PgServer, tmp_path: Path
) -> None:
    shared, single_db = pg_server.create_database(), pg_server.create_database()
    procs: list[Proc] = []
    async with Farm() as farm, aiohttp.ClientSession() as session:
        # period 0 starts once everything is surely up; period 1 holds the reshard
        anchor = math.ceil((time.time() + 12) / RESOLUTION) * RESOLUTION

        def start(name: str, dsn: str, shard: tuple[int, int] | None) -> Proc:
            cfg, port = _config(tmp_path / f"{name}.yaml", farm.port, dsn, anchor, shard)
            proc = Proc(name, cfg, port, tmp_path / f"{name}.log")
            procs.append(proc)
            return proc

        try:
            single = start("single", single_db, None)
            four = [start(f"four-{i}", shared, (i, 4)) for i in range(4)]
            await asyncio.gather(*(p.ready(session) for p in [single, *four]))
            assert time.time() < anchor, "start-up took longer than the margin"
            # period 0 closes once its grace (widened by the parts' timing) has passed and
            # is written at the next flush: wait for every SLA's row, within period 1's
            # first quarter (the reshard must fall inside period 1)
            await asyncio.sleep(anchor + PERIOD + GRACE - time.time())
            sla_ids = _sla_targets()
            before = _periods(shared)
            while (any((sla, 0) not in before for sla in sla_ids)
                   and time.time() < anchor + PERIOD + PERIOD / 4):
                await asyncio.sleep(0.2)
                before = _periods(shared)
            # a rolling reshard, as a StatefulSet scaled from 4 to 5 does it: the new
            # shard starts while the old four still run (the targets it takes are probed
            # twice meanwhile), then each old shard is replaced by one counting 5
            five4 = start("five-4", shared, (4, 5))
            windows = {4: (time.time(), 0.0)}
            await five4.ready(session)
            windows[4] = (windows[4][0], time.time() + 1.5)  # its first ticks after /readyz
            for i in range(4):
                w0 = time.time()
                await four[i].stop()
                await start(f"five-{i}", shared, (i, 5)).ready(session)
                windows[i] = (w0, time.time() + 1.5)
            await asyncio.sleep(anchor + 2 * PERIOD + GRACE + 3 - time.time())
            await asyncio.gather(*(p.stop() for p in procs if p.proc.poll() is None))
        finally:
            for p in procs:
                p.kill()

    config = load_config(tmp_path / "single.yaml")
    old, new = assignment(config, 4), assignment(config, 5)
    moved = {t for t in TARGETS if old[t] != new[t]}
    assert moved and len(moved) <= 0.3 * len(TARGETS), sorted(moved)
    assert all(new[t] == 4 for t in moved), "only the new shard takes targets"
    assert (COMPOSITE[0] in moved) == (COMPOSITE[1] in moved)

    sla_targets = _sla_targets()
    p_shared, p_single = _periods(shared), _periods(single_db)
    l_shared, l_single = _leaves(shared), _leaves(single_db)
    # period 0, all under 4 shards: the union equals the single instance, root and all
    for sla in sla_targets:
        assert (sla, 0) in before and p_shared[(sla, 0)] == p_single[(sla, 0)], sla
    # the same periods closed (the primary key keeps each once), 0 and 1 of every SLA
    assert set(p_shared) == set(p_single)
    assert {(s, n) for s in sla_targets for n in (0, 1)} <= set(p_shared)

    start1 = anchor + PERIOD
    exact = relaxed = 0
    for sla, tids in sla_targets.items():
        for tid in tids:
            off = farm.offsets[tid]
            for b in range(start1, start1 + PERIOD, RESOLUTION):
                ticks = range(math.ceil(b - off), math.ceil(b + RESOLUTION - off))
                s = l_shared.get((sla, tid, b), (0, 0, 0))
                r = l_single.get((sla, tid, b), (0, 0, 0))
                where = (sla, tid, b, "shards", s, "single", r, tid in moved)
                # every tick accounted once, in both, the moved targets included
                assert s[1] + s[2] == r[1] + r[2] == len(ticks), where
                assert r == (sum(not down(tid, k) for k in ticks), len(ticks), 0), where
                # a target is down only while its own new owner starts: a moved one is
                # exact from the new shard's start on, though its old owner still probes it
                w0, w1 = windows[new[tid]]
                if w0 - 2 < b + RESOLUTION and b < w1:
                    assert s[0] <= r[0], where  # the reshard costs only no-data ticks
                    relaxed += 1
                else:
                    assert s == r, where
                    exact += 1
        if len(tids) == 1:
            # the new owner closed period 1 from the old owner's leaves and its own
            p = p_shared[(sla, 1)]
            sums = [sum(l_shared.get((sla, tid, b), (0, 0, 0))[i]
                        for b in range(start1, start1 + PERIOD, RESOLUTION)) for i in range(3)]
            assert [p["good"], p["valid"], p["no_data"]] == sums, (sla, p, sums)
    assert exact > 0 and relaxed > 0
