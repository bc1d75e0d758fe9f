"""Memory and snapshot size of the SLO windows per target, for any slamon source tree.

Builds a LiveState for N HTTP targets at 30 s (``--interval``) with one availability
SLO each (and, with --latency-slo, one latency SLO each too), feeds it simulated
outcomes, and
prints the bytes allocated by the windows (tracemalloc, after the feed), the
counter bytes the state reports, and the size of its snapshots (what the state
file keeps of them). Run it on two trees to compare, e.g. a worktree of an older
commit with `--src /tmp/old`: same outcomes, same seed.

    python bench/events_memory.py --targets 1000 --hours 24
    python bench/events_memory.py --targets 1000 --hours 24 --src /tmp/old
    python bench/events_memory.py --targets 10000 --hours 24 --measure restore

`--scrape` asks every SLO's windows once more after the feed (or the restore), as a
Prometheus scrape of `/metrics` does, before tracemalloc is read: what a running daemon
holds once it is scraped, with the answers it keeps for the windows asked.

`--measure restore` feeds without tracing and measures the state a restart builds from
the fed state's snapshots instead (tracemalloc slows every allocation of the feed:
10,000 targets for 24 h did not finish in 15 minutes traced). It is what a daemon holds
after a restart on that history; the report prints both where both are measured.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
def config_text(n: int, latency_slo: bool, bounds: str | None, interval: int) -> str:
    lines = [f"state: {{latency_bounds: [{bounds}]}}"] if bounds is not None else []
    lines.append("targets:")
    lines += [f'  - {{id: t{i}, kind: http, interval: {interval}s, timeout: 5s, '
              f'http: {{url: "http://127.0.0.1:9/{i}"}}}}' for i in range(n)]
    lines.append("slos:")
    lines += [f"  - {{id: s{i}, targets: [t{i}], objective: 0.999}}" for i in range(n)]
    if latency_slo:
        lines += [f"  - {{id: l{i}, targets: [t{i}], objective: 0.99, sli: latency, "
                  f"latency_threshold: 300ms}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def snapshots(live: Any) -> dict[str, bytes]:
    sources = getattr(live, "snapshot_sources", None)
    if sources is not None:  # events per target
        return {key: serialise() for key, _, serialise in sources()}
    return {sid: s.to_bytes() for sid, s in live.slos.items()}  # windows per SLO


def scrape(live: Any, now: float) -> None:
    """Every SLO's counts over its own window and every alert window, as `/metrics` asks."""
    for state in live.slos.values():
        for length in state.slo.windows:
            state.counts(now, length)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=24.0, help="simulated time fed")
    ap.add_argument("--interval", type=int, default=30, help="probe interval, s")
    ap.add_argument("--latency", choices=["one-cell", "spread"], default="one-cell",
                    help="one-cell: every probe 40-60 ms; spread: 60-400 ms, over 3 cells")
    ap.add_argument("--latency-slo", action="store_true", help="a 300 ms latency SLO too")
    ap.add_argument("--bounds", help="state.latency_bounds, e.g. '' or '250ms, 1s' "
                    "(trees with per-target events only)")
    ap.add_argument("--src", type=Path, default=HERE.parent, help="slamon source tree")
    ap.add_argument("--measure", choices=["feed", "restore", "both"], default="feed",
                    help="what tracemalloc sees: the fed state, the state restored from its "
                    "snapshots, or both")
    ap.add_argument("--scrape", action="store_true",
                    help="ask every SLO's windows (as a scrape does) before measuring")
    args = ap.parse_args()
    sys.path.insert(0, str(args.src))
    from slamon.config.loader import parse_config
    from slamon.probers.base import FailureReason, ProbeResult
    from slamon.sli.live import LiveState

    config = parse_config(config_text(args.targets, args.latency_slo, args.bounds,
                                      args.interval))
    rng = random.Random(1)
    gc.collect()
    traced_feed = args.measure in ("feed", "both")
    if traced_feed:
        tracemalloc.start()
    live = LiveState(config)
    targets = list(config.targets)
    t0 = 1_767_225_600.0  # 2026-01-01T00:00Z
    end = t0 + args.hours * 3600
    started = time.perf_counter()
    fed = 0
    t = t0
    while t < end:
        for i, target in enumerate(targets):
            low, high = (0.04, 0.06) if args.latency == "one-cell" else (0.06, 0.4)
            duration = rng.uniform(low, high)
            if rng.random() < 0.001:
                result = ProbeResult.failure(FailureReason.STATUS, duration)
            else:
                result = ProbeResult(True, duration)
            live.record(target, t + i % args.interval, result)
            fed += 1
        t += args.interval
    live.advance(end)
    if args.scrape:
        scrape(live, end)
    elapsed = time.perf_counter() - started
    gc.collect()
    allocated = tracemalloc.get_traced_memory()[0] if traced_feed else None
    tracemalloc.stop()
    snaps = snapshots(live)
    snap_bytes = sum(len(v) for v in snaps.values())
    counters = live.window_bytes()
    restored = None
    if args.measure in ("restore", "both"):
        sources = getattr(live, "snapshot_sources", None)
        rows = ({key: (shape, snaps[key]) for key, shape, _ in sources()}
                if sources is not None else {})
        del live
        gc.collect()
        tracemalloc.start()
        again = LiveState(config)
        if sources is not None:
            problems = again.restore(rows)
        else:  # windows per SLO (trees before the per-target events)
            for sid, data in snaps.items():
                again.slos[sid].restore(data)
            problems = []
        again.advance(end)
        if args.scrape:
            scrape(again, end)
        gc.collect()
        restored = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert not problems, problems[:3]
    n = args.targets
    print(f"src {args.src}: {n:,} targets at {args.interval} s, {fed:,} outcomes over "
          f"{args.hours:g} h "
          f"({args.latency}{', latency SLO' if args.latency_slo else ''}"
          f"{'' if args.bounds is None else f', bounds [{args.bounds}]'}"
          f"{', scraped' if args.scrape else ''}) in {elapsed:.1f} s")
    if allocated is not None:
        print(f"  allocated after the feed (config excluded): {allocated / n:,.0f} B per target")
    if restored is not None:
        print(f"  allocated by a restore of its snapshots (config excluded): "
              f"{restored / n:,.0f} B per target")
    print(f"  counter bytes (window_bytes): {counters / n:,.0f} B per target")
    print(f"  snapshots: {len(snaps):,} rows, {snap_bytes / n:,.0f} B per target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
