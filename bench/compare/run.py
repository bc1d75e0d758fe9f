"""slamon vs blackbox_exporter + Prometheus on the same targets, same run.

One run, for N targets:

1. a behavioural target farm (``target_farm.py``, uvloop) on 127.0.0.1 whose answers
   follow a seeded schedule (``schedule.py``): scenarios mixed, flapping, straddle
   (outages across SLA period boundaries) and up, interleaved over the targets;
2. slamon (``python -m slamon run``): N HTTP targets, interval 10 s, timeout 2 s,
   valid status 2xx, ``body_contains: [OK]``, ``max_response_time`` 0.5 s; one SLO and
   one fixed-period SLA (60 s periods, grace 5 s) per target;
3. Debian's ``prometheus-blackbox-exporter`` (module ``http_2xx`` style: 2xx,
   ``fail_if_body_not_matches_regexp: [OK]``, timeout 2 s) and Debian's ``prometheus``
   scraping ``/probe?target=<url>`` for every target, scrape_interval 10 s,
   scrape_timeout 2.5 s (the exporter subtracts its 0.5 s offset: the probe's
   timeout is min(2, 2.5 - 0.5) = 2 s). blackbox_exporter has no latency assertion:
   the 0.5 s threshold is applied to ``probe_duration_seconds`` of the same sample
   (``probe_success == 1 and probe_duration_seconds <= 0.5``), as a recording rule would.

All four run concurrently on the same farm. ``--no-blackbox`` leaves out 3 (at 10,000
targets blackbox_exporter + Prometheus take more than one of two cores, and the ratio to
the bare loop is then measured on a saturated host); the peer is then measured in runs of
its own. After a warm-up, the measured window is
``--duration`` seconds starting at a minute boundary T0 (so it is made of whole SLA
periods). CPU (utime+stime from /proc/<pid>/stat) is read at T0 and T1 for each
process; peak RSS is VmHWM at T1. Nobody scrapes slamon or queries Prometheus
inside the window except one slamon scrape 2 s before T0 and one right after T1 (lag
histogram). After T1 a detection phase of ``--detect`` seconds polls both every 0.5 s
(slamon ``/metrics``; Prometheus an instant query) to time outage detection. Then
slamon's per-period results are read from its API and Prometheus' raw samples from
its HTTP API, and compared with the exact ground truth of the schedule.

    python bench/compare/run.py --targets 1000 --runs 3 --duration 180
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
sys.path.insert(0, str(BENCH))  # probe_bench (and its `farm`) first
sys.path.append(str(HERE))

from probe_bench import (  # noqa: E402
    STALL_OPTIONS,
    _readline,
    _summarise_stalls,
    child,
    cpu_model,
    free_ports,
    proc_cpu,
    proc_status,
    py_spy,
    quantile,
    scrape,
    system_cpu,
    wait_ready,
)
from schedule import BLOCK, SCENARIOS, TargetSchedule, build, has_own_port, scenario_of  # noqa: E402

from slamon.scheduler import auto_slot, phase_offset  # noqa: E402

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
PROMETHEUS = "/usr/bin/prometheus"
RESULTS = BENCH / "results"
BUSY_PATTERN = "probe_bench|state_size|bench/gas.py"


# ---------------------------------------------------------------- machine state


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def others_running() -> str:
    out = subprocess.run(["pgrep", "-af", BUSY_PATTERN], capture_output=True, text=True).stdout
    return "\n".join(ln for ln in out.splitlines() if str(os.getpid()) not in ln.split()[0])


def wait_quiet(limit: float, max_load: float) -> dict[str, Any]:
    """Wait (bounded) until no other benchmark runs and load1 < max_load."""
    t0 = time.monotonic()
    while True:
        busy, load = others_running(), loadavg()
        if not busy and load < max_load:
            return {"waited_seconds": time.monotonic() - t0, "quiet": True, "load1": load}
        if time.monotonic() - t0 >= limit:
            print(f"  ! proceeding under load: load1={load} others={busy!r}", flush=True)
            return {
                "waited_seconds": time.monotonic() - t0,
                "quiet": False,
                "load1": load,
                "others": busy,
            }
        time.sleep(15)


# ---------------------------------------------------------------- HTTP helpers


def get_json(url: str, timeout: float = 60.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def get_text(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


def wait_http(url: str, proc: subprocess.Popen[bytes], limit: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early with {proc.returncode}")
        with contextlib.suppress(OSError):
            get_text(url, timeout=2)
            return time.monotonic() - t0
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {limit:.0f}s")


def prom_query(port: int, query: str, at: float | None = None, timeout: float = 120) -> Any:
    params = {"query": query}
    if at is not None:
        params["time"] = f"{at:.3f}"
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(params)
    body = get_json(url, timeout=timeout)
    if body.get("status") != "success":
        raise RuntimeError(f"prometheus query failed: {body}")
    return body["data"]["result"]


def target_of(url: str) -> int:
    return int(url.rsplit("/t/", 1)[1])


# ---------------------------------------------------------------- configs


def slamon_config(path: Path, urls: list[str], port: int, a: argparse.Namespace) -> None:
    iv, to = f"{a.interval:g}s", f"{a.timeout:g}s"
    mrt = f"{a.slow_threshold * 1000:g}ms"
    lines = [
        f'server: {{listen: "127.0.0.1:{port}"}}',
        "logging: {level: warning, format: json}",
        f'state: {{path: "{path.with_suffix(".sqlite3")}"}}',
        "targets:",
    ]
    for i, url in enumerate(urls):
        lines.append(
            f"  - {{id: t{i}, kind: http, interval: {iv}, timeout: {to}, http: "
            f'{{url: "{url}", body_contains: [OK], max_response_time: {mrt}}}}}'
        )
    lines.append("slos:")
    lines += [
        f"  - {{id: s{i}, targets: [t{i}], objective: 0.99, window: 30d}}" for i in range(len(urls))
    ]
    lines.append("slas:")
    lines += [
        f"  - {{id: a{i}, slo: s{i}, period: {{kind: fixed, length: {BLOCK}s}}, grace: 5s}}"
        for i in range(len(urls))
    ]
    path.write_text("\n".join(lines) + "\n")


def blackbox_config(path: Path, a: argparse.Namespace) -> None:
    path.write_text(
        "modules:\n"
        "  http_sla:\n"
        "    prober: http\n"
        f"    timeout: {round(a.timeout * 1000)}ms\n"
        "    http:\n"
        "      preferred_ip_protocol: ip4\n"
        "      ip_protocol_fallback: false\n"
        "      fail_if_body_not_matches_regexp: [OK]\n"
    )


def prometheus_config(path: Path, urls: list[str], bb_port: int, a: argparse.Namespace) -> None:
    targets = "\n".join(f"          - {u}" for u in urls)
    path.write_text(
        "global:\n"
        f"  scrape_interval: {round(a.interval * 1000)}ms\n"
        f"  scrape_timeout: {round((a.timeout + 0.5) * 1000)}ms\n"
        "scrape_configs:\n"
        "  - job_name: blackbox\n"
        "    metrics_path: /probe\n"
        "    params: {module: [http_sla]}\n"
        "    static_configs:\n"
        "      - targets:\n"
        f"{targets}\n"
        "    relabel_configs:\n"
        "      - {source_labels: [__address__], target_label: __param_target}\n"
        "      - {source_labels: [__param_target], target_label: instance}\n"
        f"      - {{target_label: __address__, replacement: '127.0.0.1:{bb_port}'}}\n"
    )


def slamon_prometheus_config(path: Path, sl_port: int, a: argparse.Namespace) -> None:
    """The Prometheus an SRE runs beside slamon: scrapes its /metrics every 15 s."""
    path.write_text(
        "global:\n"
        f"  scrape_interval: {a.slamon_scrape_interval:g}s\n"
        f"  scrape_timeout: {min(a.slamon_scrape_interval, 10):g}s\n"
        "scrape_configs:\n"
        "  - job_name: slamon\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{sl_port}']}}]\n"
    )


# ---------------------------------------------------------------- detection polling


def parse_slamon_probe(text: str) -> dict[int, tuple[float, float]]:
    """target -> (probe_success, scheduled timestamp of the last probe)."""
    ok: dict[int, float] = {}
    sched: dict[int, float] = {}
    for line in text.splitlines():
        if line.startswith("probe_success{"):
            d = ok
        elif line.startswith("slamon_probe_scheduled_timestamp_seconds{"):
            d = sched
        else:
            continue
        head, _, val = line.rpartition(" ")
        tid = head.split('target="', 1)[1].split('"', 1)[0]
        d[int(tid[1:])] = float(val)
    return {i: (ok[i], sched.get(i, float("nan"))) for i in ok}


FAILING_Q = (
    "timestamp(probe_success) and on(instance) "
    "(probe_success == 0 or probe_duration_seconds > {thr})"
)


def poll_detection(sl_port: int, pr_port: int | None, until: float, thr: float
                   ) -> dict[str, Any]:
    """Every 0.5 s: failing targets and the time of their failing sample, both monitors
    (slamon alone when `pr_port` is None: blackbox_exporter was not run).

    Returns per monitor {target: [(sample_ts, first_seen_wall), ...]} of failing samples,
    and the cost of each poll (seconds)."""
    monitors = ["slamon"] if pr_port is None else ["slamon", "prometheus"]
    seen: dict[str, dict[int, dict[float, float]]] = {m: defaultdict(dict) for m in monitors}
    cost: dict[str, list[float]] = {m: [] for m in monitors}
    q = FAILING_Q.format(thr=thr)

    def poll_sl() -> None:
        t = time.time()
        state = parse_slamon_probe(get_text(f"http://127.0.0.1:{sl_port}/metrics"))
        cost["slamon"].append(time.time() - t)
        now = time.time()
        for i, (ok, ts) in state.items():
            if ok == 0 and ts not in seen["slamon"][i]:
                seen["slamon"][i][ts] = now

    def poll_pr() -> None:
        assert pr_port is not None
        t = time.time()
        rows = prom_query(pr_port, q)
        cost["prometheus"].append(time.time() - t)
        now = time.time()
        for r in rows:
            i, ts = target_of(r["metric"]["instance"]), float(r["value"][1])
            if ts not in seen["prometheus"][i]:
                seen["prometheus"][i][ts] = now

    with ThreadPoolExecutor(2) as pool:
        while time.time() < until:
            t = time.time()
            polls = [poll_sl] if pr_port is None else [poll_sl, poll_pr]
            for f in [pool.submit(poll) for poll in polls]:
                with contextlib.suppress(Exception):
                    f.result(timeout=10)
            # every 0.5 s; at least 0.25 s between polls so a slow /metrics does not
            # keep slamon's event loop busy back to back
            time.sleep(max(0.25, 0.5 - (time.time() - t)))
    return {
        "seen": {m: {i: sorted(v.items()) for i, v in d.items()} for m, d in seen.items()},
        "poll_seconds_median": {m: statistics.median(c) if c else None for m, c in cost.items()},
        "polls": {m: len(c) for m, c in cost.items()},
    }


# ---------------------------------------------------------------- result collection


def slamon_periods(port: int, n: int, periods: list[int]) -> dict[tuple[int, int], dict[str, Any]]:
    def one(key: tuple[int, int]) -> tuple[tuple[int, int], dict[str, Any]]:
        i, p = key
        return key, get_json(f"http://127.0.0.1:{port}/api/v1/slas/a{i}/periods/{p}")

    keys = [(i, p) for i in range(n) for p in periods]
    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, keys))


def prom_samples(port: int, metric: str, t0: float, t1: float) -> dict[int, dict[float, float]]:
    """Raw samples of `metric` with timestamps in [t0, t1), per target."""
    rows = prom_query(port, f"{metric}[{int(t1 - t0)}s]", at=t1 - 0.001, timeout=600)
    out: dict[int, dict[float, float]] = {}
    for r in rows:
        i = target_of(r["metric"]["instance"])
        out[i] = {float(ts): float(v) for ts, v in r["values"] if t0 <= float(ts) < t1}
    return out


# ---------------------------------------------------------------- statistics


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "mean": statistics.fmean(values) if values else None,
        "p99": pct(values, 0.99),
        "max": max(values) if values else None,
    }


def slamon_instants(i: int, a: float, b: float, interval: float, slot: float) -> list[float]:
    off = phase_offset(f"t{i}", interval, slot)
    k0 = math.ceil((a - off) / interval)
    out = []
    t = k0 * interval + off
    while t < b:
        out.append(t)
        k0 += 1
        t = k0 * interval + off
    return out


def analyse_sli(
    sched: list[TargetSchedule],
    sl: dict[tuple[int, int], dict[str, Any]],
    bb_ok: dict[int, dict[float, float]],
    bb_dur: dict[int, dict[float, float]],
    periods: list[int],
    a: argparse.Namespace,
) -> dict[str, Any]:
    """Per scenario: |SLI - truth| over whole window and per 60 s period, both monitors."""
    thr = a.slow_threshold
    slot = auto_slot([a.interval] * len(sched))  # slamon's, as it runs with slot: auto
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i, ts in enumerate(sched):
        scen = scenario_of(i)
        spans = [("period", p * BLOCK, (p + 1) * BLOCK, [p]) for p in periods]
        spans.append(("window", periods[0] * BLOCK, (periods[-1] + 1) * BLOCK, periods))
        ok_i, dur_i = bb_ok.get(i, {}), bb_dur.get(i, {})
        for scope, lo, hi, ps in spans:
            truth = ts.good_fraction(lo, hi)
            # slamon: its own accounting (SLA period results, by scheduled time)
            good = sum(sl[(i, p)]["good"] for p in ps)
            valid = sum(sl[(i, p)]["valid"] for p in ps)
            no_data = sum(sl[(i, p)].get("no_data", 0) for p in ps)
            inst = slamon_instants(i, lo, hi, a.interval, slot)
            samp = ts.sampled_fraction(inst)
            acc[scen][f"sl_{scope}_probes"].append(valid)
            acc[scen][f"sl_{scope}_nodata"].append(no_data)
            if valid:
                sli = good / valid
                acc[scen][f"sl_{scope}_err"].append(abs(sli - truth))
                acc[scen][f"sl_{scope}_err_probes"].append(abs(sli - truth) * valid)
                if samp is not None:
                    acc[scen][f"sl_{scope}_meas_err_probes"].append(abs(sli - samp) * valid)
            if samp is not None:
                acc[scen][f"sl_{scope}_sampling_err"].append(abs(samp - truth))
            # blackbox + Prometheus: samples whose scrape time is in [lo, hi)
            sts = [t for t in ok_i if lo <= t < hi]
            acc[scen][f"bb_{scope}_probes"].append(len(sts))
            if sts:
                good_b = sum(1 for t in sts if ok_i[t] == 1 and dur_i.get(t, 0.0) <= thr)
                sli_b = good_b / len(sts)
                samp_b = ts.sampled_fraction(sts)
                assert samp_b is not None
                acc[scen][f"bb_{scope}_err"].append(abs(sli_b - truth))
                acc[scen][f"bb_{scope}_err_probes"].append(abs(sli_b - truth) * len(sts))
                acc[scen][f"bb_{scope}_meas_err_probes"].append(abs(sli_b - samp_b) * len(sts))
                acc[scen][f"bb_{scope}_sampling_err"].append(abs(samp_b - truth))
    out: dict[str, Any] = {}
    for scen, d in acc.items():
        o: dict[str, Any] = {}
        for key, vals in d.items():
            if key.endswith("_probes") and not key.endswith("err_probes"):
                o[key] = {"sum": sum(vals), "min": min(vals), "max": max(vals)}
            else:
                o[key] = summary(vals)
        for mon in ("sl", "bb"):
            errp = d.get(f"{mon}_period_err_probes", [])
            o[f"{mon}_period_within_one_probe"] = (
                sum(1 for e in errp if e <= 1 + 1e-9) / len(errp) if errp else None
            )
        out[scen] = o
    return out


def analyse_detection(
    sched: list[TargetSchedule], det: dict[str, Any], lo: float, hi: float, a: argparse.Namespace
) -> dict[str, Any]:
    """Outages starting in [lo, hi): time until each monitor showed a failing sample
    taken during the outage; and how long of that was the wait for the probe."""
    out: dict[str, Any] = {}
    for mon, seen in det["seen"].items():
        lat: dict[str, list[float]] = defaultdict(list)
        wait: dict[str, list[float]] = defaultdict(list)
        missed: dict[str, int] = defaultdict(int)
        for i, ts in enumerate(sched):
            evs = seen.get(i, [])
            for o in ts.segs:
                if not lo <= o.start < hi:
                    continue
                scen = scenario_of(i)
                hit = [(s, w) for s, w in evs if o.start - 0.05 <= s < o.end]
                if not hit:
                    missed[scen] += 1
                    missed["all"] += 1
                    continue
                s, w = min(hit)
                for key in (scen, "all", f"kind:{o.kind}"):
                    lat[key].append(w - o.start)
                    wait[key].append(max(0.0, s - o.start))
        out[mon] = {
            k: {
                "latency": summary(lat[k]),
                "wait_for_probe": summary(wait[k]),
                "not_seen": missed.get(k, 0),
            }
            for k in sorted(set(lat) | set(missed))
        }
    return out


# ---------------------------------------------------------------- one run


def cpu_all(pids: dict[str, int]) -> dict[str, float]:
    reads: dict[str, tuple[int, int | None]] = {name: (pid, None) for name, pid in pids.items()}
    if "slamon" in pids:
        # its event loop's thread alone: the store's and the workers' threads are the rest
        reads["slamon_loop"] = (pids["slamon"], pids["slamon"])
    out = {}
    for name, (pid, thread) in reads.items():
        try:
            out[name] = proc_cpu(pid, thread)
        except OSError:
            out[name] = float("nan")
    return out


def sleep_until(t: float) -> None:
    while (d := t - time.time()) > 0:
        time.sleep(min(d, 1.0))


def farm_layout(n: int, shared_ports: int, seed: int, horizon: tuple[float, float],
                slow: float, hang: float, extra: int = 0
                ) -> tuple[dict[str, Any], list[str], list[int]]:
    """The target farm's spec (target_farm.py) for n targets over `horizon`, the targets'
    URLs, and `extra` more free ports for the caller."""
    own = [i for i in range(n) if has_own_port(i)]
    ports = free_ports(shared_ports + len(own) + extra)
    shared = ports[:shared_ports]
    own_ports = dict(zip(own, ports[shared_ports : shared_ports + len(own)], strict=True))
    urls = [f"http://127.0.0.1:{own_ports.get(i, shared[i % shared_ports])}/t/{i}"
            for i in range(n)]
    spec = {
        "seed": seed,
        "targets": n,
        "t0": horizon[0],
        "t1": horizon[1],
        "slow": slow,
        "hang": hang,
        "shared_ports": shared,
        "own_ports": {str(k): v for k, v in own_ports.items()},
    }
    return spec, urls, ports[shared_ports + len(own):]


def one_run(n: int, a: argparse.Namespace, work: Path, run_no: int) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    now = time.time()
    horizon = (now - 300, now + 900 + a.duration + a.detect + a.warmup)
    spec, urls, (sl_port, bb_port, pr_port, sp_port) = farm_layout(
        n, a.ports, a.seed, horizon, a.slow, a.hang, extra=4)
    (work / "farm.json").write_text(json.dumps(spec))
    slamon_config(work / "slamon.yaml", urls, sl_port, a)
    blackbox_config(work / "blackbox.yml", a)
    prometheus_config(work / "prometheus.yml", urls, bb_port, a)
    slamon_prometheus_config(work / "prometheus-slamon.yml", sl_port, a)
    bare = {"urls": urls, "interval": a.interval, "timeout": a.timeout,
            "slow_threshold": a.slow_threshold}
    (work / "bare.json").write_text(json.dumps(bare))
    (work / "bare-slot.json").write_text(json.dumps(bare | {"slot": auto_slot([a.interval] * n)}))
    res: dict[str, Any] = {
        "targets": n,
        "run": run_no,
        "seed": a.seed,
        "interval": a.interval,
        "timeout": a.timeout,
        "slow_threshold": a.slow_threshold,
        "duration": a.duration,
        "work": str(work),
    }
    res["quiet"] = wait_quiet(a.wait_quiet, a.max_load) if a.wait_quiet > 0 else None
    py = sys.executable
    with contextlib.ExitStack() as stack:
        farm = stack.enter_context(
            child(
                [py, str(HERE / "target_farm.py"), str(work / "farm.json")],
                work / "farm.log",
                stdout=subprocess.PIPE,
            )
        )
        if _readline(farm, 60).strip() != "ready":
            raise RuntimeError("farm did not start")
        sl_argv = [py, "-m", "slamon", "run", "-c", str(work / "slamon.yaml")]
        sl_env = dict(os.environ)
        if a.gc_log or a.gc_freeze:  # same slamon, run through the GC probe wrapper
            sl_argv = [py, str(HERE / "slamon_gc.py"), str(work / "slamon.yaml")]
            sl_env["SLAMON_GC_LOG"] = str(work / "slamon-gc.log")
            if a.gc_freeze:
                sl_env["SLAMON_GC_FREEZE_PORT"] = str(sl_port)
        res["slamon_gc"] = {"log": bool(a.gc_log or a.gc_freeze), "freeze": a.gc_freeze}
        sl = stack.enter_context(child(sl_argv, work / "slamon.log", env=sl_env))
        peer: dict[str, subprocess.Popen[bytes]] = {}
        if a.blackbox:
            peer["blackbox"] = stack.enter_context(child(
                [
                    BLACKBOX,
                    f"--config.file={work / 'blackbox.yml'}",
                    f"--web.listen-address=127.0.0.1:{bb_port}",
                    "--log.level=warn",
                ],
                work / "blackbox.log",
            ))
            peer["prometheus"] = stack.enter_context(child(
                [
                    PROMETHEUS,
                    f"--config.file={work / 'prometheus.yml'}",
                    f"--storage.tsdb.path={work / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{pr_port}",
                    "--log.level=warn",
                    "--storage.tsdb.retention.time=1d",
                ],
                work / "prometheus.log",
            ))
        extra: dict[str, subprocess.Popen[bytes]] = {}
        if a.slamon_scrape_interval > 0:
            extra["slamon_prometheus"] = stack.enter_context(
                child(
                    [
                        PROMETHEUS,
                        f"--config.file={work / 'prometheus-slamon.yml'}",
                        f"--storage.tsdb.path={work / 'tsdb-slamon'}",
                        f"--web.listen-address=127.0.0.1:{sp_port}",
                        "--log.level=warn",
                        "--storage.tsdb.retention.time=1d",
                    ],
                    work / "prometheus-slamon.log",
                )
            )
        # the bare loop as issue 18 defines it, and (--bare-slot) the same in slamon's slots
        for name, wanted in (("bare", a.bare), ("bare-slot", a.bare_slot)):
            if not wanted:
                continue
            key = name.replace("-", "_")
            extra[key] = stack.enter_context(
                child([py, str(HERE / "bare_loop.py"), str(work / f"{name}.json")],
                      work / f"{name}.log", stdout=subprocess.PIPE)
            )
            if not _readline(extra[key], 120).startswith("{"):
                raise RuntimeError(f"{name} loop did not start")
        res["ready_seconds"] = {"slamon": wait_ready(sl_port, sl, a.ready_timeout)}
        if peer:
            res["ready_seconds"] |= {
                "blackbox": wait_http(f"http://127.0.0.1:{bb_port}/-/healthy",
                                      peer["blackbox"], 60, "blackbox"),
                "prometheus": wait_http(f"http://127.0.0.1:{pr_port}/-/ready",
                                        peer["prometheus"], 120, "prometheus"),
            }
        if "slamon_prometheus" in extra:
            res["ready_seconds"]["slamon_prometheus"] = wait_http(
                f"http://127.0.0.1:{sp_port}/-/ready", extra["slamon_prometheus"], 120,
                "slamon's prometheus")
        pids = {"slamon": sl.pid, "farm": farm.pid}
        pids |= {k: p.pid for k, p in (peer | extra).items()}

        def bare_counts(name: str = "bare") -> dict[str, Any]:
            if name not in extra:
                return {}
            os.kill(extra[name].pid, signal.SIGUSR1)
            return dict(json.loads(_readline(extra[name], 30)))

        pre = scrape(sl_port)  # times one scrape, so the one before T0 ends before T0
        res["slamon_scrape_seconds_after_ready"] = pre.seconds
        t0 = math.ceil((time.time() + a.warmup + 3 * pre.seconds) / BLOCK) * BLOCK
        t1 = t0 + a.duration
        periods = list(range(t0 // BLOCK, t1 // BLOCK))
        res["window"] = [t0, t1]
        print(
            f"  N={n} run {run_no}: window {time.strftime('%H:%M:%S', time.localtime(t0))}"
            f" + {a.duration}s",
            flush=True,
        )
        sleep_until(t0 - 2 - 2.5 * pre.seconds)
        s0 = scrape(sl_port)
        res["slamon_scrape_before_t0"] = {
            "seconds": s0.seconds,
            "ended_before_t0": t0 - time.time(),
        }
        sleep_until(t0)
        c0, m0, l0 = cpu_all(pids), system_cpu(), loadavg()
        b0, bs0 = bare_counts(), bare_counts("bare_slot")
        spies = []
        if a.profile or a.profile_native:
            # perturbs the CPU figures: for where the time goes, not for ratios
            profiled = {"slamon": sl.pid}
            if a.profile_native and "bare" in extra:
                profiled["bare"] = extra["bare"].pid
            for name, pid in profiled.items():
                mode = ["--native"] if a.profile_native else ["--nonblocking"]
                spies.append(subprocess.Popen(
                    [py_spy(), "record", "--pid",
                     str(pid), "--duration", str(int(a.duration) - 2), "--rate", "100",
                     *mode, "--format", "raw", "--output", str(work / f"{name}-profile.txt")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if a.stalls:
            spies.append(subprocess.Popen(
                [py_spy(), "record", "--pid", str(sl.pid),
                 "--duration", str(int(a.duration) - 2), "--nonblocking", *STALL_OPTIONS,
                 "--output", str(work / "slamon-stalls.json")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        sleep_until(t1)
        for spy in spies:
            spy.wait(timeout=30)
        c1, m1, l1 = cpu_all(pids), system_cpu(), loadavg()
        b1, bs1 = bare_counts(), bare_counts("bare_slot")
        if b0:
            res["bare"] = {k: b1[k] - b0[k] for k in ("started", "ok", "failed", "skipped")}
        if bs0:
            res["bare_slot"] = {k: bs1[k] - bs0[k] for k in ("started", "ok", "failed", "skipped")}
        hwm = {k: proc_status(p)["VmHWM"] for k, p in pids.items()}
        if a.stalls:
            res["stalls"] = _summarise_stalls(work / "slamon-stalls.json")
        s1 = scrape(sl_port)
        res["load1"] = {"start": l0, "end": l1}
        res["machine_busy_fraction"] = (m1[0] - m0[0]) / max(1e-9, m1[1] - m0[1])
        res["cpu_seconds"] = {k: c1[k] - c0[k] for k in c0}
        res["hwm_bytes"] = hwm
        lag = {le: s1.buckets[le] - s0.buckets.get(le, 0.0) for le in s1.buckets}
        started = (
            s1.values["slamon_scheduler_probes_started_total"]
            - s0.values["slamon_scheduler_probes_started_total"]
        )
        res["slamon_sched"] = {
            "started_between_scrapes": started,
            "missed_between_scrapes": s1.values["slamon_scheduler_missed_total"]
            - s0.values["slamon_scheduler_missed_total"],
            "lag_p50": quantile(0.5, lag),
            "lag_p99": quantile(0.99, lag),
            "lag_over_100ms": lag.get("+Inf", 0) - lag.get("0.1", 0),
            "lag_count": lag.get("+Inf", 0),
            "lag_max_since_start": s1.values["slamon_scheduler_lag_max_seconds"],
        }
        # detection phase
        det = poll_detection(sl_port, pr_port if peer else None, t1 + a.detect,
                             a.slow_threshold)
        res["detection_polls"] = {k: det[k] for k in ("poll_seconds_median", "polls")}
        # collect
        sleep_until(t1 + 6)  # periods close at end + grace (5 s)
        tc = time.monotonic()
        slp = slamon_periods(sl_port, n, periods)
        res["collect_seconds_slamon_api"] = time.monotonic() - tc
        bb_ok, bb_dur, bb_up = (
            prom_samples(pr_port, metric, t0, t1) if peer else {}
            for metric in ("probe_success", "probe_duration_seconds", "up"))
        farm_pid = farm.pid
        for proc in (sl, *peer.values(), *extra.values()):
            proc.terminate()
        for proc in (sl, *peer.values(), *extra.values()):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        del farm_pid
    with contextlib.suppress(OSError):
        pauses = [
            (float(ts), float(ms[:-2]) / 1000)
            for ts, gen, ms, _ in (ln.split() for ln in (work / "slamon-gc.log").open())
            if gen == "gen2"
        ]
        inside = [p for t, p in pauses if res["window"][0] <= t < res["window"][1]]
        res["slamon_gc"]["gen2_in_window"] = summary(inside) | {"total": sum(inside)}
    with contextlib.suppress(OSError):
        res["farm_requests"] = json.loads((work / "farm.stats.json").read_text())
    sched = build(a.seed, n, horizon[0], horizon[1])
    sl_probes = sum(v["valid"] + v.get("no_data", 0) for v in slp.values())
    bb_scrapes = sum(len(v) for v in bb_up.values())
    bb_probes = sum(len(v) for v in bb_ok.values())
    res["probes"] = {
        "slamon": sl_probes,
        "slamon_no_data": sum(v.get("no_data", 0) for v in slp.values()),
        "blackbox_scrapes": bb_scrapes,
        "blackbox_probes": bb_probes,
        "blackbox_failed_scrapes": sum(1 for v in bb_up.values() for x in v.values() if x == 0),
        "expected": n * a.duration / a.interval,
    }
    cpu = res["cpu_seconds"]
    res["cpu_per_1000"] = {
        "slamon": cpu["slamon"] / sl_probes * 1000 if sl_probes else None,
        "blackbox_prometheus": (cpu["blackbox"] + cpu["prometheus"]) / bb_scrapes * 1000
        if bb_scrapes
        else None,
        "blackbox_only": cpu["blackbox"] / bb_scrapes * 1000 if bb_scrapes else None,
        "prometheus_only": cpu["prometheus"] / bb_scrapes * 1000 if bb_scrapes else None,
        "farm": cpu["farm"] / (sl_probes + bb_scrapes) * 1000 if sl_probes + bb_scrapes else None,
    }
    per = res["cpu_per_1000"]
    if "slamon_loop" in cpu and sl_probes:
        per["slamon_loop"] = cpu["slamon_loop"] / sl_probes * 1000
    if "slamon_prometheus" in cpu and sl_probes:
        per["slamon_prometheus_only"] = cpu["slamon_prometheus"] / sl_probes * 1000
        per["slamon_with_prometheus"] = per["slamon"] + per["slamon_prometheus_only"]
    if res.get("bare", {}).get("started"):
        per["bare"] = cpu["bare"] / res["bare"]["started"] * 1000
        ref = per.get("slamon_with_prometheus", per["slamon"])
        res["ratios"] = {
            "slamon_with_prometheus_over_bare": ref / per["bare"],
            "slamon_with_prometheus_over_bbe_prometheus": ref / per["blackbox_prometheus"]
            if per["blackbox_prometheus"] else None,
        }
        if res.get("bare_slot", {}).get("started"):
            per["bare_slot"] = cpu["bare_slot"] / res["bare_slot"]["started"] * 1000
            res["ratios"]["slamon_with_prometheus_over_bare_slot"] = ref / per["bare_slot"]
    # Prometheus scrape timing: spacing of consecutive samples vs the interval
    jit = [
        abs((b - x) - a.interval)
        for v in bb_up.values()
        for x, b in zip(sorted(v), sorted(v)[1:], strict=False)
    ]
    res["prometheus_interval_jitter"] = {
        "p50": pct(jit, 0.5),
        "p99": pct(jit, 0.99),
        "max": max(jit, default=None),
    }
    res["sli"] = analyse_sli(sched, slp, bb_ok, bb_dur, periods, a)
    res["detection"] = analyse_detection(sched, det, t1, t1 + a.detect - a.interval - a.hang, a)
    return res


# ---------------------------------------------------------------- report


def fmt(x: Any, scale: float = 1.0, nd: int = 3) -> str:
    return "-" if x is None else f"{x * scale:.{nd}f}"


def _med(rs: list[dict[str, Any]], *path: Any) -> Any:
    """Median over runs of r[path[0]][path[1]]...; None where missing."""
    vals = []
    for r in rs:
        v: Any = r
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


def report(runs: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    by_n: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_n[r["targets"]].append(r)
    for n, rs in sorted(by_n.items()):

        def m(*path: Any, scale: float = 1.0, nd: int = 3, rs: Any = rs) -> str:
            return fmt(_med(rs, *path), scale, nd)

        hwm_bp = [{"v": r["hwm_bytes"]["blackbox"] + r["hwm_bytes"]["prometheus"]}
                  for r in rs if "blackbox" in r["hwm_bytes"]]
        lines += [
            f"\n## N = {n} targets, interval {rs[0]['interval']:g} s, {len(rs)} run(s), medians",
            f"{'':26}{'slamon':>14}{'bbe+prom':>14}",
            f"{'probes done in window':26}{m('probes', 'slamon', nd=0):>14}"
            f"{m('probes', 'blackbox_scrapes', nd=0):>14}"
            f"   (expected {rs[0]['probes']['expected']:.0f})",
            f"{'CPU-s per 1000 probes':26}{m('cpu_per_1000', 'slamon'):>14}"
            f"{m('cpu_per_1000', 'blackbox_prometheus'):>14}"
            f"   (exporter {m('cpu_per_1000', 'blackbox_only')}"
            f" + prometheus {m('cpu_per_1000', 'prometheus_only')};"
            f" farm {m('cpu_per_1000', 'farm')})",
            f"{'  of it, its loop thread':26}{m('cpu_per_1000', 'slamon_loop'):>14}"
            f"{'':>14}   (the rest: the store's and worker threads)",
            f"{'slamon + its Prometheus':26}{m('cpu_per_1000', 'slamon_with_prometheus'):>14}"
            f"{'':>14}   (its Prometheus {m('cpu_per_1000', 'slamon_prometheus_only')})",
            f"{'bare loop (floor)':26}{m('cpu_per_1000', 'bare'):>14}"
            f"{'':>14}   (slamon + Prometheus / bare"
            f" {m('ratios', 'slamon_with_prometheus_over_bare', nd=2)};"
            f" / bbe+prom {m('ratios', 'slamon_with_prometheus_over_bbe_prometheus', nd=2)})",
            *([f"{'bare loop in slots':26}{m('cpu_per_1000', 'bare_slot'):>14}"
               f"{'':>14}   (slamon + Prometheus / bare in slots"
               f" {m('ratios', 'slamon_with_prometheus_over_bare_slot', nd=2)})"]
              if rs[0].get("bare_slot") else []),
            f"{'peak RSS MB':26}{m('hwm_bytes', 'slamon', scale=1e-6, nd=1):>14}"
            f"{fmt(_med(hwm_bp, 'v'), 1e-6, 1):>14}"
            f"   (exporter {m('hwm_bytes', 'blackbox', scale=1e-6, nd=1)}"
            f" + prometheus {m('hwm_bytes', 'prometheus', scale=1e-6, nd=1)})",
            f"{'sched lag p99 ms':26}{m('slamon_sched', 'lag_p99', scale=1e3, nd=1):>14}"
            f"{m('prometheus_interval_jitter', 'p99', scale=1e3, nd=1):>14}"
            "   (prometheus: p99 |sample spacing - interval|)",
            f"load1 start/end: {[(r['load1']['start'], r['load1']['end']) for r in rs]}",
            "\nSLI |error| vs ground truth, x1e3, mean/p99/max: per 60 s period;"
            " sampling-only; whole window; share of periods within one probe",
            f"{'scenario':10}{'monitor':10}{'period err':>24}{'sampling-only':>24}"
            f"{'window err':>24}{'<=1 probe':>10}",
        ]
        for scen in SCENARIOS:
            for mon, name in (("sl", "slamon"), ("bb", "bbe+prom")):
                cols = [
                    "/".join(
                        m("sli", scen, f"{mon}_{key}", q, scale=1e3, nd=1)
                        for q in ("mean", "p99", "max")
                    )
                    for key in ("period_err", "period_sampling_err", "window_err")
                ]
                w1 = m("sli", scen, f"{mon}_period_within_one_probe", scale=100, nd=1)
                lines.append(
                    f"{scen:10}{name:10}" + "".join(f"{c:>24}" for c in cols) + f"{w1:>9}%"
                )
        lines.append(
            "\nmeasurement error vs the schedule at the monitor's own probe instants"
            " (probes per period, mean/max)"
        )
        for scen in SCENARIOS:
            sl, bb = (
                "/".join(
                    m("sli", scen, f"{mon}_period_meas_err_probes", q, nd=2)
                    for q in ("mean", "max")
                )
                for mon in ("sl", "bb")
            )
            lines.append(f"{scen:10} slamon {sl:>12}   bbe+prom {bb:>12}")
        lines.append(
            "\ndetection latency, s (outage start -> failure visible), mean/p99/max;"
            " wait-for-probe mean; outages seen / not seen"
        )
        for mon in ("slamon", "prometheus"):
            keys = sorted({k for r in rs for k in r["detection"].get(mon, {})},
                          key=lambda k: (len(k), k))
            for key in keys:
                lat = "/".join(
                    m("detection", mon, key, "latency", q, nd=2) for q in ("mean", "p99", "max")
                )
                w = m("detection", mon, key, "wait_for_probe", "mean", nd=2)
                seen = m("detection", mon, key, "latency", "n", nd=0)
                ns = m("detection", mon, key, "not_seen", nd=0)
                lines.append(
                    f"{mon:11}{key:14}{lat:>22}  wait {w:>6}  seen {seen:>5}  not seen {ns}"
                )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="slamon vs blackbox_exporter + Prometheus")
    ap.add_argument("--targets", type=int, nargs="+", default=[1000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=180, help="measured window, multiple of 60 s")
    ap.add_argument("--warmup", type=float, default=20.0, help="at least this long before T0")
    ap.add_argument("--detect", type=float, default=60.0, help="detection phase after the window")
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--slow-threshold", type=float, default=0.5, help="max_response_time, s")
    ap.add_argument("--slow", type=float, default=1.0, help="delay of a slow answer, s")
    ap.add_argument("--hang", type=float, default=5.0, help="how long a hang holds, s")
    ap.add_argument("--ports", type=int, default=20, help="shared farm ports")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--ready-timeout", type=float, default=300.0)
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=600.0,
        help="wait up to this long for no other benchmark and load1 < --max-load (0: don't)",
    )
    ap.add_argument("--max-load", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--gc-log", action="store_true", help="log slamon's gen-2 GC pauses")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy record slamon through the window (slamon-profile.txt)")
    ap.add_argument("--profile-native", action="store_true",
                    help="py-spy --native record slamon and the bare loop through the window "
                         "(slamon-profile.txt, bare-profile.txt; pauses each sample)")
    ap.add_argument("--stalls", action="store_true",
                    help="py-spy at 1 kHz with idle samples through the window: what held "
                         "slamon's event loop > 10 ms (perturbs the CPU figures)")
    ap.add_argument("--slamon-scrape-interval", type=float, default=15.0,
                    help="a second Prometheus scrapes slamon this often, s (0: none)")
    ap.add_argument("--no-bare", dest="bare", action="store_false",
                    help="do not run the bare-loop floor (bare_loop.py)")
    ap.add_argument("--bare-slot", action="store_true",
                    help="also run the bare loop with its probes started in the slots slamon "
                         "picks (scheduler.slot: auto), as a second floor")
    ap.add_argument("--no-blackbox", dest="blackbox", action="store_false",
                    help="do not run blackbox_exporter + Prometheus: slamon, its Prometheus "
                         "and the bare loop alone on the farm, so that a peer which takes "
                         "over a core at 10,000 targets does not crowd the ratio to the "
                         "bare loop (measure the peer in runs of its own)")
    ap.add_argument(
        "--gc-freeze", action="store_true", help="experiment: gc.freeze() slamon after /readyz"
    )
    a = ap.parse_args()
    if a.duration % BLOCK:
        ap.error(f"--duration must be a multiple of {BLOCK}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = RESULTS / f"compare-{stamp}"
    out = a.out or base.with_suffix(".json")
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "argv": sys.argv,
        "python": sys.version.split()[0],
    }
    runs: list[dict[str, Any]] = []
    for n in a.targets:
        for k in range(1, a.runs + 1):
            runs.append(one_run(n, a, base / f"n{n}-r{k}", k))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1, default=str))
    text = report(runs)
    print(text)
    out.with_suffix(".txt").write_text(text + "\n")
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
