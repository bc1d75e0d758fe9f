"""SLA tracker start-up and reload: seconds to build N SLAs (one target, SLO and monthly
SLA each) from a state file, on a first start, on restarts, and on restarts after an edit
of every SLO's objective (each SLA then holds the old policy for its open period).

    python bench/sla_start.py --slas 10000
    python bench/sla_start.py --slas 10000 --src /tmp/old   # slamon imported from there

A reload builds the same runtimes (`SlaTracker.apply_config`) in the event loop, so the
figures are also how long a SIGHUP holds the loop. `reload on a thread` is the CPU of
what a reload read on a thread (a config under 1,000 targets, or when the child failed)
does off the loop for an edit of every SLO: the runtimes and digests (`_prepared`) and
the policy rows the store then writes; the least of five. Loopback only: nothing is
probed.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
import tempfile
import time
from pathlib import Path


def write(path: Path, n: int, objective: str, sla: str = "period: {kind: monthly}") -> None:
    """N targets, each with an SLO of `objective` and an SLA of the fields `sla`."""
    lines = [f'state: {{path: "{path.parent}/state.sqlite3"}}', "targets:"]
    lines += [f'  - {{id: t{i}, kind: http, interval: 10s, timeout: 2s, '
              f'http: {{url: "http://127.0.0.1:9/{i}"}}}}' for i in range(n)]
    lines.append("slos:")
    lines += [f"  - {{id: s{i}, targets: [t{i}], objective: {objective}}}" for i in range(n)]
    lines.append("slas:")
    lines += [f"  - {{id: a{i}, slo: s{i}, {sla}}}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


async def one_start(path: Path) -> float:
    from slamon.config.loader import load_config
    from slamon.sla.tracker import SlaTracker
    from slamon.store.sqlite import StateStore
    from slamon.util.log import get_logger

    config = load_config(path)
    store = StateStore(config.state.resolved_path())
    await store.open()
    restored = await store.load()
    t0 = time.perf_counter()
    tracker = SlaTracker(config, store, get_logger())
    args = [restored.sla_progress, time.time(), restored.sla_schedules]
    if "policies" in inspect.signature(tracker.start).parameters:
        args.append(restored.sla_policies)
    await tracker.start(*args)
    took = time.perf_counter() - t0
    await store.close()
    return took


async def thread_reload(path: Path, n: int) -> float:
    from slamon.config.loader import load_config
    from slamon.sla.tracker import SlaTracker, _policy_rows
    from slamon.store.sqlite import StateStore
    from slamon.util.log import get_logger

    config = load_config(path)
    store = StateStore(config.state.resolved_path())
    await store.open()
    restored = await store.load()
    tracker = SlaTracker(config, store, get_logger())
    await tracker.start(restored.sla_progress, time.time(), restored.sla_schedules,
                        restored.sla_policies)
    write(path, n, "0.97")
    edited = load_config(path)
    progress, held = tracker._snapshot()
    took = []
    for _ in range(5):
        t0 = time.process_time()
        built = tracker._prepared(edited, progress, held, time.time()).built
        _policy_rows([(sid, built.slas[sid].policies) for sid in built.dirty])
        took.append(time.process_time() - t0)
    await store.close()
    return min(took)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slas", type=int, default=10000)
    parser.add_argument("--src", help="import slamon from this checkout")
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    work = Path(tempfile.mkdtemp(prefix="sla-start-"))
    path = work / "slamon.yaml"
    write(path, args.slas, "0.99")
    print(f"{args.slas} SLAs, slamon from {args.src or 'this checkout'}")
    print(f"first start          {await one_start(path):6.2f} s")
    for _ in range(2):
        print(f"restart              {await one_start(path):6.2f} s")
    write(path, args.slas, "0.98")
    for _ in range(2):
        print(f"restart after edit   {await one_start(path):6.2f} s")
    print(f"reload on a thread   {await thread_reload(path, args.slas):6.2f} s CPU")


if __name__ == "__main__":
    asyncio.run(main())
