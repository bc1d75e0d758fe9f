"""Loop-stall finder, imported by a slamon child whose PYTHONPATH starts with this
directory (`bench/startup.py --stalls MS`); nothing else imports it.

A watchdog thread posts a callback to the daemon's event loop every ~10 ms and, while
one has waited more than 20 ms, samples what every other thread runs (every ~5 ms, as
the GIL allows). A wait over BENCH_STALL_MS is appended to BENCH_STALL_LOG with its
samples: `STALL <unix time> <ms>`, then `<count> [<thread>] <innermost frames>` lines.
"""

import os
import sys
import threading
import time
from collections import Counter

_LOG = os.environ["BENCH_STALL_LOG"]
_OVER = float(os.environ.get("BENCH_STALL_MS", "50")) / 1e3


def _stack(frame, depth=8):
    out = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        out.append(f"{os.path.basename(code.co_filename)}:{code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return " < ".join(out)


def _watch(loop):
    me = threading.get_ident()
    while not loop.is_closed():
        mark = [time.perf_counter(), None]
        try:
            loop.call_soon_threadsafe(lambda m=mark: m.__setitem__(1, time.perf_counter()))
        except RuntimeError:  # closed meanwhile
            return
        samples = Counter()
        while mark[1] is None and not loop.is_closed():
            time.sleep(0.005)
            if time.perf_counter() - mark[0] > 0.02:
                names = {t.ident: t.name for t in threading.enumerate()}
                for ident, frame in sys._current_frames().items():
                    if ident != me:
                        samples[(names.get(ident, "?"), _stack(frame))] += 1
        if mark[1] is not None and mark[1] - mark[0] > _OVER:
            with open(_LOG, "a") as fh:
                fh.write(f"STALL {time.time():.3f} {1e3 * (mark[1] - mark[0]):.1f}\n")
                for (name, stack), n in samples.most_common(12):
                    fh.write(f"  {n:4d} [{name}] {stack}\n")
        time.sleep(0.01)


import slamon.app.runtime as _runtime  # noqa: E402

_factory = _runtime.new_event_loop


def _watched_loop():
    loop = _factory()
    threading.Thread(target=_watch, args=(loop,), name="stall-watch", daemon=True).start()
    return loop


_runtime.new_event_loop = _watched_loop  # read by runtime.run when it makes the loop
