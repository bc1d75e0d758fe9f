"""Where slamon's CPU per probe goes, layer by layer, against the bare loop in one run.

On one nginx farm (bench/farm.py), one after the other, each for ``--duration`` seconds
after a warm-up of one interval:

- ``bare``: bench/compare/bare_loop.py (uvloop + asyncio Protocol + httptools, no SLI,
  state or metrics): the floor;
- ``sched``: slamon's scheduler and HTTP prober with callbacks that only count
  (``--sched-worker``): the probe path alone;
- ``daemon``: ``slamon run`` with one SLO per target (``--slas``: and one 60 s SLA).

Prints CPU-s (utime+stime from /proc) per 1,000 probes for each and its ratio to the
bare loop. Probes counted are those scheduled in the span (every layer probes every
target once per interval).

    python bench/layers_bench.py --targets 2000 --interval 2 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from farm import free_ports, nginx_farm, stop_group  # noqa: E402
from probe_bench import proc_cpu, write_config  # noqa: E402


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


def measure(argv: list[str], args: argparse.Namespace, log: Path) -> float:
    with log.open("w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, cwd=log.parent)
    try:
        time.sleep(args.interval + args.settle)
        if proc.poll() is not None:
            raise SystemExit(f"{argv[1]} exited early, see {log}")
        c0, t0 = proc_cpu(proc.pid), time.monotonic()
        time.sleep(args.duration)
        c1, t1 = proc_cpu(proc.pid), time.monotonic()
    finally:
        stop_group(proc, grace=10)
    probes = args.targets * (t1 - t0) / args.interval
    return (c1 - c0) / probes * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--settle", type=float, default=8.0, help="start-up allowance, s")
    ap.add_argument("--slas", action="store_true", help="one 60 s SLA per SLO in the daemon")
    ap.add_argument("--layers", default="bare,sched,daemon")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--sched-worker", metavar="CONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sched_worker:
        sched_worker(args.sched_worker)
        return
    work = args.out / f"layers-{args.targets}-{int(time.time())}"
    work.mkdir(parents=True)
    # what write_config reads from probe_bench's options
    args.state, args.max_concurrency = True, 0
    py = sys.executable
    with nginx_farm(20) as farm:
        urls = farm.urls(args.targets)
        cfg = work / "slamon.yaml"
        write_config(cfg, urls, free_ports(1)[0], args)
        if args.slas:
            with cfg.open("a") as f:
                f.write("slas:\n" + "".join(
                    f"  - {{id: a{i}, slo: s{i}, period: {{kind: fixed, length: 60s}}, "
                    "grace: 5s}\n" for i in range(args.targets)))
        spec = work / "spec.json"
        spec.write_text(json.dumps({"urls": urls, "interval": args.interval,
                                    "timeout": args.timeout, "slow_threshold": args.timeout}))
        argvs = {
            "bare": [py, str(HERE / "compare" / "bare_loop.py"), str(spec)],
            "sched": [py, str(Path(__file__).resolve()), "--sched-worker", str(cfg)],
            "daemon": [py, "-m", "slamon", "run", "-c", str(cfg)],
        }
        got: dict[str, float] = {}
        for layer in args.layers.split(","):
            for f in work.glob("slamon.sqlite3*"):
                f.unlink()
            got[layer] = measure(argvs[layer], args, work / f"{layer}.log")
            ratio = f" ({got[layer] / got['bare']:.2f}x bare)" if "bare" in got else ""
            print(f"{layer:7s} {got[layer]:.3f} CPU-s per 1,000 probes{ratio}", flush=True)
    (work / "result.json").write_text(json.dumps(got))


if __name__ == "__main__":
    main()
