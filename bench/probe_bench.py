"""Probe-path benchmark: slamon probing N loopback HTTP targets.

For each target count N (default 1,000 and 10,000) and each run:

1. an nginx farm on 127.0.0.1 (bench/farm.py) serves ``/t/<i>`` on ``--ports`` ports;
2. slamon runs as a subprocess (``python -m slamon run -c cfg``) with N HTTP
   targets at ``--interval`` and one availability SLO per target;
3. after /readyz and a warm-up of one interval, /metrics is scraped, the
   process is left alone for ``--duration`` seconds, and /metrics is scraped
   again. Rates, lag percentiles and CPU come from the difference;
4. a bare aiohttp client loop (``--reference-worker``, uvloop, one task per
   target sleeping to its next tick, fresh connection per GET) does the same
   requests at the same rate over the same span, as the CPU reference.

CPU is utime+stime of that one process from /proc/<pid>/stat (nginx's CPU is
reported apart). Lag p50/p99 are interpolated linearly inside the buckets of
``slamon_scheduler_lag_seconds`` (as PromQL's histogram_quantile does).

Every wait is bounded; traffic goes to 127.0.0.1 only; nginx, slamon and the
reference are killed (process groups) on exit, even on error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from farm import Farm, free_ports, nginx_farm, stop_group  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- /proc


def proc_cpu(pid: int, thread: int | None = None) -> float:
    """utime + stime of one process (all its threads), or of one of its threads (its
    main thread: `thread=pid`), in seconds."""
    where = f"/proc/{pid}" if thread is None else f"/proc/{pid}/task/{thread}"
    raw = Path(f"{where}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0]) * 1024
    return out


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def sockstat_tw() -> int:
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            toks = line.split()
            return int(toks[toks.index("tw") + 1])
    return -1


def sysctl(name: str) -> str:
    try:
        return Path("/proc/sys/" + name.replace(".", "/")).read_text().strip()
    except OSError:
        return "?"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


class RssSampler:
    """Polls VmRSS of a pid every `every` seconds in a thread (bounded by stop())."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid = pid
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                rss = proc_status(self.pid)["VmRSS"]
            except (OSError, KeyError):
                return
            self.samples.append((time.monotonic(), rss))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peak_between(self, t0: float, t1: float) -> int:
        return max((r for t, r in self.samples if t0 <= t <= t1), default=0)


# ---------------------------------------------------------------- metrics


WANTED = (
    "slamon_scheduler_probes_started_total",
    "slamon_scheduler_missed_total",
    "slamon_scheduler_lag_seconds_bucket",
    "slamon_scheduler_lag_seconds_count",
    "slamon_scheduler_lag_seconds_sum",
    "slamon_scheduler_lag_max_seconds",
    "slamon_scheduler_in_flight",
    "process_resident_memory_bytes",
    "slamon_sli_window_bytes",
    "slamon_targets",
)


@dataclass
class Scrape:
    t_start: float  # monotonic, just before the request
    t_end: float
    nbytes: int
    wire_bytes: int = 0  # as sent: gzipped when asked
    values: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, float] = field(default_factory=dict)
    probes: dict[str, float] = field(default_factory=dict)  # slamon_probes_total by result

    @property
    def seconds(self) -> float:
        return self.t_end - self.t_start


def scrape(port: int, timeout: float = 60.0, gzip: bool = False) -> Scrape:
    """/metrics, parsed for what the bench reads; `gzip` asks for it as Prometheus does
    (the time then includes decompressing, on the bench's side)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={
        "Accept-Encoding": "gzip" if gzip else "identity"})
    t0 = time.monotonic()
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        body = resp.read()
        packed = resp.headers.get("Content-Encoding") == "gzip"
    t1 = time.monotonic()
    wire = len(body)
    if packed:
        body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
    elif gzip:
        raise RuntimeError("asked /metrics for gzip and got plain text")
    out = Scrape(t0, t1, len(body), wire_bytes=wire)
    probes: dict[str, float] = {}
    for line in body.decode().splitlines():
        if not line or line[0] == "#":
            continue
        head, _, value_s = line.rpartition(" ")
        name, _, labels = head.partition("{")
        if name == "slamon_probes_total":
            # slamon_probes_total{target="t1",result="success"} 12.0
            result = labels.rsplit('result="', 1)[1].split('"', 1)[0]
            probes[result] = probes.get(result, 0.0) + float(value_s)
        elif name == "slamon_scheduler_lag_seconds_bucket":
            out.buckets[labels.split('le="', 1)[1].split('"', 1)[0]] = float(value_s)
        elif name in WANTED:
            out.values[name] = float(value_s)
    out.probes = dict(probes)
    return out


def quantile(q: float, buckets: dict[str, float]) -> float:
    """histogram_quantile(): linear interpolation inside the bucket holding rank q."""
    items = sorted(
        ((float("inf") if le == "+Inf" else float(le), c) for le, c in buckets.items()),
    )
    total = items[-1][1] if items else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in items:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound  # beyond the last finite bucket: report its bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def wait_ready(port: int, proc: subprocess.Popen[bytes], limit: float) -> float:
    t0 = time.monotonic()
    deadline = t0 + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"slamon exited early with {proc.returncode}")
        url = f"http://127.0.0.1:{port}/readyz"
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=2) as resp,
        ):
            if resp.status == 200:
                return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"slamon not ready after {limit:.0f}s")


# ---------------------------------------------------------------- processes


@contextlib.contextmanager
def child(argv: list[str], log: Path, **kw: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess in its own process group; SIGTERM then SIGKILL on exit."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            argv, stdout=kw.pop("stdout", fh), stderr=fh, start_new_session=True, **kw
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            stop_group(proc, grace=20)


def write_config(path: Path, urls: list[str], port: int, args: argparse.Namespace) -> None:
    """YAML (flow style, one item a line) with N HTTP targets and one SLO per target.

    The state file is fresh for every run, next to the config (nothing restored).
    """
    lines = [
        f'server: {{listen: "127.0.0.1:{port}"}}',
        "logging: {level: warning, format: json}",
    ]
    if args.state and getattr(args, "pg_dsn", None):
        lines.append(f'state: {{backend: postgres, dsn: "{args.pg_dsn}"}}')
    elif args.state:
        state = path.with_suffix(".sqlite3")
        lines.append(f'state: {{path: "{state}"}}')
    if args.max_concurrency:
        lines.append(f"scheduler: {{max_concurrency: {args.max_concurrency}}}")
    if getattr(args, "plain_metrics", False):
        lines.append("metrics: {gzip: false}")
    lines.append("targets:")
    iv, to = f"{args.interval:g}s", f"{args.timeout:g}s"
    for i, url in enumerate(urls):
        lines.append(
            f'  - {{id: t{i}, kind: http, interval: {iv}, timeout: {to}, http: {{url: "{url}"}}}}'
        )
    lines.append("slos:")
    for i in range(len(urls)):
        lines.append(f"  - {{id: s{i}, targets: [t{i}], objective: 0.999, window: 30d}}")
    if getattr(args, "monthly_slas", False):
        # a monthly SLA per SLO: every outcome also lands in an evidence leaf
        lines.append("slas:")
        for i in range(len(urls)):
            lines.append(f"  - {{id: a{i}, slo: s{i}, period: {{kind: monthly}}}}")
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- full collections

#: imported by the slamon child only (its PYTHONPATH): times every full collection
_GC_SITE = """\
import gc, os, time

_log = os.environ["PROBE_BENCH_GC_LOG"]
_every = os.environ.get("PROBE_BENCH_FULL_GC_AFTER")
if _every:
    # read by the daemon each time it sets the collector's thresholds
    import slamon.app.runtime
    slamon.app.runtime.FULL_GC_AFTER = int(_every)
_began = [0.0]


def _timed(phase, info):
    if info["generation"] != 2:
        return
    if phase == "start":
        _began[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _began[0]) * 1e3
    # counted after the timing: the count walks the generation too
    with open(_log, "a") as fh:
        fh.write(f"{time.time():.3f} {ms:.3f} {info['collected']} {len(gc.get_objects(2))}\\n")


gc.callbacks.append(_timed)
"""


def _gc_env(env: dict[str, str], work: Path, tag: str, every: int) -> Path:
    """Make the slamon child log its full collections; the log's path."""
    site = work / f"gcsite-{tag}"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_GC_SITE)
    log = work / f"full-gc-{tag}.log"
    log.unlink(missing_ok=True)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env["PROBE_BENCH_GC_LOG"] = str(log)
    if every:
        env["PROBE_BENCH_FULL_GC_AFTER"] = str(every)
    return log


def _full_collections(log: Path, t0: float, t1: float) -> dict[str, Any]:
    """The full collections logged between wall times t0 and t1."""
    rows = []
    if log.exists():
        for line in log.read_text().splitlines():
            at, ms, collected, objects = line.split()
            if t0 <= float(at) <= t1:
                rows.append({"ms": float(ms), "collected": int(collected),
                             "objects": int(objects)})
    return {"count": len(rows), "each": rows,
            "ms_max": max((r["ms"] for r in rows), default=None)}


# ---------------------------------------------------------------- one slamon run


def run_slamon(
    farm: Farm, n: int, args: argparse.Namespace, work: Path, tag: str
) -> dict[str, Any]:
    port = free_ports(1)[0]
    cfg = work / f"slamon-{tag}.yaml"
    write_config(cfg, farm.urls(n), port, args)
    argv = [sys.executable, "-m", "slamon", "run", "-c", str(cfg)]
    res: dict[str, Any] = {"kind": "slamon", "targets": n, "interval": args.interval}
    env = dict(os.environ)
    if args.slamon_path:  # a patched copy of the repo, imported before the installed one
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(args.slamon_path), env.get("PYTHONPATH", "")) if p
        )
    gc_log = _gc_env(env, work, tag, args.full_gc_after) if args.full_gc else None
    # cwd = the run's directory: `python -m` puts the cwd first on sys.path, so running
    # from a checkout would import that checkout whatever PYTHONPATH says
    which = subprocess.run(
        [sys.executable, "-c", "import slamon; print(slamon.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    res["slamon_module"] = which.stdout.strip()
    print(f"   slamon from {res['slamon_module']}", flush=True)
    with contextlib.ExitStack() as stack:
        proc = stack.enter_context(child(argv, work / f"slamon-{tag}.log", env=env, cwd=work))
        pid = proc.pid
        sampler = RssSampler(pid)
        prom = None
        if args.prometheus:  # as an SRE runs it: a Prometheus scraping slamon all along
            prom_port = free_ports(1)[0]
            (work / f"prometheus-{tag}.yml").write_text(
                f"global: {{scrape_interval: {args.prometheus:g}s, scrape_timeout: 10s}}\n"
                "scrape_configs:\n"
                f"  - {{job_name: slamon, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n"
            )
            prom = stack.enter_context(child(
                ["/usr/bin/prometheus", f"--config.file={work / f'prometheus-{tag}.yml'}",
                 f"--storage.tsdb.path={work / f'tsdb-{tag}'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                work / f"prometheus-{tag}.log"))
        try:
            res["ready_seconds"] = wait_ready(port, proc, args.ready_timeout)
            res["rss_ready_bytes"] = proc_status(pid)["VmRSS"]
            time.sleep(args.warmup)
            res["rss_before_first_scrape_bytes"] = proc_status(pid)["VmRSS"]
            s0 = scrape(port)
            cpu0, sys0 = proc_cpu(pid), system_cpu()
            ng0 = sum(_cpu_or_zero(p) for p in farm.pids)
            pr0 = _cpu_or_zero(prom.pid) if prom is not None else 0.0
            t_cpu0, wall0 = time.monotonic(), time.time()
            prof = _start_profile(pid, args, work, tag)
            time.sleep(args.duration)
            if prof is not None:
                prof.wait(timeout=args.duration + 30)
            t_cpu1, wall1 = time.monotonic(), time.time()
            cpu1, sys1 = proc_cpu(pid), system_cpu()
            ng1 = sum(_cpu_or_zero(p) for p in farm.pids)
            if prom is not None:
                res["prometheus_cpu_seconds"] = _cpu_or_zero(prom.pid) - pr0
                res["prometheus_scrape_interval"] = args.prometheus
            tw = sockstat_tw()
            s1 = scrape(port)
            hwm = proc_status(pid)["VmHWM"]
            res.update(_summarise(s0, s1, cpu1 - cpu0, t_cpu1 - t_cpu0, n, args))
            res["nginx_cpu_seconds"] = ng1 - ng0
            res["machine_cpu_busy_fraction"] = (sys1[0] - sys0[0]) / max(1e-9, sys1[1] - sys0[1])
            res["time_wait_sockets_end"] = tw
            res["rss_peak_span_bytes"] = sampler.peak_between(t_cpu0, t_cpu1)
            res["rss_hwm_bytes"] = hwm
            res["first_scrape"] = {"seconds": s0.seconds, "bytes": s0.nbytes}
            if prom is not None:  # its scrapes would fall in the quiet spells measured below
                stop_group(prom, grace=20)
            res["scrape"] = _scrape_cost(port, pid, args.scrape_samples, s1,
                                          gzip=not getattr(args, "plain_metrics", False))
            if gc_log is not None:
                res["full_collections"] = _full_collections(gc_log, wall0, wall1)
            if prof is not None and args.stalls:
                res["stalls"] = _summarise_stalls(work / f"stalls-{tag}.json")
            elif prof is not None:
                res["profile"] = _summarise_profile(work / f"profile-{tag}.txt")
        finally:
            sampler.stop()
        if proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
            t0 = time.monotonic()
            try:
                res["exit_code"] = proc.wait(timeout=args.timeout + 10)
                res["stop_seconds"] = time.monotonic() - t0
            except subprocess.TimeoutExpired:
                res["exit_code"] = None
    return res


def _cpu_or_zero(pid: int) -> float:
    try:
        return proc_cpu(pid)
    except OSError:
        return 0.0


def _summarise(
    s0: Scrape, s1: Scrape, cpu: float, cpu_span: float, n: int, args: argparse.Namespace
) -> dict[str, Any]:
    v0, v1 = s0.values, s1.values
    span = s1.t_start - s0.t_start  # stats are read when the collector runs
    started = (
        v1["slamon_scheduler_probes_started_total"] - v0["slamon_scheduler_probes_started_total"]
    )
    missed = v1["slamon_scheduler_missed_total"] - v0["slamon_scheduler_missed_total"]
    rate = started / span
    # Ticks due while a scrape blocks the loop start right after it, so the probes run
    # between the end of scrape 0 and the start of scrape 1 (the CPU span) are `started`.
    probes_in_cpu_span = started
    lag = {le: s1.buckets[le] - s0.buckets.get(le, 0.0) for le in s1.buckets}
    lag_count = lag.get("+Inf", 0.0)
    lag_sum = v1["slamon_scheduler_lag_seconds_sum"] - v0["slamon_scheduler_lag_seconds_sum"]
    outcomes = {
        k: s1.probes.get(k, 0.0) - s0.probes.get(k, 0.0)
        for k in sorted(set(s0.probes) | set(s1.probes))
    }
    window_bytes = v1.get("slamon_sli_window_bytes", float("nan"))
    over_100ms = lag_count - lag.get("0.1", 0.0)
    max0 = v0["slamon_scheduler_lag_max_seconds"]
    max1 = v1["slamon_scheduler_lag_max_seconds"]
    return {
        "span_seconds": span,
        "cpu_span_seconds": cpu_span,
        "scheduled_per_second": n / args.interval,
        "started": started,
        "achieved_per_second": rate,
        "missed": missed,
        "outcomes": outcomes,
        "cpu_seconds": cpu,
        "cpu_fraction_of_one_core": cpu / cpu_span,
        "cpu_seconds_per_1000": cpu / probes_in_cpu_span * 1000 if probes_in_cpu_span else None,
        # interpolation can overshoot inside a wide bucket: never report above the max
        "lag_p50": min(quantile(0.50, lag), max1),
        "lag_p99": min(quantile(0.99, lag), max1),
        "lag_mean": lag_sum / lag_count if lag_count else None,
        "lag_over_100ms": over_100ms,
        # the gauge is a max since start: if it rose during the span, its new value is the
        # span's max; otherwise the span's max is at most that value
        "lag_max": max1,
        "lag_max_exact": max1 > max0,
        "lag_max_at_span_start": max0,
        "lag_buckets_delta": lag,
        "rss_bytes": v1.get("process_resident_memory_bytes"),
        "window_bytes": window_bytes,
        "window_bytes_per_target": window_bytes / n,
        "in_flight_end": v1.get("slamon_scheduler_in_flight"),
    }


def task_cpu_ns(pid: int) -> tuple[frozenset[str], int]:
    """The process's threads and their CPU time summed, in ns (`schedstat`: exact, where
    `/proc/pid/stat` counts 10 ms ticks, a twentieth of a scrape)."""
    tasks = Path(f"/proc/{pid}/task")
    ids: list[str] = []
    total = 0
    for task in tasks.iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile: the tick count below covers it
        ids.append(task.name)
    return frozenset(ids), total


def _scrape_once(port: int, pid: int, gzip: bool, quiet: float) -> dict[str, float]:
    """One scrape's CPU: what the process used during it, and that less what it used in
    the same time while not scraped (its probes go on meanwhile: at 10,000 targets a
    quarter of a core, a fifth of a plain scrape's time)."""
    threads0, b0 = task_cpu_ns(pid)
    t0 = time.monotonic()
    time.sleep(quiet)
    threads1, b1 = task_cpu_ns(pid)
    t1 = time.monotonic()
    ticks0 = proc_cpu(pid)
    got = scrape(port, gzip=gzip)
    ticks1 = proc_cpu(pid)
    threads2, c1 = task_cpu_ns(pid)
    out = {"seconds": got.seconds, "bytes": float(got.wire_bytes),
           "cpu_ticks": ticks1 - ticks0}
    if threads0 == threads1 == threads2:  # no thread came or went: the sums compare
        rate = (b1 - b0) / 1e9 / (t1 - t0)
        raw = (c1 - b1) / 1e9
        out.update(cpu=raw, background_rate=rate, cpu_net=raw - rate * got.seconds)
    return out


def _scrape_cost(port: int, pid: int, samples: int, before: Scrape, gzip: bool = True,
                 quiet: float = 1.0) -> dict[str, Any]:
    """Time, size and slamon CPU of /metrics scrapes after the span, plain and gzipped
    (as Prometheus asks, unless slamon was told not to gzip), each after `quiet` seconds
    unscraped. The two alternate, which goes first changing each round: taken as three
    plain then three gzipped, the gzipped read 0.13 s more CPU at 10,000 targets, where
    alternated they read the same (docs/benchmarks.md)."""
    max_before = before.values["slamon_scheduler_lag_max_seconds"]
    out: dict[str, Any] = {"samples": samples, "lag_max_before": max_before}
    kinds = (False, True) if gzip else (False,)
    taken: dict[bool, list[dict[str, float]]] = {packed: [] for packed in kinds}
    for i in range(samples):
        for packed in kinds if i % 2 == 0 else kinds[::-1]:
            taken[packed].append(_scrape_once(port, pid, packed, quiet))
    for packed, runs in taken.items():
        times = [r["seconds"] for r in runs]
        part: dict[str, Any] = {
            "seconds_median": statistics.median(times) if times else None,
            "seconds_max": max(times, default=None),
            "cpu_seconds_median": statistics.median(r["cpu_ticks"] for r in runs)
            if runs else None,
            "bytes": runs[-1]["bytes"] if runs else None,
        }
        exact = [r for r in runs if "cpu" in r]
        if exact:
            part["cpu_exact_median"] = statistics.median(r["cpu"] for r in exact)
            part["cpu_net_median"] = statistics.median(r["cpu_net"] for r in exact)
            part["cpu_net_all"] = [round(r["cpu_net"], 4) for r in exact]
            part["background_cores"] = statistics.median(r["background_rate"] for r in exact)
        if packed:
            out["gzip"] = part
        else:
            out.update(part)
    longest = max(out["seconds_max"] or 0.0, out.get("gzip", {}).get("seconds_max") or 0.0)
    time.sleep(max(2.0, 2 * longest))
    out["lag_max_after"] = scrape(port).values["slamon_scheduler_lag_max_seconds"]
    return out


# ---------------------------------------------------------------- profiling


def py_spy() -> str:
    """The py-spy beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


def _start_profile(
    pid: int, args: argparse.Namespace, work: Path, tag: str
) -> subprocess.Popen[bytes] | None:
    if not (args.profile or args.stalls):
        return None
    argv = [py_spy(), "record", "--pid", str(pid),
            "--duration", str(int(args.duration)), "--nonblocking"]
    if args.stalls:
        argv += [*STALL_OPTIONS, "--output", str(work / f"stalls-{tag}.json")]
    else:
        argv += ["--rate", "200", "--format", "raw", "--output",
                 str(work / f"profile-{tag}.txt")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


#: py-spy samples per second in --stalls mode: a busy run of k samples held the loop ~k ms
STALL_RATE = 1000
#: `py-spy record` options for what `_summarise_stalls` reads: every sample, idle ones
#: too, in order: runs of busy samples are the stretches in which the event loop did not
#: get back to its poll (and so to its timers)
STALL_OPTIONS = ["--rate", str(STALL_RATE), "--idle", "--threads", "--format", "speedscope"]
#: innermost frames of a main-thread stack waiting in the event loop's poll (uvloop's
#: Cython frames are not Python frames: the runner is the innermost one py-spy sees)
_IDLE_FRAMES = {"Runner.run", "run_until_complete", "run_forever", "_run_once", "select"}


def _summarise_stalls(path: Path, over_ms: float = 10.0, top: int = 15) -> dict[str, Any]:
    """Runs of consecutive busy main-thread samples longer than `over_ms`, and the
    frames (slamon's own, innermost first) they spent their samples in."""
    if not path.is_file():
        return {"error": "no profile written"}
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    main = max(doc["profiles"], key=lambda p: len(p.get("samples", ())))
    samples = main["samples"]

    def busy(stack: list[int]) -> bool:
        return bool(stack) and frames[stack[-1]]["name"] not in _IDLE_FRAMES

    def owner(stack: list[int]) -> str:
        for i in reversed(stack):
            f = frames[i]
            if "/slamon/" in f.get("file", ""):
                return f"{f['name']} ({Path(f['file']).name}:{f.get('line', 0)})"
        f = frames[stack[-1]]
        return f"{f['name']} ({Path(f.get('file', '?')).name})"

    runs: list[tuple[int, int]] = []
    start = None
    for i, stack in enumerate([*samples, []]):
        if busy(stack):
            start = i if start is None else start
        elif start is not None:
            runs.append((start, i))
            start = None
    per_ms = STALL_RATE / 1000.0
    long = [(a, b) for a, b in runs if (b - a) / per_ms > over_ms]
    where: dict[str, int] = {}
    for a, b in long:
        for stack in samples[a:b]:
            key = owner(stack)
            where[key] = where.get(key, 0) + 1
    total = sum(where.values()) or 1
    return {
        "samples": len(samples),
        "busy_fraction": sum(b - a for a, b in runs) / max(1, len(samples)),
        "runs_over_ms": over_ms,
        "runs_over": len(long),
        "longest_ms": max(((b - a) / per_ms for a, b in runs), default=0.0),
        "top": [(k, round(v / total, 3)) for k, v in
                sorted(where.items(), key=lambda kv: -kv[1])[:top]],
    }


def _summarise_profile(path: Path, top: int = 30) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    if not path.exists():
        return {"error": "no profile written"}
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        frames = stack.split(";")
        total += count
        own[_frame(frames[-1])] += count
        for f in {_frame(f) for f in frames}:
            incl[f] += count

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(v / total, 4)) for k, v in c.most_common(top)]

    return {"samples": total, "self": share(own), "inclusive": share(incl), "raw": str(path)}


def _frame(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"
    name, _, loc = frame.partition(" (")
    file = loc.rsplit("/", 1)[-1].split(":", 1)[0] if loc else ""
    return f"{name} ({file})" if file else name


# ---------------------------------------------------------------- reference


def run_reference(
    farm: Farm, n: int, args: argparse.Namespace, work: Path, tag: str
) -> dict[str, Any]:
    spec = work / f"ref-{tag}.json"
    spec.write_text(
        json.dumps({"urls": farm.urls(n), "interval": args.interval, "timeout": args.timeout})
    )
    argv = [sys.executable, str(Path(__file__).resolve()), "--reference-worker", str(spec)]
    res: dict[str, Any] = {"kind": "aiohttp-reference", "targets": n, "interval": args.interval}
    with child(argv, work / f"ref-{tag}.log", stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        pid = proc.pid

        def snapshot() -> dict[str, Any]:
            os.kill(pid, signal.SIGUSR1)
            line = _readline(proc, 30.0)
            return dict(json.loads(line))

        ready = _readline(proc, args.ready_timeout)
        if not ready.startswith("{"):
            raise RuntimeError(f"reference worker: {ready!r}")
        time.sleep(args.warmup)
        t0 = time.monotonic()
        a = snapshot()
        cpu0, sys0 = proc_cpu(pid), system_cpu()
        tc0 = time.monotonic()
        time.sleep(args.duration)
        tc1 = time.monotonic()
        cpu1, sys1 = proc_cpu(pid), system_cpu()
        t1 = time.monotonic()
        b = snapshot()
        hwm = proc_status(pid)["VmHWM"]
        span = t1 - t0
        started = b["started"] - a["started"]
        rate = started / span
        cpu = cpu1 - cpu0
        lags = sorted(b["span_lags"])  # the lags of ticks between the two snapshots
        res.update(
            {
                "span_seconds": span,
                "scheduled_per_second": n / args.interval,
                "started": started,
                "achieved_per_second": rate,
                "ok": b["ok"] - a["ok"],
                "failed": b["failed"] - a["failed"],
                "skipped_ticks": b["skipped"] - a["skipped"],
                "cpu_seconds": cpu,
                "cpu_fraction_of_one_core": cpu / (tc1 - tc0),
                "cpu_seconds_per_1000": cpu / started * 1000 if started else None,
                "lag_p50": _pct(lags, 0.50),
                "lag_p99": _pct(lags, 0.99),
                "lag_max": lags[-1] if lags else None,
                "rss_bytes": b["rss"],
                "machine_cpu_busy_fraction": (sys1[0] - sys0[0]) / max(1e-9, sys1[1] - sys0[1]),
                "rss_hwm_bytes": hwm,
            }
        )
    return res


def _readline(proc: subprocess.Popen[bytes], limit: float) -> str:
    """One stdout line from the worker, bounded in time."""
    assert proc.stdout is not None
    box: list[bytes] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(limit)
    if not box:
        raise RuntimeError("reference worker did not answer in time")
    return box[0].decode().strip()


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def reference_worker(spec_path: str) -> None:
    """What a minimal user would write: a task per target, sleep to its tick, GET.

    Fresh connection per request (force_close), no connection limit, uvloop.
    Prints one JSON line when all tasks are started, then one per SIGUSR1 with
    its counters; the lags listed are those since the previous SIGUSR1.
    """
    import aiohttp
    import uvloop

    spec = json.loads(Path(spec_path).read_text())
    urls: list[str] = spec["urls"]
    interval: float = spec["interval"]
    timeout = aiohttp.ClientTimeout(total=spec["timeout"])
    stats = {"started": 0, "ok": 0, "failed": 0, "skipped": 0}
    lags: list[float] = []

    async def one(session: aiohttp.ClientSession, url: str, first: float) -> None:
        loop = asyncio.get_running_loop()
        due = first
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            lags.append(now - due)
            stats["started"] += 1
            try:
                async with session.get(url, timeout=timeout) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            stats["ok" if ok else "failed"] += 1
            due += interval
            now = loop.time()
            while due <= now:  # overran a tick: skip it, as slamon counts it missed
                stats["skipped"] += 1
                due += interval

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def report() -> None:
            rss = proc_status(os.getpid())["VmRSS"]
            out = dict(stats, rss=rss, span_lags=list(lags))
            lags.clear()
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()

        loop.add_signal_handler(signal.SIGUSR1, report)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        conn = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=conn) as session:
            start = loop.time() + 0.5
            n = len(urls)
            tasks = [
                asyncio.create_task(one(session, url, start + interval * i / n))
                for i, url in enumerate(urls)
            ]
            sys.stdout.write(json.dumps({"tasks": len(tasks)}) + "\n")
            sys.stdout.flush()
            await stop.wait()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    uvloop.run(main())


# ---------------------------------------------------------------- report


def fmt_ms(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x * 1000:.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'kind':<18}{'N':>7}{'sched/s':>9}{'done/s':>9}{'missed':>8}{'fail':>6}"
        f"{'CPU%1c':>8}{'CPUs/1k':>9}{'p50ms':>8}{'p99ms':>8}{'maxms':>9}"
        f"{'RSS MB':>8}{'HWM MB':>8}{'win B/t':>9}{'busy%':>7}"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        fail = r.get("outcomes", {}).get("failure", r.get("failed", 0))
        mx = fmt_ms(r.get("lag_max"))
        if r["kind"] == "slamon" and not r.get("lag_max_exact", True):
            mx = "<=" + mx
        wb = r.get("window_bytes_per_target")
        label = r["kind"] if r.get("run") is None else f"{r['kind']} #{r['run']}"
        out.append(
            f"{label:<18}"
            f"{r['targets']:>7}{r['scheduled_per_second']:>9.1f}{r['achieved_per_second']:>9.1f}"
            f"{int(r.get('missed', r.get('skipped_ticks', 0))):>8}{int(fail):>6}"
            f"{r['cpu_fraction_of_one_core'] * 100:>7.1f}%{r['cpu_seconds_per_1000']:>9.3f}"
            f"{fmt_ms(r['lag_p50']):>8}{fmt_ms(r['lag_p99']):>8}{mx:>9}"
            f"{(r.get('rss_bytes') or 0) / 1e6:>8.1f}{r['rss_hwm_bytes'] / 1e6:>8.1f}"
            f"{'-' if wb is None else f'{wb:.0f}':>9}"
            f"{r.get('machine_cpu_busy_fraction', float('nan')) * 100:>7.0f}"
        )
    return "\n".join(out)


def medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = (
        "achieved_per_second",
        "cpu_fraction_of_one_core",
        "cpu_seconds_per_1000",
        "lag_p50",
        "lag_p99",
        "lag_max",
        "rss_bytes",
        "rss_hwm_bytes",
        "window_bytes_per_target",
        "missed",
        "skipped_ticks",
        "machine_cpu_busy_fraction",
    )
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["targets"]), []).append(r)
    out = []
    for (kind, n), rs in groups.items():
        m: dict[str, Any] = {
            "kind": kind + " med",
            "targets": n,
            "run": None,
            "scheduled_per_second": rs[0]["scheduled_per_second"],
            "runs": len(rs),
        }
        for k in keys:
            vals = [r[k] for r in rs if r.get(k) is not None]
            if vals:
                m[k] = statistics.median(vals)
        m["lag_max_exact"] = True
        m["outcomes"] = {
            "failure": statistics.median(
                [r.get("outcomes", {}).get("failure", r.get("failed", 0)) for r in rs]
            )
        }
        out.append(m)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="slamon probe-path benchmark")
    ap.add_argument("--targets", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--interval", type=float, default=10.0, help="probe interval, seconds")
    ap.add_argument("--timeout", type=float, default=5.0, help="probe timeout, seconds")
    ap.add_argument("--warmup", type=float, default=None, help="default: one interval")
    ap.add_argument("--duration", type=float, default=60.0, help="measured span, seconds")
    ap.add_argument("--runs", type=int, default=1, help="repeat each size; medians shown")
    ap.add_argument("--ports", type=int, default=20, help="nginx listening ports")
    ap.add_argument("--nginx-workers", type=int, default=1)
    ap.add_argument("--max-concurrency", type=int, default=0, help="0: slamon's default")
    ap.add_argument("--no-reference", action="store_true", help="skip the aiohttp loop")
    ap.add_argument(
        "--slamon-path", type=Path, help="run slamon from this checkout (a patched copy)"
    )
    ap.add_argument("--no-slamon", action="store_true", help="only the aiohttp loop")
    ap.add_argument("--scrape-samples", type=int, default=3)
    ap.add_argument("--plain-metrics", action="store_true",
                    help="metrics.gzip off: Prometheus gets plain text although it asks for gzip")
    ap.add_argument("--prometheus", type=float, default=0.0, metavar="SECONDS",
                    help="a Prometheus scrapes slamon this often through the run (0: none)")
    ap.add_argument(
        "--no-state",
        dest="state",
        action="store_false",
        help="write no state: section (for slamon versions without one)",
    )
    ap.add_argument("--ready-timeout", type=float, default=120.0)
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record slamon during the span (perturbs CPU figures)",
    )
    ap.add_argument(
        "--stalls",
        action="store_true",
        help="py-spy at 1 kHz with idle samples: what held the event loop > 10 ms",
    )
    ap.add_argument(
        "--full-gc",
        action="store_true",
        help="time each full collection of slamon's garbage collector in the span",
    )
    ap.add_argument(
        "--full-gc-after",
        type=int,
        default=0,
        metavar="N",
        help="with --full-gc: young collections between full ones (0: slamon's own, "
        "which makes one at most every ~17 min)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--reference-worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference_worker:
        reference_worker(args.reference_worker)
        return
    if args.warmup is None:
        args.warmup = args.interval
    if not 0 < args.duration <= 3600 or not 0 <= args.warmup <= 600 or args.runs < 1:
        ap.error("duration must be in (0, 3600], warmup in [0, 600], runs >= 1")
    if args.full_gc_after < 0 or (args.full_gc_after and not args.full_gc):
        ap.error("--full-gc-after takes a count >= 0, and --full-gc with it")
    args.out.mkdir(parents=True, exist_ok=True)
    # SIGTERM/SIGHUP -> SystemExit, so the finally blocks kill nginx, slamon and the reference
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    env = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "ip_local_port_range": sysctl("net.ipv4.ip_local_port_range"),
        "tcp_tw_reuse": sysctl("net.ipv4.tcp_tw_reuse"),
        "tcp_fin_timeout": sysctl("net.ipv4.tcp_fin_timeout"),
        "nofile": subprocess.run(
            ["sh", "-c", "ulimit -n"], capture_output=True, text=True
        ).stdout.strip(),
        "argv": sys.argv[1:],
    }
    print(json.dumps(env), flush=True)
    rows: list[dict[str, Any]] = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = args.out / f"probe-{stamp}"  # configs, logs, profiles (gitignored)
    work.mkdir(parents=True, exist_ok=True)
    try:
        with nginx_farm(args.ports, args.nginx_workers) as farm:
            for n in args.targets:
                for run in range(1, args.runs + 1):
                    tag = f"{n}-{run}"
                    for name, runner, skip in (
                        ("slamon", run_slamon, args.no_slamon),
                        ("aiohttp reference", run_reference, args.no_reference),
                    ):
                        if skip:
                            continue
                        print(f"== {name} {n} targets, run {run}", flush=True)
                        r = runner(farm, n, args, work, tag)
                        r["run"] = run
                        rows.append(r)
                        print(table([r]), flush=True)
                        if "scrape" in r:
                            print(f"   scrape: {json.dumps(r['scrape'])}", flush=True)
                        if "full_collections" in r:
                            fc = r["full_collections"]
                            print(f"   full collections: {fc['count']}, ms/objects: "
                                  + ", ".join(f"{e['ms']:.1f}/{e['objects']}"
                                              for e in fc["each"]), flush=True)
    finally:
        out = args.out / f"probe-{stamp}.json"
        out.write_text(
            json.dumps(
                {"env": env, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                indent=1,
                default=str,
            )
        )
        print(f"\nresults: {out}\nlogs and configs: {work}")
    summary = rows + (medians(rows) if args.runs > 1 else [])
    print("\n" + table(summary))
    for n in args.targets:
        s = [r for r in rows if r["targets"] == n and r["kind"] == "slamon"]
        f = [r for r in rows if r["targets"] == n and r["kind"] != "slamon"]
        if s and f:
            a = statistics.median(r["cpu_seconds_per_1000"] for r in s)
            b = statistics.median(r["cpu_seconds_per_1000"] for r in f)
            print(f"N={n}: slamon/aiohttp CPU per probe = {a:.3f}/{b:.3f} = {a / b:.2f}x")


if __name__ == "__main__":
    main()
