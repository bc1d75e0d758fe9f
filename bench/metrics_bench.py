"""In-process cost of slamon's state and of one /metrics exposition, per target.

No sockets: builds the same config probe_bench.py generates (N HTTP targets,
one availability SLO each), a LiveState fed with ``--rounds`` probe results
per target, and the daemon's registry; then

- memory: tracemalloc bytes after config parsing, after LiveState, after the
  results (the ProbeResult kept per target), per target;
- exposition: wall and CPU time and size of ``generate_latest`` (what
  GET /metrics runs on the event loop), median of ``--repeat``; optionally a
  cProfile of one exposition (``--profile``).

    python bench/metrics_bench.py --targets 1000 10000
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import time
import tracemalloc
from typing import Any

from prometheus_client import generate_latest

from slamon.config.loader import parse_config
from slamon.live import LiveState
from slamon.metrics import SlamonCollector, make_registry
from slamon.probers.base import ProbeResult
from slamon.scheduler import SchedulerStats


def config_text(n: int, ports: int = 20) -> str:
    lines = ['server: {listen: "127.0.0.1:0"}', "targets:"]
    for i in range(n):
        url = f"http://127.0.0.1:{20000 + i % ports}/t/{i}"
        lines.append(
            f'  - {{id: t{i}, kind: http, interval: 10s, timeout: 5s, http: {{url: "{url}"}}}}'
        )
    lines.append("slos:")
    lines += [f"  - {{id: s{i}, targets: [t{i}], objective: 0.999, window: 30d}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def result(ok: bool) -> ProbeResult:
    phases = {"connect": 0.0002, "processing": 0.0004, "transfer": 0.00001}
    return ProbeResult(
        ok=ok,
        duration=0.0007,
        status_code=200,
        phases=phases,
        http_version="1.1",
        body_bytes=3,
    )


def measure(n: int, rounds: int, repeat: int, profile: bool) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    config = parse_config(config_text(n))
    t_parse = time.perf_counter() - t0
    parse_peak = tracemalloc.get_traced_memory()[1]
    gc.collect()
    after_config = tracemalloc.get_traced_memory()[0]
    live = LiveState(config)
    gc.collect()
    after_live = tracemalloc.get_traced_memory()[0]
    now = time.time()
    t0 = time.perf_counter()
    for r in range(rounds):
        t = now - (rounds - r) * 10.0
        for target in config.targets:
            live.record(target, t, result(True))
    t_record = (time.perf_counter() - t0) / max(1, rounds * n)
    gc.collect()
    after_results = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    stats = SchedulerStats()
    collector = SlamonCollector(lambda: live, lambda: stats)
    registry = make_registry(collector)
    walls: list[float] = []
    cpus: list[float] = []
    size = 0
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        body = generate_latest(registry)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        size = len(body)
    top = ""
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        generate_latest(registry)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
        top = buf.getvalue()
    return {
        "targets": n,
        "parse_seconds": t_parse,
        "parse_peak_bytes": parse_peak - base,
        "config_bytes_per_target": (after_config - base) / n,
        "live_bytes_per_target": (after_live - after_config) / n,
        "results_bytes_per_target": (after_results - after_live) / n,
        "window_bytes_per_target": live.window_bytes() / n,
        "record_us": t_record * 1e6,
        "metrics_seconds": statistics.median(walls),
        "metrics_cpu_seconds": statistics.median(cpus),
        "metrics_bytes": size,
        "metrics_bytes_per_target": size / n,
        "profile": top,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="slamon state and /metrics cost per target")
    ap.add_argument("--targets", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--rounds", type=int, default=3, help="results recorded per target")
    ap.add_argument("--repeat", type=int, default=3, help="expositions timed")
    ap.add_argument("--profile", action="store_true", help="cProfile one exposition")
    args = ap.parse_args()
    for n in args.targets:
        r = measure(n, args.rounds, args.repeat, args.profile)
        prof = r.pop("profile")
        print(
            f"N={n}: parse {r['parse_seconds']:.2f}s (peak {r['parse_peak_bytes'] / 1e6:.0f} MB);"
            f" bytes/target: config "
            f"{r['config_bytes_per_target']:.0f}, live {r['live_bytes_per_target']:.0f} "
            f"(window arrays {r['window_bytes_per_target']:.0f}), last results "
            f"{r['results_bytes_per_target']:.0f}; record {r['record_us']:.1f} us; /metrics "
            f"{r['metrics_seconds']:.3f}s wall, {r['metrics_cpu_seconds']:.3f}s CPU, "
            f"{r['metrics_bytes'] / 1e6:.1f} MB ({r['metrics_bytes_per_target']:.0f} B/target)",
            flush=True,
        )
        if prof:
            print(prof)


if __name__ == "__main__":
    main()
