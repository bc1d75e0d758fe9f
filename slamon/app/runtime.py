"""The process around the daemon: the event loop, the garbage collector, signals.

Each is set up in one place only, as uvicorn's server does: one loop factory
(uvloop when installed), one context manager that captures the signals, one
way to leave at once when a second stop signal arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from functools import partial
from typing import Any, NamedTuple, NoReturn, TypeVar

T = TypeVar("T")

#: young (gen 1) collections between full ones, instead of CPython's 10. Probes leave
#: no reference cycles, so full collections found nothing to free, yet at 10,000
#: targets they ran every ~7 s and stalled the loop 45-90 ms (docs/benchmarks.md).
#: With `collect_young` each second, a full collection comes at most every ~17 min;
#: CPython's own rule (only once survivors grow by 25 %) still applies on top.
FULL_GC_AFTER = 1000

#: the signals that stop the daemon; a second one while it drains forces the exit
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


# -- event loop -----------------------------------------------------------------
def new_event_loop() -> asyncio.AbstractEventLoop:
    """The one loop factory: uvloop when installed (a faster probe path), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` to completion on a fresh loop from `new_event_loop`."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main())


#: the GIL's switch interval while the daemon runs (CPython's is 5 ms)
SHARED_SWITCH_INTERVAL = 0.0005


@contextlib.contextmanager
def loop_first() -> Iterator[None]:
    """While threads run Python work beside the event loop, hand the GIL back to the loop
    within 0.5 ms instead of CPython's 5: each wake-up of the loop waited up to one
    interval for it. The daemon runs in it all along: its state writer's thread works
    every second (10-30 ms at 10,000 targets), a reload reads its config on a thread (~1 s
    at 10,000 targets, every probe due meanwhile 5-10 ms late). The interval only counts
    while a thread waits for the GIL, so a lone loop pays nothing (docs/benchmarks.md)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, SHARED_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def in_daemon_thread(fn: Callable[[], T], name: str) -> Awaitable[T]:
    """`fn()` on a thread of its own that does not hold up the process's exit.

    For blocking work that may never return, such as reading a config file on
    a hung network mount: `asyncio.to_thread` would leave the thread in the
    loop's default executor, which the loop waits for when it closes.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(outcome: Callable[[], None]) -> None:
        if not future.done():  # the awaiting task may have been cancelled
            outcome()

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task, raised there
            report: Callable[[], None] = partial(future.set_exception, exc)
        else:
            report = partial(future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(deliver, report)

    threading.Thread(target=work, name=name, daemon=True).start()
    return future


# -- garbage collector ----------------------------------------------------------
class HeapSettled(NamedTuple):
    """What one `settle_heap` did: logged, so that the stall it is can be read off."""

    full: bool
    freed: int  # unreachable objects the collection found
    seconds: float


def defer_gc() -> None:
    """Keep the cyclic GC off until `settle_heap` runs once the daemon is up.

    Start-up builds long-lived objects only; at 10,000 targets the collector
    otherwise ran ~20 times during start-up, 3.5 s in all.
    """
    gc.disable()


def settle_heap(full: bool = True) -> HeapSettled:
    """Collect once, then keep the long-lived objects (config, windows) out of GC.

    At 10,000 targets full collections walking them took 0.3-0.5 s every few
    seconds: loop stalls that delay probes (bench/compare, docs/benchmarks.md).
    `full=False` (after a reload) collects the young generations only: a full
    collection walked every object made since the last freeze, ~0.1 s of event loop
    at 5,000 targets, while what a reload drops (the old config and runtimes) has no
    cycles and goes by reference counting.
    """
    began = time.perf_counter()
    freed = gc.collect(2 if full else 1)
    gc.freeze()
    gc.enable()  # `defer_gc` turned it off for start-up
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, FULL_GC_AFTER)
    # not gc.get_freeze_count(): it walks every frozen object, ~20 ms at 10,000 targets
    return HeapSettled(full, freed, time.perf_counter() - began)


def collect_young() -> None:
    """Walk the objects made since the last call (the daemon calls this every second),
    while they are few.

    Each probe's result replaces an older, often frozen one, and CPython counts every
    freed object against a new one: the young generation grew by every result without
    a collection falling due, until a burst of allocation (a scrape) started one that
    walked them all. At 10,000 targets that was 33,000 objects, 15 ms, and then as long
    again for the next generation, on the event loop (docs/benchmarks.md). Collected
    each second, a walk is one second's worth. Survivors go to the oldest generation,
    which only full collections walk (see FULL_GC_AFTER)."""
    if gc.isenabled():  # not before start-up's `settle_heap`
        gc.collect(1)


async def settle_heap_after(delay: float) -> HeapSettled:
    """Settle again once every target has been probed: each probe's prepared
    request and first results are long-lived, and left young they made every
    full collection walk ~80k more objects (docs/benchmarks.md).

    With a young collection only: a full one here found nothing to free at 10,000
    targets (probes leave no reference cycles) and held the event loop 85-155 ms,
    probes due meanwhile starting that late. What it would find is freed at start-up
    (the first `settle_heap` is full) or frozen once, a bounded leak."""
    await asyncio.sleep(delay)
    return settle_heap(full=False)


# -- signals --------------------------------------------------------------------
@contextlib.contextmanager
def capture_signals(
    on_stop: Callable[[signal.Signals], None], on_reload: Callable[[], None]
) -> Iterator[list[signal.Signals]]:
    """Route SIGTERM/SIGINT to `on_stop(sig)` and SIGHUP to `on_reload()` on the
    running loop, for the duration of the block; yields the signals installed.

    The handlers run as loop callbacks, never inside a half-finished await, so
    they may touch the daemon's state directly. Where the loop cannot install
    them (not the main thread, no such signal) the process keeps the defaults.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    handlers: list[tuple[signal.Signals, Callable[..., None], tuple[Any, ...]]] = [
        *((sig, on_stop, (sig,)) for sig in STOP_SIGNALS),
        (signal.SIGHUP, on_reload, ()),
    ]
    for sig, handler, args in handlers:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, handler, *args)
            installed.append(sig)
    try:
        yield installed
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def forced_exit_code(sig: signal.Signals | None) -> int:
    """128 + the signal's number, as a shell reports a process killed by it: 130
    for SIGINT (Ctrl-C), 143 for SIGTERM; 1 when no signal is known."""
    return 128 + int(sig) if sig is not None else 1


def force_exit(code: int) -> NoReturn:
    """Leave now: no drain, no final write, no waiting for threads.

    Safe because the state store survives a crash at any moment (SQLite WAL,
    one transaction per flush; tests/test_durability.py kills it with SIGKILL):
    outcomes not yet flushed come back as no data on the next start. Only the
    standard streams are flushed, so the last log lines reach the journal.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
