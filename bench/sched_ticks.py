"""CPU and wake-ups per tick of slamon's scheduler, against a task per target that sleeps.

In process, no sockets: N targets on one interval, each tick a prober that returns after
one turn of the loop (as a probe's I/O would suspend it once). The floor is what the bare
loop of bench/compare does: a task per target, `asyncio.sleep` to its tick, the same
prober under `asyncio.timeout`. Over the span after a warm-up of two intervals: CPU per
tick (getrusage) and voluntary context switches per tick (each a block in epoll, then a
wake-up: on an otherwise idle loop a wake-up costs about as much CPU as a probe's
Python). Both run on uvloop, one after the other in fresh processes.

    python bench/sched_ticks.py --targets 1000 --interval 10 --span 20

Run it with ``PYTHONPATH=/path/to/tree`` to measure another tree's scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
from pathlib import Path


def _usage() -> tuple[float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nvcsw


def _worker(kind: str, targets: int, interval: float, span: float) -> dict[str, float]:
    import uvloop

    from slamon.config.targets import Target
    from slamon.probers.base import ProbeResult
    from slamon.scheduler import Scheduler

    result = ProbeResult(ok=True, duration=0.0)
    timeout = min(interval / 2, 1.0)
    ticks = 0

    async def prober(target: object, timeout: float) -> ProbeResult:
        await asyncio.sleep(0)
        return result

    async def measure() -> tuple[float, int, int]:
        await asyncio.sleep(2 * interval)
        (c0, w0), n0 = _usage(), ticks
        await asyncio.sleep(span)
        (c1, w1), n1 = _usage(), ticks
        return c1 - c0, w1 - w0, n1 - n0

    async def with_scheduler() -> tuple[float, int, int]:
        def counted(*_: object) -> None:
            nonlocal ticks
            ticks += 1

        config = [Target.model_validate({
            "id": f"t{i}", "kind": "http", "interval": f"{interval}s",
            "timeout": f"{timeout}s",
            "http": {"url": f"http://127.0.0.1:9/{i}"}}) for i in range(targets)]
        sched = Scheduler(config, max_concurrency=100_000, on_result=counted,
                          on_missed=counted, prober_for=lambda kind: prober)
        task = asyncio.create_task(sched.run())
        try:
            return await measure()
        finally:
            sched.stop()
            await task

    async def task_per_target() -> tuple[float, int, int]:
        loop = asyncio.get_running_loop()

        async def one(due: float) -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(max(0.0, due - loop.time()))
                async with asyncio.timeout(timeout):
                    await prober(None, timeout)
                ticks += 1
                due += interval

        start = loop.time() + 0.1
        tasks = [asyncio.create_task(one(start + interval * i / targets))
                 for i in range(targets)]
        try:
            return await measure()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    cpu, woken, n = uvloop.run(with_scheduler() if kind == "sched" else task_per_target())
    return {"us_per_tick": cpu / n * 1e6, "wakeups_per_tick": woken / n, "ticks": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--span", type=float, default=20.0, help="measured seconds")
    ap.add_argument("--rounds", type=int, default=2, help="alternated pairs")
    ap.add_argument("--worker", choices=("sched", "floor"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.targets < 1 or a.interval <= 0 or a.span <= 0 or a.rounds < 1:
        raise SystemExit("--targets, --interval, --span and --rounds must be positive")
    if a.worker:
        print(json.dumps(_worker(a.worker, a.targets, a.interval, a.span)))
        return
    got: dict[str, list[dict[str, float]]] = {"floor": [], "sched": []}
    for _ in range(a.rounds):
        for kind in got:
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--worker", kind,
                 "--targets", str(a.targets), "--interval", str(a.interval),
                 "--span", str(a.span)], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"the {kind} worker failed:\n{out.stderr.strip()}")
            got[kind].append(json.loads(out.stdout))
    lowest = {kind: min(r["us_per_tick"] for r in runs) for kind, runs in got.items()}
    for kind, runs in got.items():
        woken = min(r["wakeups_per_tick"] for r in runs)
        name = "scheduler" if kind == "sched" else "task per target"
        print(f"{name:16s} {lowest[kind]:7.1f} us of CPU per tick (lowest of {len(runs)}), "
              f"{woken:.2f} wake-ups per tick")
    print(f"scheduler / task per target: {lowest['sched'] / lowest['floor']:.2f}x")


if __name__ == "__main__":
    main()
