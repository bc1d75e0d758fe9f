"""CPU per call of chosen functions inside a running daemon, imported by a slamon child
whose PYTHONPATH starts with this directory (`bench/layers_bench.py --callcost`);
nothing else imports it.

BENCH_CALLCOST names the functions, `module:Qualified.name` separated by commas. Each is
wrapped to add the thread's CPU time (CLOCK_THREAD_CPUTIME_ID: another thread holding
the GIL, or the host's other work, is not counted) and the call count. Every 10 s a
JSON line `{"pid": ..., "argv": ..., "calls": {name: [cpu_s, calls]}, "threads":
{tid/name: ticks}}` is appended to BENCH_CALLCOST_LOG. Reading the thread's clock costs
~0.7 us, twice per call, and a wrapped function's time includes that of the wrapped
functions it calls: compare like with like.

Why CPU in place and not a microbenchmark: a daemon that mostly waits for sockets runs
each call from a cold CPU cache; the same call in a tight loop cost a sixth as much
(docs/benchmarks.md, "Counted in batches").
"""

import contextlib
import importlib
import json
import os
import sys
import threading
import time

_LOG = os.environ.get("BENCH_CALLCOST_LOG")
_NAMES = [n for n in os.environ.get("BENCH_CALLCOST", "").split(",") if n]
_totals: dict[str, list[float]] = {}


def _wrap(spec: str) -> None:
    module_name, _, qual = spec.partition(":")
    owner = importlib.import_module(module_name)
    *path, attr = qual.split(".")
    for part in path:
        owner = getattr(owner, part)
    fn = getattr(owner, attr)
    total = _totals[spec] = [0.0, 0]
    clock = time.thread_time

    def wrapped(*args, **kwargs):
        began = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            total[0] += clock() - began
            total[1] += 1

    setattr(owner, attr, wrapped)


def _threads() -> dict[str, int]:
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[f"{tid}/{name}"] = int(fields[11]) + int(fields[12])  # utime + stime
    return out


def _dump() -> None:
    line = {"pid": os.getpid(), "argv": sys.argv, "calls": _totals, "threads": _threads()}
    with open(_LOG, "a") as f:
        f.write(json.dumps(line) + "\n")


def _every(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        _dump()


if _LOG and _NAMES and sys.argv[1:2] == ["run"]:
    for _name in _NAMES:
        with contextlib.suppress(ImportError, AttributeError):  # not in a baseline's tree
            _wrap(_name)
    threading.Thread(target=_every, args=(10.0,), daemon=True, name="callcost").start()
