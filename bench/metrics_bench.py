"""In-process cost of slamon's state and of one /metrics exposition, per target.

No sockets: builds the same config probe_bench.py generates (N HTTP targets,
one availability SLO each), a LiveState fed with ``--rounds`` probe results
per target, and the daemon's registry; then

- memory: tracemalloc bytes after config parsing, after LiveState, after the
  results (the ProbeResult kept per target), per target;
- exposition: wall and CPU time and size of ``generate_latest``, median of
  ``--repeat``; optionally a cProfile of one exposition (``--profile``);
- gzip: CPU to gzip one exposition as GET /metrics sends it (pieces of
  ``PIECE`` bytes) with ISA-L's packer and with zlib's, alternated, median of
  ``--repeat`` each, and the bytes each gives;
- with ``--rss``: instead of tracemalloc (which does not see fragmentation), the
  process's VmRSS after each step and its peak (VmHWM), including one exposition
  by ``slamon.metrics.exposition.render`` (what GET /metrics runs, in slices).
  Run one N per process for meaningful figures.

    python bench/metrics_bench.py --targets 1000 10000
    python bench/metrics_bench.py --targets 10000 --rss
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import math
import pstats
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from slamon.app.runtime import settle_heap
from slamon.config.loader import parse_config
from slamon.metrics.collector import SlamonCollector, make_registry
from slamon.metrics.exposition import PIECE, gzip_packer, render
from slamon.probers.base import ProbeResult
from slamon.scheduler import SchedulerStats
from slamon.sli.live import LiveState


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


#: durations as a clock's differences give them: 16-17 significant digits, whose text
#: takes a float's repr about twice as long as a short decimal's (0.0007)
_DURATIONS = random.Random(18)


def result(ok: bool) -> ProbeResult:
    uniform = _DURATIONS.uniform
    phases = {"connect": uniform(1e-4, 3e-4), "processing": uniform(2e-4, 6e-4),
              "transfer": uniform(5e-6, 2e-5)}
    return ProbeResult(
        ok=ok,
        duration=sum(phases.values()) + uniform(1e-5, 5e-5),
        status_code=200,
        phases=phases,
        http_version="1.1",
        body_bytes=3,
    )


def vm(key: str = "VmRSS") -> int:
    """VmRSS or VmHWM of this process, in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def measure_rss(n: int, rounds: int) -> dict[str, Any]:
    """RSS after each step, as the daemon builds its state (no tracemalloc)."""
    out: dict[str, Any] = {"targets": n, "rss_start": vm()}
    text = config_text(n)
    t0 = time.perf_counter()
    config = parse_config(text)
    out["parse_seconds"] = time.perf_counter() - t0
    del text
    gc.collect()
    out["rss_config"] = vm()
    out["hwm_config"] = vm("VmHWM")
    live = LiveState(config)
    gc.collect()
    out["rss_live"] = vm()
    now = time.time()
    for r in range(rounds):
        t = now - (rounds - r) * 10.0
        for target in config.targets:
            live.record(target, t, result(True))
    gc.collect()
    out["rss_results"] = vm()
    stats = SchedulerStats()
    collector = SlamonCollector(lambda: live, lambda: stats)
    registry = make_registry(collector)
    c0, w0 = time.process_time(), time.perf_counter()
    body = asyncio.run(render(registry, collector))
    out["render_seconds"] = time.perf_counter() - w0
    out["render_cpu_seconds"] = time.process_time() - c0
    out["render_bytes"] = len(body)
    del body
    gc.collect()
    out["rss_after_render"] = vm()
    out["hwm"] = vm("VmHWM")
    return out


class _Ready:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


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

    settle_heap()  # as the daemon does once started: long-lived state out of the GC's walks
    stats = SchedulerStats()
    clock = [now]
    collector = SlamonCollector(lambda: live, lambda: stats, clock=lambda: clock[0])
    registry = make_registry(collector)

    def steady() -> None:
        """15 s later (a Prometheus scrape interval), with each 10 s target's new results."""
        before = clock[0]
        clock[0] += 15.0
        for k in range(math.floor(before / 10.0) + 1, math.floor(clock[0] / 10.0) + 1):
            for target in config.targets:
                live.record(target, k * 10.0, result(True))

    def timed(render_once: Callable[[], bytes]) -> tuple[float, float, int]:
        walls: list[float] = []
        cpus: list[float] = []
        size = 0
        for _ in range(repeat):
            steady()
            c0, w0 = time.process_time(), time.perf_counter()
            body = render_once()
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
            size = len(body)
        return statistics.median(walls), statistics.median(cpus), size

    # what GET /metrics runs, after the state moved on by one scrape interval; the
    # peer: prometheus_client formatting the same samples from ready-made families
    # (what an exporter keeping Gauge children pays at scrape time, without the
    # SLI arithmetic), timed in the same run
    wall, cpu, size = timed(lambda: asyncio.run(render(registry, collector)))
    peer = CollectorRegistry(auto_describe=False)
    peer.register(_Ready(list(text_string_to_metric_families(
        asyncio.run(render(registry, collector)).decode()))))
    _, peer_cpu, _ = timed(lambda: generate_latest(peer))
    # the same state with `metrics.window_series` on (16 more lines per SLO), same run
    full = SlamonCollector(lambda: live, lambda: stats, clock=lambda: clock[0],
                           window_series=lambda: True)
    full_registry = make_registry(full)
    _, series_cpu, series_size = timed(lambda: asyncio.run(render(full_registry, full)))
    # gzip as GET /metrics does it, ISA-L's packer against zlib's, alternated in one run
    text = asyncio.run(render(registry, collector))
    pieces = [memoryview(text)[i : i + PIECE] for i in range(0, len(text), PIECE)]
    gzip_cpu: dict[bool, list[float]] = {True: [], False: []}
    gzip_bytes: dict[bool, int] = {}
    for _ in range(repeat):
        for fast in (True, False):
            c0 = time.process_time()
            packer = gzip_packer(fast)
            stream = b"".join([*(packer.compress(p) for p in pieces), packer.flush()])
            gzip_cpu[fast].append(time.process_time() - c0)
            gzip_bytes[fast] = len(stream)
    top = ""
    if profile:
        prof = cProfile.Profile()
        steady()
        prof.enable()
        asyncio.run(render(registry, collector))
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
        "metrics_seconds": wall,
        "metrics_cpu_seconds": cpu,
        "peer_cpu_seconds": peer_cpu,
        "metrics_bytes": size,
        "metrics_bytes_per_target": size / n,
        "window_series_cpu_seconds": series_cpu,
        "window_series_bytes_per_target": series_size / n,
        "gzip_cpu_seconds": statistics.median(gzip_cpu[True]),
        "gzip_bytes": gzip_bytes[True],
        "gzip_zlib_cpu_seconds": statistics.median(gzip_cpu[False]),
        "gzip_zlib_bytes": gzip_bytes[False],
        "profile": top,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="slamon state and /metrics cost per target")
    ap.add_argument("--targets", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--rounds", type=int, default=3, help="results recorded per target")
    ap.add_argument("--repeat", type=int, default=3, help="expositions timed")
    ap.add_argument("--profile", action="store_true", help="cProfile one exposition")
    ap.add_argument("--rss", action="store_true", help="VmRSS per step instead of tracemalloc")
    args = ap.parse_args()
    if args.rss:
        for n in args.targets:
            r = measure_rss(n, args.rounds)
            mb = {k: v / 1e6 for k, v in r.items() if k.startswith(("rss", "hwm"))}
            print(
                f"N={n}: RSS MB: start {mb['rss_start']:.0f}, config {mb['rss_config']:.0f}"
                f" (parse {r['parse_seconds']:.2f}s, peak {mb['hwm_config']:.0f}), live state"
                f" {mb['rss_live']:.0f}, + results {mb['rss_results']:.0f}, after one /metrics"
                f" render {mb['rss_after_render']:.0f} (peak {mb['hwm']:.0f}; render"
                f" {r['render_seconds']:.2f}s, {r['render_bytes'] / 1e6:.1f} MB)",
                flush=True,
            )
        return
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
            f"{r['metrics_bytes'] / 1e6:.1f} MB ({r['metrics_bytes_per_target']:.0f} B/target);"
            f" prometheus_client formatting the same samples {r['peer_cpu_seconds']:.3f}s CPU"
            f" (ratio {r['metrics_cpu_seconds'] / r['peer_cpu_seconds']:.2f}); with"
            f" window_series {r['window_series_cpu_seconds']:.3f}s CPU,"
            f" {r['window_series_bytes_per_target']:.0f} B/target; gzip"
            f" {r['gzip_cpu_seconds'] * 1e3:.1f} ms CPU, {r['gzip_bytes'] / 1e6:.2f} MB, zlib's"
            f" {r['gzip_zlib_cpu_seconds'] * 1e3:.1f} ms, {r['gzip_zlib_bytes'] / 1e6:.2f} MB"
            f" (ratio {r['gzip_cpu_seconds'] / r['gzip_zlib_cpu_seconds']:.2f})",
            flush=True,
        )
        if prof:
            print(prof)


if __name__ == "__main__":
    main()
