"""Run slamon (``python -m slamon run -c CFG``) with a GC probe, for experiments.

``python bench/compare/slamon_gc.py CFG`` behaves like ``python -m slamon run -c CFG``,
plus, from the environment:

* ``SLAMON_GC_LOG=path``: append one line per collection of generation 2 (and any
  collection over 20 ms): unix time, generation, duration, objects collected;
* ``SLAMON_GC_FREEZE_PORT=port``: once ``/readyz`` answers on that port, ``gc.collect()``
  then ``gc.freeze()``: every object alive after start-up (config, windows, periods)
  moves to the permanent generation and is never scanned again. This is the
  experiment behind the ``gc.freeze()`` patch proposed in docs/benchmarks.md;
* ``SLAMON_GC_CENSUS=path``: every 15 s, append the number of objects the collector
  tracks outside the frozen set, and the 12 most common types among them (finds what
  makes full collections slow).

slamon itself is not modified.
"""

from __future__ import annotations

import contextlib
import gc
import os
import runpy
import sys
import threading
import time
import urllib.request


def _gc_log(path: str) -> None:
    log = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    started: list[float] = [0.0]

    def cb(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        if info["generation"] == 2 or took > 0.02:
            log.write(
                f"{time.time():.3f} gen{info['generation']} {took * 1000:.1f}ms "
                f"collected={info['collected']}\n"
            )

    gc.callbacks.append(cb)


def _freeze_when_ready(port: int) -> None:
    url = f"http://127.0.0.1:{port}/readyz"
    for _ in range(6000):  # bounded: 10 min
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                break
        time.sleep(0.1)
    else:
        return
    t = time.perf_counter()
    gc.collect()
    gc.freeze()
    print(
        f"slamon_gc: froze {gc.get_freeze_count()} objects in {time.perf_counter() - t:.2f}s",
        file=sys.stderr,
        flush=True,
    )


def _census(path: str) -> None:
    """What the collector walks: counts by type, the biggest containers, list owners."""
    from collections import Counter

    log = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    for _ in range(2400):  # bounded: 10 h
        time.sleep(15)
        objs = gc.get_objects()
        kinds = Counter(type(o).__qualname__ for o in objs)
        lists = [o for o in objs if type(o) is list]
        sample = lists[:: max(1, len(lists) // 300)]
        mine = (objs, lists, sample)
        owners: Counter[str] = Counter()
        for lst in sample:
            for r in gc.get_referrers(lst):
                if not any(r is m for m in mine):
                    owners[f"{type(r).__qualname__}/{len(lst)}"] += 1
        big = sorted(
            ((len(gc.get_referents(o)), type(o).__qualname__) for o in objs), reverse=True
        )[:5]
        stats = [st["collections"] for st in gc.get_stats()]
        tracked, top = len(objs), kinds.most_common(12)
        del objs, kinds, lists, sample, mine
        t = time.perf_counter()
        gc.collect()
        full = (time.perf_counter() - t) * 1000
        log.write(
            f"{time.time():.3f} collections={stats} tracked={tracked} "
            f"frozen={gc.get_freeze_count()} full={full:.1f}ms big={big} "
            f"list_owners={owners.most_common(8)} top={top}\n"
        )


def main() -> None:
    if path := os.environ.get("SLAMON_GC_LOG"):
        _gc_log(path)
    if port := os.environ.get("SLAMON_GC_FREEZE_PORT"):
        threading.Thread(target=_freeze_when_ready, args=(int(port),), daemon=True).start()
    if path := os.environ.get("SLAMON_GC_CENSUS"):
        threading.Thread(target=_census, args=(path,), daemon=True).start()
    sys.argv = ["slamon", "run", "-c", sys.argv[1]]
    runpy.run_module("slamon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
