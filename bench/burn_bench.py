"""CPU of the burn-rate check per second, in process, over a simulated fleet.

N single-target SLOs (default alert windows), each target probed every 10 s (a tenth of
them each second); a quarter of the targets fail half their probes, so their SLOs burn.
Each simulated second the live state records that second's results, then `BurnWatch.check`
runs; the CPU of the checks over the second half of the span is averaged. No sockets, no
event loop: only the check's own work.

    python bench/burn_bench.py --slos 1000 --seconds 600

Run the same command on another tree (``PYTHONPATH=/path/to/tree``) to compare.
"""

from __future__ import annotations

import argparse
import random
import time

from slamon.config.root import Config
from slamon.notify import BurnWatch
from slamon.probers.base import ProbeResult
from slamon.sli.live import LiveState


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slos", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    n = a.slos
    config = Config.model_validate({
        "targets": [{"id": f"t{i}", "kind": "http", "interval": "10s", "timeout": "2s",
                     "http": {"url": "http://127.0.0.1:9/"}} for i in range(n)],
        "slos": [{"id": f"s{i}", "targets": [f"t{i}"], "objective": 0.99, "window": "30d"}
                 for i in range(n)],
    })
    live, watch, rnd = LiveState(config), BurnWatch(), random.Random(a.seed)
    targets = [config.target(f"t{i}") for i in range(n)]
    now = 1_780_000_000.0
    spent, checks, events = 0.0, 0, 0
    for second in range(a.seconds):
        for i in range(second % 10, n, 10):
            ok = not (i % 4 == 0 and rnd.random() < 0.5)
            live.record(targets[i], now, ProbeResult(ok, 0.01))
        live.advance(now)
        t = time.process_time()
        events += len(watch.check(live, now))
        if second >= a.seconds // 2:
            spent += time.process_time() - t
            checks += 1
        now += 1
    print(f"{n} SLOs: burn check {spent / checks * 1e3:.2f} ms of CPU per second "
          f"({events} events over {a.seconds} s)")


if __name__ == "__main__":
    main()
