"""Daemon start-up: time and CPU from `slamon run` to `/readyz`, first start and restarts.

N http targets (refused on 127.0.0.x:9, so probing costs next to nothing), one SLO each;
the first run starts without a state file, the next ones with the file the previous run
left (SIGTERM, clean stop, after running `--run-for` seconds past /readyz so that the
windows hold probe results). Wall time to the first 200 from /readyz and the process's CPU
(utime + stime from /proc) at that moment.

    python bench/startup.py --targets 10000 --runs 4
    python bench/startup.py --targets 10000 --runs 3 --slas   # and an SLA per SLO
    python bench/startup.py --targets 10000 --runs 2 --profile /tmp/startup.prof
    python bench/startup.py --targets 10000 --runs 2 --slas --reloads 3

`--reloads K` sends K SIGHUPs to the last run once its probes have run one interval,
alternating an edit of every SLO's objective and its undoing, and prints per reload the
seconds from the signal to the `reloaded` log line and how many probes started more than
10 / 50 / 250 ms late meanwhile (slamon's `slamon_scheduler_lag_seconds`), next to the same
span of the same run without a reload: what a SIGHUP holds the event loop for.
`--reload-span S` adds, per reload, the daemon's CPU (its own, not the reading child's)
and the late probes over S seconds from the SIGHUP, the writes after `reloaded`
included, next to the S seconds just before it.

`--stalls MS` logs every stretch over MS milliseconds in which the daemon's event loop
did not get to a callback posted to it, with samples of what each thread ran meanwhile
(`bench/stallsite/sitecustomize.py` on the child's PYTHONPATH), to `stalls.log` in the
work dir, and prints how many there were and the longest, per run.

`--against TREE --pairs K` then compares restarts of this checkout and of TREE (another
checkout, e.g. a `git worktree` of an older commit) on the same state: the state file the
runs above left is saved, and before each of 2K restarts, alternated (ABBA), put back
as it was; each restart is stopped at /readyz. Prints each, the medians and their ratio:
the host's speed drifts between runs, so the figure to trust is this alternated ratio.

    python bench/startup.py --runs 2 --run-for 10 --slas --against /tmp/old --pairs 8

`--profile FILE` runs the last start under cProfile (stopped right after /readyz) and
prints its top 15 functions by cumulative time (the wall figures of that run are then
cProfile's, not slamon's).
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kinds_bench import cpu_seconds, free_port  # the same /proc and port helpers


def write_config(work: Path, n: int, port: int, slas: bool = False,
                 objective: str = "0.99", level: str = "warning") -> Path:
    lines = [f'server: {{listen: "127.0.0.1:{port}"}}', f"logging: {{level: {level}}}",
             f'state: {{path: "{work}/state.sqlite3"}}', "targets:"]
    lines += [f'  - {{id: t{i}, kind: http, interval: 10s, timeout: 2s, '
              f'http: {{url: "http://127.0.0.{1 + i % 250}:9/"}}}}' for i in range(n)]
    lines.append("slos:")
    lines += [f"  - {{id: s{i}, targets: [t{i}], objective: {objective}}}" for i in range(n)]
    if slas:
        lines.append("slas:")
        lines += [f"  - {{id: a{i}, slo: s{i}, period: {{kind: monthly}}}}" for i in range(n)]
    cfg = work / "slamon.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


#: the lag buckets the reload figures count probes above (seconds)
LATE = ("0.01", "0.05", "0.25")


def lag_buckets(port: int) -> dict[str, float]:
    """slamon_scheduler_lag_seconds_bucket by `le`, from one scrape of /metrics."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as resp:
        for raw in resp:
            if raw.startswith(b"slamon_scheduler_lag_seconds_bucket{"):
                line = raw.decode()
                le = line.split('le="', 1)[1].split('"', 1)[0]
                out[le] = float(line.rsplit(" ", 1)[1])
    return out


def late_counts(before: dict[str, float], after: dict[str, float]) -> list[int]:
    """Probes that started more than each of LATE late between two scrapes."""
    total = after["+Inf"] - before["+Inf"]
    return [int(total - (after[le] - before[le])) for le in LATE]


def wait_logged(log: Path, offset: int, event: str, timeout: float = 120.0) -> float:
    """Monotonic time at which `event` first appears in `log` past `offset`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log.open("rb") as f:
            f.seek(offset)
            if event.encode() in f.read():
                return time.monotonic()
        time.sleep(0.005)
    raise RuntimeError(f"no {event!r} in {log} within {timeout} s")


def reloads(proc: subprocess.Popen[bytes], work: Path, n: int, port: int, slas: bool,
            count: int, log: Path, span: float) -> None:
    """SIGHUP `count` times (see the module docstring); prints a line per reload."""
    time.sleep(12.0)  # one 10 s interval: every target has probed, the windows are warm
    for k in range(count):
        objective = "0.995" if k % 2 == 0 else "0.99"
        write_config(work, n, port, slas, objective=objective, level="info")
        quiet0 = lag_buckets(port)
        time.sleep(3.0)
        quiet1 = lag_buckets(port)
        if span:
            quiet_cpu = cpu_seconds(proc.pid)
            time.sleep(span)
            before, cpu0 = lag_buckets(port), cpu_seconds(proc.pid)
            quiet_span = late_counts(quiet1, before)
            quiet_cpu = cpu0 - quiet_cpu
        offset = log.stat().st_size
        t0, wall0 = time.monotonic(), time.time()
        proc.send_signal(signal.SIGHUP)
        took = wait_logged(log, offset, '"reloaded"') - t0
        time.sleep(max(0.0, 3.0 - took))
        after = lag_buckets(port)
        late = late_counts(before if span else quiet1, after)
        quiet = late_counts(quiet0, quiet1)
        print(f"reload {k + 1} (objective {objective}): {took:5.2f} s to 'reloaded'; probes "
              f"late > {'/'.join(str(int(float(le) * 1000)) for le in LATE)} ms over the "
              f"{max(3.0, took):.1f} s from the SIGHUP: {'/'.join(map(str, late))} "
              f"(3 s without a reload: {'/'.join(map(str, quiet))})", flush=True)
        if span:
            # the whole reload, the writes that follow `reloaded` included
            time.sleep(max(0.0, span - (time.monotonic() - t0)))
            whole = late_counts(before, lag_buckets(port))
            cpu = cpu_seconds(proc.pid) - cpu0
            print(f"    over {span:.0f} s from the SIGHUP: daemon CPU {cpu:5.2f} s, late "
                  f"{'/'.join(map(str, whole))}; the {span:.0f} s before it: CPU "
                  f"{quiet_cpu:5.2f} s, late {'/'.join(map(str, quiet_span))}", flush=True)
        stall_log = work / "stalls.log"
        if stall_log.exists():
            print(f"    event loop stalls from the SIGHUP on: "
                  f"{stall_summary(stall_log, since=wall0)}", flush=True)


def stall_summary(log: Path, offset: int = 0, since: float = 0.0) -> str:
    """How many stalls `--stalls` logged past byte `offset` at or after unix time
    `since`, and the longest, in words."""
    if not log.exists():
        return "no stall logged"
    with log.open() as f:
        f.seek(offset)
        ms = [float(ms_text) for kind, at, ms_text, *_ in
              (line.split() for line in f if line.startswith("STALL "))
              if float(at) >= since]
    if not ms:
        return "no stall logged"
    return f"{len(ms)} stalls logged, longest {max(ms):.0f} ms (details: {log})"


def one_start(cfg: Path, port: int, log: Path, profile: str | None,
              run_for: float, while_ready: Callable[[subprocess.Popen[bytes]], None] | None = None,
              stalls: float = 0.0, tree: str | None = None) -> tuple[float, float]:
    """Start slamon (imported from `tree` if given), wait for /readyz, run `run_for`
    seconds (or `while_ready`), stop it; (seconds to /readyz, its CPU then)."""
    argv = [sys.executable]
    if profile:
        argv += ["-m", "cProfile", "-o", profile]
    argv += ["-m", "slamon", "run", "-c", str(cfg)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLAMON_")}
    if stalls:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parent / "stallsite"),
                        env.get("PYTHONPATH", "")) if p)
        env["BENCH_STALL_LOG"] = str(log.parent / "stalls.log")
        env["BENCH_STALL_MS"] = str(stalls)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, env.get("PYTHONPATH", "")) if p)
    with log.open("ab") as out:
        t0 = time.monotonic()
        # from the work dir: `-m slamon` from a checkout's root would import that checkout
        proc = subprocess.Popen(argv, stdout=out, stderr=out, env=env, cwd=log.parent)
    try:
        deadline = t0 + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"slamon exited with {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        ready = time.monotonic() - t0, cpu_seconds(proc.pid)
                        if while_ready is not None:
                            while_ready(proc)
                        elif not profile:
                            time.sleep(run_for)
                        return ready
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"not ready within 120 s; see {log}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=4, help="first start + restarts")
    ap.add_argument("--slas", action="store_true", help="a monthly SLA per SLO too")
    ap.add_argument("--profile", help="cProfile output of the last start")
    ap.add_argument("--reloads", type=int, default=0,
                    help="SIGHUPs sent to the last run, each timed (see above)")
    ap.add_argument("--reload-span", type=float, default=0.0,
                    help="also count late probes and the daemon's CPU (not the reload's "
                         "child) over this many seconds from each SIGHUP and the same span "
                         "just before it")
    ap.add_argument("--stalls", type=float, default=0.0, metavar="MS",
                    help="log the event loop's stalls over MS ms, with what ran (see above)")
    ap.add_argument("--run-for", type=float, default=30.0,
                    help="seconds each run keeps probing after /readyz before it is stopped")
    ap.add_argument("--against", metavar="TREE",
                    help="then compare restarts with another checkout (see above)")
    ap.add_argument("--pairs", type=int, default=6, help="restarts of each, with --against")
    args = ap.parse_args()
    if args.against and not (Path(args.against) / "slamon" / "__init__.py").is_file():
        ap.error(f"--against {args.against}: not a slamon checkout (no slamon/__init__.py)")
    work = Path(tempfile.mkdtemp(prefix="startup-"))
    port = free_port()
    # the reloads find their end in the `reloaded` line, logged at info
    cfg = write_config(work, args.targets, port, args.slas,
                       level="info" if args.reloads else "warning")
    print(f"{args.targets} targets{' with an SLA each' if args.slas else ''}, work dir {work}")
    for i in range(args.runs):
        last = i == args.runs - 1
        profile = args.profile if last else None
        hook = None
        if last and args.reloads:
            def hook(proc: subprocess.Popen[bytes]) -> None:
                reloads(proc, work, args.targets, port, args.slas, args.reloads,
                        work / "slamon.log", args.reload_span)
        stall_log = work / "stalls.log"
        seen = stall_log.stat().st_size if stall_log.exists() else 0
        wall, cpu = one_start(cfg, port, work / "slamon.log", profile, args.run_for, hook,
                              args.stalls)
        state = work / "state.sqlite3"
        size = state.stat().st_size / 1e6 if state.exists() else 0.0
        kind = "first start" if i == 0 else "restart"
        note = " (under cProfile)" if profile else ""
        print(f"run {i + 1} {kind:<11} to /readyz {wall:6.2f} s   CPU {cpu:6.2f} s   "
              f"state file after {size:5.1f} MB{note}", flush=True)
        if args.stalls:
            print("    " + stall_summary(stall_log, seen), flush=True)
    if args.profile:
        stats = pstats.Stats(args.profile)
        stats.sort_stats("cumulative").print_stats(15)
    if args.against:
        against(work, cfg, port, args.against, args.pairs)


def against(work: Path, cfg: Path, port: int, other: str, pairs: int) -> None:
    """Alternated restarts of this checkout and `other` on copies of one state file."""
    state = work / "state.sqlite3"
    saved = work / "state.saved"
    shutil.copyfile(state, saved)
    here = str(Path(__file__).resolve().parents[1])
    trees = {"this": here, "other": other}
    got: dict[str, list[tuple[float, float]]] = {"this": [], "other": []}
    for k in range(2 * pairs):
        name = ("this", "other", "other", "this")[k % 4]
        for suffix in ("", "-wal", "-shm"):
            Path(f"{state}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(saved, state)
        wall, cpu = one_start(cfg, port, work / "slamon.log", None, 0.0, tree=trees[name])
        got[name].append((wall, cpu))
        print(f"restart {k + 1:2d} {name:<5} to /readyz {wall:6.2f} s   CPU {cpu:6.2f} s",
              flush=True)
    med = {name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
           for name, runs in got.items()}
    for name, (wall, cpu) in med.items():
        print(f"median {name:<5} ({trees[name]}): {wall:.2f} s to /readyz, CPU {cpu:.2f} s")
    print(f"this / other: {med['this'][0] / med['other'][0]:.2f}x to /readyz, "
          f"{med['this'][1] / med['other'][1]:.2f}x CPU")


if __name__ == "__main__":
    main()
