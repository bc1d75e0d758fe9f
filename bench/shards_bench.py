"""Several slamon shards on one host, as the `slamon@.service` template runs them.

For N targets and K shards: an nginx farm on 127.0.0.1 (bench/farm.py) serves the
targets; K slamon processes get the same config (N HTTP targets at ``--interval``, one
availability SLO per target) with ``shard: {index: i, count: K}``, so each probes its
own share; one Prometheus scrapes all K every ``--prometheus`` seconds through the whole
run. After every shard is ready and a warm-up, each shard's /metrics is read, the
processes are left alone for ``--duration`` seconds, and /metrics is read again.

``--backend postgres`` gives every shard the same PostgreSQL database (a server started
as the tests start theirs, tests/pg.py) and adds its CPU (the whole server process
tree), WAL bytes and database growth per 1,000 probes; ``--slas`` adds a monthly SLA
per target, so every outcome is also written as an evidence leaf.

Prints, per shard and in sum: probes started and missed, CPU (utime+stime from /proc)
per 1,000 probes and as a fraction of one core, scheduling lag p50/p99/max, peak RSS
(VmHWM), and the Prometheus's CPU. ``--shards 1`` is the one-process row to compare.

    python bench/shards_bench.py --targets 20000 --shards 2 --duration 60

Every wait is bounded; traffic goes to 127.0.0.1 only; every child is killed (process
group) on exit, even on error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # tests.pg starts the PostgreSQL server

from farm import free_ports, nginx_farm  # noqa: E402
from probe_bench import (  # noqa: E402
    CLK_TCK,
    _summarise,
    child,
    proc_cpu,
    proc_status,
    scrape,
    system_cpu,
    wait_ready,
    write_config,
)


def tree_cpu(root: int) -> float:
    """CPU seconds of a process tree: every live process's own and reaped children's
    time (utime + stime + cutime + cstime), so a backend that exited is still counted
    (in its parent's cutime) and nothing twice."""
    parent: dict[int, int] = {}
    times: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = (d / "stat").read_text()
            f = raw[raw.rindex(")") + 2:].split()
            parent[int(d.name)] = int(f[1])
            times[int(d.name)] = sum(int(x) for x in f[11:15]) / CLK_TCK
    keep = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in keep and pid not in keep:
                keep.add(pid)
                grew = True
    return sum(times.get(pid, 0.0) for pid in keep)


def pg_counters(dsn: str) -> tuple[int, int]:
    """(WAL bytes written since the server started, this database's size in bytes)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, "
                           "pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    n, k = args.targets, args.shards
    ports = free_ports(k + 1)
    with contextlib.ExitStack() as stack:
        pg = None
        if args.backend == "postgres":
            from tests.pg import start_server

            pg = start_server()
            stack.callback(pg.stop)
            args.pg_dsn = pg.create_database()
        farm = stack.enter_context(nginx_farm(args.ports, args.nginx_workers))
        urls = farm.urls(n)
        procs: list[subprocess.Popen[bytes]] = []
        for i in range(k):
            cfg = work / f"slamon-{i}.yaml"
            write_config(cfg, urls, ports[i], args)
            with cfg.open("a") as f:
                f.write(f"shard: {{index: {i}, count: {k}}}\n")
            argv = [sys.executable, "-m", "slamon", "run", "-c", str(cfg)]
            procs.append(stack.enter_context(child(argv, work / f"slamon-{i}.log", cwd=work)))
        targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports[:k])
        (work / "prometheus.yml").write_text(
            f"global: {{scrape_interval: {args.prometheus:g}s, scrape_timeout: 10s}}\n"
            "scrape_configs:\n"
            f"  - {{job_name: slamon, static_configs: [{{targets: [{targets}]}}]}}\n"
        )
        prom = stack.enter_context(child(
            ["/usr/bin/prometheus", f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{ports[k]}", "--log.level=warn"],
            work / "prometheus.log"))
        ready = [wait_ready(ports[i], procs[i], args.ready_timeout) for i in range(k)]
        time.sleep(args.warmup if args.warmup is not None else args.interval)
        s0 = [scrape(ports[i]) for i in range(k)]
        c0 = [proc_cpu(p.pid) for p in procs]
        pg0 = (tree_cpu(pg.proc.pid), *pg_counters(args.pg_dsn)) if pg else None
        pr0, sys0, t0 = proc_cpu(prom.pid), system_cpu(), time.monotonic()
        time.sleep(args.duration)
        c1 = [proc_cpu(p.pid) for p in procs]
        pr1, sys1, t1 = proc_cpu(prom.pid), system_cpu(), time.monotonic()
        pg1 = (tree_cpu(pg.proc.pid), *pg_counters(args.pg_dsn)) if pg else None
        s1 = [scrape(ports[i]) for i in range(k)]
        shards = []
        for i in range(k):
            share = _summarise(s0[i], s1[i], c1[i] - c0[i], t1 - t0, n, args)
            share["ready_seconds"] = ready[i]
            share["rss_hwm_bytes"] = proc_status(procs[i].pid)["VmHWM"]
            share["targets_owned"] = s1[i].values.get("slamon_targets", float("nan"))
            shards.append(share)
        for p in procs:
            os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=args.timeout + 10)
    started = sum(s["started"] for s in shards)
    cpu = sum(s["cpu_seconds"] for s in shards)
    db: dict[str, Any] = {}
    if pg0 is not None and pg1 is not None and started:
        db = {
            "postgres_cpu_cores": (pg1[0] - pg0[0]) / (t1 - t0),
            "postgres_cpu_seconds_per_1000": (pg1[0] - pg0[0]) / started * 1000,
            "postgres_wal_bytes_per_1000": (pg1[1] - pg0[1]) / started * 1000,
            "postgres_db_growth_bytes_per_1000": (pg1[2] - pg0[2]) / started * 1000,
            "postgres_db_bytes": pg1[2],
        }
    return {
        "backend": args.backend,
        "slas": args.slas,
        **db,
        "targets": n,
        "shards": k,
        "interval": args.interval,
        "span_seconds": t1 - t0,
        "scheduled_per_second": n / args.interval,
        "achieved_per_second": sum(s["achieved_per_second"] for s in shards),
        "missed": sum(s["missed"] for s in shards),
        "cpu_seconds_per_1000": cpu / started * 1000 if started else None,
        "cpu_cores": cpu / (t1 - t0),
        "prometheus_cpu_cores": (pr1 - pr0) / (t1 - t0),
        "machine_cpu_busy_fraction": (sys1[0] - sys0[0]) / max(1e-9, sys1[1] - sys0[1]),
        "lag_p99_max": max(s["lag_p99"] for s in shards),
        "lag_max": max(s["lag_max"] for s in shards),
        "rss_hwm_max_bytes": max(s["rss_hwm_bytes"] for s in shards),
        "per_shard": shards,
    }


def _line(r: dict[str, Any]) -> str:
    per = ", ".join(
        f"shard {i}: {s['cpu_fraction_of_one_core']:.3f} core, p99 {s['lag_p99'] * 1000:.1f} ms, "
        f"max {s['lag_max'] * 1000:.0f} ms, RSS {s['rss_hwm_bytes'] / 2**20:.0f} MB, "
        f"ready {s['ready_seconds']:.1f} s"
        for i, s in enumerate(r["per_shard"])
    )
    db = ""
    if r["backend"] == "postgres":
        db = (f"; PostgreSQL {r['postgres_cpu_cores']:.3f} cores = "
              f"{r['postgres_cpu_seconds_per_1000']:.3f} CPU-s/1,000 probes, WAL "
              f"{r['postgres_wal_bytes_per_1000'] / 1024:.0f} KiB/1,000 probes, database "
              f"+{r['postgres_db_growth_bytes_per_1000'] / 1024:.0f} KiB/1,000 probes "
              f"({r['postgres_db_bytes'] / 2**20:.0f} MiB)")
    return (
        f"[{r['backend']}{', SLAs' if r['slas'] else ''}] "
        f"{r['targets']} targets / {r['shards']} shard(s): "
        f"{r['achieved_per_second']:.0f}/{r['scheduled_per_second']:.0f} probes/s, "
        f"missed {r['missed']:.0f}, {r['cpu_seconds_per_1000']:.3f} CPU-s/1,000 probes, "
        f"{r['cpu_cores']:.2f} cores (+ Prometheus {r['prometheus_cpu_cores']:.3f}), "
        f"machine busy {r['machine_cpu_busy_fraction'] * 100:.0f} %{db}; {per}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=20000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=None, help="default: one interval")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--ports", type=int, default=20, help="nginx listening ports")
    ap.add_argument("--nginx-workers", type=int, default=1)
    ap.add_argument("--prometheus", type=float, default=15.0, metavar="SECONDS")
    ap.add_argument("--ready-timeout", type=float, default=180.0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite",
                    help="postgres: one server (tests/pg.py) and database for all shards")
    ap.add_argument("--slas", action="store_true",
                    help="a monthly SLA per target too (evidence leaves are written)")
    args = ap.parse_args()
    # what write_config reads from probe_bench's options
    args.state, args.max_concurrency, args.pg_dsn = True, 0, None
    args.monthly_slas = args.slas
    if args.shards < 1 or args.targets < args.shards:
        ap.error("--shards must be between 1 and --targets")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for r in range(args.runs):
        work = args.out / f"shards-{args.targets}x{args.shards}-{int(time.time())}-{r}"
        work.mkdir(parents=True)
        res = run(args, work)
        print(_line(res), flush=True)
        results.append(res)
    if len(results) > 1:
        keys = ("cpu_seconds_per_1000", "cpu_cores", "lag_p99_max", "rss_hwm_max_bytes")
        print("medians: " + ", ".join(
            f"{key} {statistics.median(r[key] for r in results):.4g}" for key in keys))
    out = args.out / f"shards-{args.targets}x{args.shards}-{int(time.time())}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
