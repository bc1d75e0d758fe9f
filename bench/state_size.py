"""Size of the SQLite state file after a simulated 90 days, and write throughput.

Drives the real `StateStore` + `SlaTracker` (and a `LiveState` for realistic
window snapshots) with synthetic probe outcomes on simulated time; no sockets.

Config: N HTTP targets at 30 s, one single-target availability SLO each
(objective 0.999, window 30d), and one monthly UTC SLA per SLO (default
evidence resolution: 1 h). One SLA per target is the worst case for the file:
leaves are kept per (SLA, target), so 100 composite SLAs of 10 targets each
would store exactly as many leaves as 1,000 single-target SLAs.

Two phases:

1. full path, `--full-hours` simulated hours: every tick goes through
   `SlaTracker.record`, `StateStore.note_outcome` and `LiveState.record`, as in
   the daemon; a flush every simulated second (the default
   `state.flush_interval`) and a window snapshot every simulated minute
   (`state.snapshot_interval`). This gives the sustained write throughput.
2. fast-forward to `--days`: per simulated hour, each target's 120 outcomes go
   in as one aggregated leaf (the same row the full path would have built by
   120 upserts), progress advances, one flush per hour, a snapshot per day,
   `close_due(now)` every hour (monthly periods close with their real grace).

With `--retention-days D` the run also prunes, once per simulated day, the
leaves of closed periods older than D days (what the daemon would do with
`state.evidence_retention`; it does not call `prune_leaves` yet).

    python bench/state_size.py                       # 1,000 targets, 90 days
    python bench/state_size.py --retention-days 35   # with daily pruning
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from slamon.config.loader import parse_config
from slamon.probers.base import FailureReason, ProbeResult
from slamon.scheduler import phase_offset
from slamon.sla.tracker import SlaTracker
from slamon.sli.live import LiveState
from slamon.store.sqlite import StateStore
from slamon.util.log import configure_logging, get_logger

INTERVAL = 30
T0 = 1767225600  # 2026-01-01T00:00:00Z


def config_text(n: int, path: Path) -> str:
    lines = ['server: {listen: "127.0.0.1:0"}',
             f'state: {{path: "{path}"}}', "targets:"]
    for i in range(n):
        lines.append(f'  - {{id: t{i}, kind: http, interval: 30s, timeout: 10s, '
                     f'http: {{url: "http://127.0.0.1:9/t/{i}"}}}}')
    lines.append("slos:")
    lines += [f"  - {{id: s{i}, targets: [t{i}], objective: 0.999, window: 30d}}"
              for i in range(n)]
    lines.append("slas:")
    lines += [f"  - {{id: a{i}, slo: s{i}, period: {{kind: monthly}}}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def table_sizes(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    out = {str(name): int(size) for name, size in rows}
    out["(free pages)"] = int(free) * int(page)
    return out


async def run(args: argparse.Namespace) -> None:
    configure_logging("warning")
    tmp = Path(args.dir or tempfile.mkdtemp(prefix="slamon-state-bench-"))
    path = tmp / "slamon.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    config = parse_config(config_text(args.targets, path))
    targets = sorted(config.targets, key=lambda t: phase_offset(t.id, INTERVAL))
    offsets = [phase_offset(t.id, INTERVAL) for t in targets]
    rng = random.Random(1)
    store = StateStore(path)
    await store.open()
    live = LiveState(config)
    tracker = SlaTracker(config, store, get_logger(), flush_interval=1.0)
    await tracker.start({}, T0)

    async def snapshots() -> dict[str, tuple[str, bytes]]:
        # the store calls it when it takes the batch (the daemon serialises off the loop)
        return {key: (shape, serialise()) for key, shape, serialise in live.snapshot_sources()}

    ok_result = ProbeResult(True, 0.05)
    bad_result = ProbeResult.failure(FailureReason.STATUS, 0.05)
    flush_time = snap_time = 0.0
    flushes = snaps = 0
    snap_bytes = 0

    # -- phase 1: the daemon's own per-tick path --------------------------
    full_end = T0 + int(args.full_hours * 3600)
    t_wall = time.perf_counter()
    next_flush, next_snap = T0 + 1.0, T0 + 60.0
    outcomes = 0
    cycle = T0
    while cycle < full_end:
        for target, off in zip(targets, offsets, strict=True):
            t = cycle + off
            while t >= next_flush:
                snap = t >= next_snap
                started = time.perf_counter()
                await store.flush(snapshots if snap else None)
                elapsed = time.perf_counter() - started
                flush_time += elapsed
                flushes += 1
                if snap:
                    snap_time += elapsed
                    snaps += 1
                    next_snap += 60.0
                next_flush += 1.0
            ok = rng.random() >= 0.001
            live.record(target, t, ok_result if ok else bad_result)
            tracker.record(target, t, ok, 0.05)
            store.note_outcome(target.id, t, ok, 0.05)
            outcomes += 1
        cycle += INTERVAL
        if cycle % 3600 == 0:
            live.advance(cycle)
            await tracker.close_due(cycle)
    await store.flush(snapshots)
    full_wall = time.perf_counter() - t_wall
    snap_bytes = sum(len(d) for _, d in (await snapshots()).values())
    print(f"phase 1: {args.full_hours} h simulated, {outcomes:,} outcomes in {full_wall:.1f} s "
          f"wall ({outcomes / full_wall:,.0f} outcomes/s through record+note+live+flush); "
          f"{flushes:,} flushes took {flush_time:.1f} s "
          f"({outcomes / max(flush_time, 1e-9):,.0f} outcomes/s of store writes, "
          f"{flush_time / max(flushes, 1) * 1000:.2f} ms per flush incl. snapshots); "
          f"{snaps} snapshots, {snap_time / max(snaps, 1) * 1000:.0f} ms each, "
          f"{snap_bytes / 1024:.0f} KiB of window data", flush=True)
    print(f"  size after phase 1: {mib(store.size_bytes())}", flush=True)

    # -- phase 2: fast-forward by hour -------------------------------------
    end = T0 + int(args.days * 86400)
    hour = full_end - full_end % 3600
    per_hour = 3600 // INTERVAL
    t_wall = time.perf_counter()
    pruned = 0
    ff_flush = 0.0
    sizes: list[tuple[int, int]] = []
    while hour < end:
        for target, off in zip(targets, offsets, strict=True):
            bad = 1 if rng.random() < 0.1 else 0
            for rt in tracker._by_target.get(target.id, ()):
                if hour >= rt.open_from:
                    store.add_leaf(rt.sla.id, target.id, hour, per_hour - bad, per_hour, 0)
            store.batch.progress[target.id] = hour + 3600 - INTERVAL + off
        hour += 3600
        started = time.perf_counter()
        day_end = hour % 86400 == 0
        await store.flush(snapshots if day_end else None)
        ff_flush += time.perf_counter() - started
        await tracker.close_due(hour)
        if day_end:
            if args.retention_days is not None:
                cutoff = hour - int(args.retention_days * 86400)
                for rt in tracker.slas.values():
                    # only leaves of closed periods may go
                    pruned += await store.prune_leaves(rt.sla.id, min(cutoff, rt.open_from))
            sizes.append(((hour - T0) // 86400, store.size_bytes()))
    ff_wall = time.perf_counter() - t_wall
    closed = sum(tracker.closed_total.values())
    print(f"phase 2: to day {args.days} in {ff_wall:.1f} s ({ff_flush:.1f} s in flushes); "
          f"{closed} periods closed; {pruned:,} leaves pruned", flush=True)
    for day, size in sizes:
        if day % 10 == 0 or day == sizes[-1][0]:
            print(f"  day {day:3d}: {mib(size)} (file + WAL)")
    integrity = await store.integrity_check()
    await store.close()
    size = os.path.getsize(path)
    print(f"after {args.days} days: state file {mib(size)} ({size:,} bytes) after the "
          f"closing checkpoint; integrity_check: {integrity}")
    for name, nbytes in sorted(table_sizes(path).items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {name:32s} {mib(nbytes)}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    leaves = conn.execute("SELECT count(*) FROM leaves").fetchone()[0]
    periods = conn.execute("SELECT count(*) FROM periods").fetchone()[0]
    conn.close()
    print(f"  {leaves:,} leaves, {periods:,} closed periods; {size / max(leaves, 1):.1f} bytes "
          f"per leaf overall")
    if not args.dir:
        print(f"(file kept in {tmp})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", type=int, default=1000)
    p.add_argument("--days", type=float, default=90)
    p.add_argument("--full-hours", type=float, default=2.0,
                   help="simulated hours through the full per-tick path")
    p.add_argument("--retention-days", type=float, default=None,
                   help="prune leaves of closed periods older than this, daily")
    p.add_argument("--dir", help="directory for the state file (default: a new temp dir)")
    args = p.parse_args()
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
