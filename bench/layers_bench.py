"""Where slamon's CPU per probe goes, layer by layer, against the bare loop in one run.

On one nginx farm (bench/farm.py), one after the other, each for ``--duration`` seconds
after a warm-up of one interval:

- ``bare``: bench/compare/bare_loop.py (uvloop + asyncio Protocol + httptools, no SLI,
  state or metrics): the floor;
- ``bare-slot``: the same with its probes started in the slots slamon picks
  (``scheduler.slot: auto``) instead of each on its own instant;
- ``sched``: slamon's scheduler and HTTP prober with callbacks that only count
  (``--sched-worker``): the probe path alone;
- ``daemon``: ``slamon run`` with one SLO per target (``--slas``: and one 60 s SLA);
- ``daemon-sla``: the same with one 60 s SLA per target as well, whatever ``--slas``.

Prints CPU-s (utime+stime from /proc) per 1,000 probes for each and its ratio to the
bare loop. Probes counted are those scheduled in the span (every layer probes every
target once per interval). Also the wake-ups per probe: the voluntary context switches
of all the process's threads (each a block in epoll or on a lock, then a wake-up), a
count that, unlike CPU time, the host's speed does not move.

``--callcost module:Qualified.name,...`` measures the CPU per call of those functions
inside the daemon layers as they run (bench/callcost/sitecustomize.py): a call in a
daemon that mostly waits costs several times what it costs in a tight loop.

``--farm compare`` runs the layers on bench/compare's scripted-outage farm instead, with
its config (body marker, 0.5 s response-time limit, 2 s timeout, a quarter of the
targets failing in scripted ways): the farm issue 18's goal 1 is measured on, taken
apart layer by layer.

    python bench/layers_bench.py --targets 2000 --interval 2 --duration 30
    python bench/layers_bench.py --farm compare --targets 1000 --interval 10 --timeout 2 \
        --duration 120 --layers bare,sched,daemon,daemon-sla --together

The compare farm's outages follow a schedule in time, so layers run one after the other
each see another mix of failures; ``--together`` runs them at once over one span, as
bench/compare runs its monitors.

``--baseline TREE`` adds the layers ``sched-base`` and ``daemon-sla-base``: the ``sched``
and ``daemon-sla`` layers run from another slamon tree (a ``git worktree`` of an older
commit), so a change is measured against its parent in the same run:

    git worktree add /tmp/base HEAD~1
    python bench/layers_bench.py --farm compare --targets 1000 --interval 10 --timeout 2 \
        --duration 120 --layers bare,sched,sched-base --together --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from farm import free_ports, nginx_farm, stop_group  # noqa: E402
from probe_bench import proc_cpu, write_config  # noqa: E402

from slamon.scheduler import auto_slot  # noqa: E402


def sched_worker(config: str) -> None:
    """slamon's Scheduler + probers with counting callbacks, on uvloop, until SIGTERM."""
    import uvloop

    from slamon.config.loader import load_config
    from slamon.scheduler import Scheduler

    cfg = load_config(config)
    counts = {"results": 0, "missed": 0}

    def on_result(*_: object) -> None:
        counts["results"] += 1

    def on_missed(*_: object) -> None:
        counts["missed"] += 1

    async def main() -> None:
        sched = Scheduler(cfg.targets, max_concurrency=100_000, on_result=on_result,
                          on_missed=on_missed)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, sched.stop)
        await sched.run()
        print(json.dumps(counts), flush=True)

    uvloop.run(main())


class _CompareFarm:
    def __init__(self, urls: list[str]) -> None:
        self._urls = urls

    def urls(self, n: int) -> list[str]:
        return self._urls[:n]


@contextlib.contextmanager
def compare_farm(args: argparse.Namespace, work: Path) -> Iterator[_CompareFarm]:
    """bench/compare's target farm: the same outage schedule (seed) for every layer."""
    from compare.run import farm_layout

    now = time.time()
    span = len(args.layers.split(",")) * (args.interval + args.settle + args.duration + 15)
    spec, urls, _ = farm_layout(args.targets, 20, args.seed, (now - 300, now + 900 + span),
                                slow=1.0, hang=5.0)
    (work / "farm.json").write_text(json.dumps(spec))
    with (work / "farm.log").open("w") as err:
        proc = subprocess.Popen([sys.executable, str(HERE / "compare" / "target_farm.py"),
                                 str(work / "farm.json")], stdout=subprocess.PIPE,
                                stderr=err, start_new_session=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise SystemExit(f"the compare farm did not start, see {work / 'farm.log'}")
        yield _CompareFarm(urls)
    finally:
        stop_group(proc, grace=10)


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of `pid` so far (threads that ended
    are not counted: the layers keep theirs)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def measure(argvs: dict[str, list[str]], args: argparse.Namespace, work: Path,
            envs: dict[str, dict[str, str]] | None = None) -> dict[str, tuple[float, float]]:
    """(CPU-s per 1,000 probes, wake-ups per probe) of each layer, run at once over the
    same span."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for layer, argv in argvs.items():
            with (work / f"{layer}.log").open("w") as err:
                procs[layer] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err,
                                                start_new_session=True, cwd=work,
                                                env=(envs or {}).get(layer))
        time.sleep(args.interval + args.settle)
        for layer, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"{layer} exited early, see {work / f'{layer}.log'}")
        w0 = {k: wakeups(p.pid) for k, p in procs.items()}
        c0, t0 = {k: proc_cpu(p.pid) for k, p in procs.items()}, time.monotonic()
        time.sleep(args.duration)
        c1, t1 = {k: proc_cpu(p.pid) for k, p in procs.items()}, time.monotonic()
        w1 = {k: wakeups(p.pid) for k, p in procs.items()}
    finally:
        for proc in procs.values():
            stop_group(proc, grace=10)
    probes = args.targets * (t1 - t0) / args.interval
    return {k: ((c1[k] - c0[k]) / probes * 1000, (w1[k] - w0[k]) / probes) for k in procs}


def print_callcost(work: Path, layers: list[str]) -> None:
    """CPU per call of --callcost's functions: the last report less the first (start-up
    left out), per daemon layer."""
    for layer in layers:
        log = work / f"callcost-{layer}.jsonl"
        if not log.exists():
            continue
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        if len(lines) < 2:
            continue
        first, last = lines[0], lines[-1]
        print(f"{layer}: CPU per call over the last {10 * (len(lines) - 1)} s")
        for name, (cpu, calls) in last["calls"].items():
            cpu -= first["calls"][name][0]
            calls -= first["calls"][name][1]
            per = f"{cpu / calls * 1e6:8.1f} us/call" if calls else ""
            print(f"  {name:55s} {cpu * 1e3:8.1f} ms {calls:7d} calls {per}")
        ticks = {t: n - first["threads"].get(t, 0) for t, n in last["threads"].items()}
        print("  threads (CPU ticks):", ", ".join(f"{t} {n}" for t, n in ticks.items() if n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--settle", type=float, default=8.0, help="start-up allowance, s")
    ap.add_argument("--slas", action="store_true", help="one 60 s SLA per SLO in the daemon")
    ap.add_argument("--layers", default="bare,sched,daemon")
    ap.add_argument("--farm", choices=("nginx", "compare"), default="nginx")
    ap.add_argument("--seed", type=int, default=7, help="--farm compare: its outage schedule")
    ap.add_argument("--together", action="store_true",
                    help="run the layers at once over one span (on the compare farm each "
                         "then sees the same outages; they share the two cores)")
    ap.add_argument("--baseline", type=Path, metavar="TREE",
                    help="another slamon tree: the layers sched-base and daemon-sla-base run "
                         "from it")
    ap.add_argument("--callcost", metavar="FUNCS",
                    help="module:Qualified.name,...: the daemon layers' CPU per call of "
                         "these (bench/callcost/sitecustomize.py), over the run")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--sched-worker", metavar="CONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sched_worker:
        sched_worker(args.sched_worker)
        return
    py = sys.executable
    work = args.out / f"layers-{args.farm}-{args.targets}-{int(time.time())}"
    work.mkdir(parents=True)
    # what write_config reads from probe_bench's options
    args.state, args.max_concurrency = True, 0
    with (nginx_farm(20) if args.farm == "nginx" else compare_farm(args, work)) as farm:
        urls = farm.urls(args.targets)
        # each daemon its own port and state file: with --together both run at once
        port, port_sla = free_ports(2)
        cfg, cfg_sla = work / "slamon.yaml", work / "slamon-sla.yaml"
        slow = args.timeout
        if args.farm == "nginx":
            slas = "slas:\n" + "".join(
                f"  - {{id: a{i}, slo: s{i}, period: {{kind: fixed, length: 60s}}, "
                "grace: 5s}\n" for i in range(args.targets))
            write_config(cfg, urls, port, args)
            write_config(cfg_sla, urls, port_sla, args)
            cfg_sla.write_text(cfg_sla.read_text() + slas)
            if args.slas:
                cfg.write_text(cfg.read_text() + slas)
        else:
            from compare.run import slamon_config  # bench/compare's own config

            slow = 0.5
            opts = argparse.Namespace(interval=args.interval, timeout=args.timeout,
                                      slow_threshold=slow)
            slamon_config(cfg_sla, urls, port_sla, opts)
            slamon_config(cfg, urls, port, opts)
            if not args.slas:
                cfg.write_text(cfg.read_text().split("slas:\n")[0])
        spec = work / "spec.json"
        spec.write_text(json.dumps({"urls": urls, "interval": args.interval,
                                    "timeout": args.timeout, "slow_threshold": slow}))
        # the bare loop with its probes started in the slots slamon picks for them
        spec_slot = work / "spec-slot.json"
        spec_slot.write_text(json.dumps({**json.loads(spec.read_text()),
                                         "slot": auto_slot([args.interval] * len(urls))}))
        argvs = {
            "bare": [py, str(HERE / "compare" / "bare_loop.py"), str(spec)],
            "bare-slot": [py, str(HERE / "compare" / "bare_loop.py"), str(spec_slot)],
            "sched": [py, str(Path(__file__).resolve()), "--sched-worker", str(cfg)],
            "daemon": [py, "-m", "slamon", "run", "-c", str(cfg)],
            "daemon-sla": [py, "-m", "slamon", "run", "-c", str(cfg_sla)],
        }
        envs: dict[str, dict[str, str]] = {}
        if args.baseline is not None:
            base = args.baseline.resolve()
            argvs["sched-base"] = [py, str(base / "bench" / "layers_bench.py"),
                                   "--sched-worker", str(cfg)]
            # its own port and state file, so that it runs beside daemon-sla
            cfg_base, port_base = work / "slamon-base.yaml", free_ports(1)[0]
            cfg_base.write_text(cfg_sla.read_text()
                                .replace(f'"127.0.0.1:{port_sla}"', f'"127.0.0.1:{port_base}"')
                                .replace(str(cfg_sla.with_suffix(".sqlite3")),
                                         str(cfg_base.with_suffix(".sqlite3"))))
            argvs["daemon-sla-base"] = [py, "-m", "slamon", "run", "-c", str(cfg_base)]
            for layer in ("sched-base", "daemon-sla-base"):
                envs[layer] = dict(os.environ, PYTHONPATH=str(base))
        if args.callcost:
            for layer in ("daemon", "daemon-sla", "daemon-sla-base"):
                env = envs.get(layer, dict(os.environ))
                envs[layer] = dict(env, BENCH_CALLCOST=args.callcost,
                                   BENCH_CALLCOST_LOG=str(work / f"callcost-{layer}.jsonl"),
                                   PYTHONPATH=os.pathsep.join(
                                       p for p in (str(HERE / "callcost"),
                                                   env.get("PYTHONPATH")) if p))
        layers = args.layers.split(",")
        unknown = [layer for layer in layers if layer not in argvs]
        if unknown:
            raise SystemExit(f"--layers: unknown {', '.join(unknown)} (known: "
                             f"{', '.join(argvs)}; the -base layers need --baseline)")
        got: dict[str, tuple[float, float]] = {}
        if args.together:
            got = measure({layer: argvs[layer] for layer in layers}, args, work, envs)
        else:
            for layer in layers:
                for f in work.glob("slamon*.sqlite3*"):
                    f.unlink()
                got.update(measure({layer: argvs[layer]}, args, work, envs))
        for layer in layers:
            cpu, woken = got[layer]
            ratio = f" ({cpu / got['bare'][0]:.2f}x bare)" if "bare" in got else ""
            print(f"{layer:15s} {cpu:.3f} CPU-s per 1,000 probes{ratio}, "
                  f"{woken:.2f} wake-ups per probe", flush=True)
    if args.callcost:
        print_callcost(work, layers)
    (work / "result.json").write_text(json.dumps(
        {k: {"cpu_per_1000": cpu, "wakeups_per_probe": w} for k, (cpu, w) in got.items()}))


if __name__ == "__main__":
    main()
