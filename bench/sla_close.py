"""What closing N SLA periods at one instant costs and how long it holds the event loop.

Every SLA of a kind ends its period at the same instant: with N one-minute SLAs,
N periods close together each minute (monthly ones: at each month's end). This builds
N SLAs (one target, SLO and SLA each; a period of `--leaves` leaves, 6: one minute at a
leaf every 10 s; 720: as many leaves as a month has at its default 1 h), then closes their
period with a timer due every millisecond on the same loop, as probes would be: how late
the latest one fires is how late a probe due meanwhile would start (goal: none more than
10 ms late). It prints the close's wall time and CPU, the latest timer and the timers'
99th percentile; the least of `--runs` closes, each of a fresh state file. With
`--periods K` each run closes K periods of every SLA one after the other and measures
the last: a daemon's runtimes keep what one close makes for the next (the policy's
text), which the first close of a run has to make.

    python bench/sla_close.py --slas 10000
    python bench/sla_close.py --slas 10000 --periods 2   # the close of a running daemon
    python bench/sla_close.py --slas 10000 --src /tmp/old   # slamon imported from there

Loopback only: nothing is probed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from sla_start import write

#: the periods' start: a whole minute well in the past
P = 29_000_000
RES = 10
#: the ticker's timer, s
TICK = 0.001


async def one_close(work: Path, n: int, leaves: int, periods: int) -> dict[str, float]:
    from slamon.app.runtime import settle_heap
    from slamon.config.loader import load_config
    from slamon.sla.tracker import SlaTracker
    from slamon.store.sqlite import StateStore
    from slamon.util.log import get_logger

    work.mkdir()
    path = work / "slamon.yaml"
    write(path, n, "0.99", f"period: {{kind: fixed, length: {leaves * RES}s}}, "
          f"evidence_resolution: {RES}s, grace: 1s")
    config = load_config(path)
    store = StateStore(config.state.resolved_path())
    await store.open()
    tracker = SlaTracker(config, store, get_logger())
    length = leaves * RES
    await tracker.start({}, start_at=P * length + 1)
    for i in range(n):
        for b in range(P * length, (P + periods) * length, RES):
            store.add_leaf(f"a{i}", f"t{i}", b, int((i + b) % 7 != 0), 1, 0)
    await store.flush()
    for k in range(1, periods):  # the closes before the measured one
        if len(await tracker.close_due(now=(P + k) * length + 5)) != n:
            raise SystemExit(f"period {k} of {periods} did not close for every SLA")
    end = (P + periods) * length
    settle_heap()  # the collector as the daemon runs it: the state built so far frozen
    late: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        # a timer every millisecond, as probes due: how late each fires
        for _ in range(10_000_000):  # bounded; ends with the close
            if done.is_set():
                return
            due = time.perf_counter() + TICK
            await asyncio.sleep(TICK)
            late.append(max(0.0, time.perf_counter() - due))

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    wall, cpu = time.perf_counter(), time.process_time()
    closed = await tracker.close_due(now=end + 5)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done.set()
    await ticking
    await store.close()
    if len(closed) != n:
        raise SystemExit(f"closed {len(closed)} periods, not {n}")
    late.sort()
    return {"wall": wall, "cpu": cpu, "longest": late[-1],
            "p99": late[min(len(late) - 1, int(0.99 * len(late)))], "timers": len(late)}


async def closes(n: int, leaves: int, periods: int, count: int) -> list[dict[str, float]]:
    from slamon.app.runtime import loop_first

    root = Path(tempfile.mkdtemp(prefix="sla-close-"))
    with loop_first():  # the GIL's switch interval the daemon runs with
        return [await one_close(root / f"r{k}", n, leaves, periods) for k in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slas", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--leaves", type=int, default=6,
                        help="evidence leaves a period (of 10 s each): 6 is a one-minute "
                             "period; 720 as many as a month has at its default 1 h")
    parser.add_argument("--periods", type=int, default=1,
                        help="close this many periods of every SLA in turn; measure the last")
    parser.add_argument("--src", help="import slamon from this checkout")
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    from slamon.app.runtime import run
    from slamon.util.log import configure_logging

    configure_logging("warning")  # a line per closed period is not what is measured
    if args.periods < 1:
        parser.error("--periods must be at least 1")
    # the daemon's loop (uvloop)
    runs = run(lambda: closes(args.slas, args.leaves, args.periods, args.runs))
    best = {key: min(r[key] for r in runs) for key in runs[0]}
    which = "" if args.periods == 1 else f" (the last of {args.periods} in turn)"
    print(f"{args.slas} SLAs closing a period of {args.leaves} leaves together{which}, slamon "
          f"from {args.src or 'this checkout'}; least of {args.runs}")
    print(f"close, wall            {best['wall']:8.3f} s")
    print(f"close, CPU             {best['cpu']:8.3f} s"
          f"   ({best['cpu'] / args.slas * 1e6:.0f} us a period)")
    print(f"latest 1 ms timer      {best['longest'] * 1e3:8.1f} ms late")
    print(f"p99 of the timers      {best['p99'] * 1e3:8.1f} ms late   "
          f"({best['timers']:.0f} timers)")


if __name__ == "__main__":
    main()
