"""Scheduler: monotonic deadlines, no drift, spread phases, no double flight, missed ticks.

The probers here are real coroutines that take a chosen time, so the test is
about scheduling only (the real probers have their own tests against real
servers). Intervals are below the config's 1 s minimum to keep tests short;
`model_construct` skips that validation on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
import selectors
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slamon import scheduler as scheduler_module
from slamon.config.targets import Target
from slamon.probers.base import FailureReason, ProbeResult
from slamon.scheduler import (
    AUTO_SLOTS,
    LAG_BUCKETS,
    PER_SLOT,
    LagHistogram,
    Scheduler,
    StallMonitor,
    auto_slot,
    first_tick,
    phase_offset,
)


def make_target(tid: str, interval: float, timeout: float) -> Target:
    return Target.model_construct(
        id=tid, kind="http", interval=interval, timeout=timeout, labels={}, http=None, tcp=None
    )


class Recorder:
    """Collects results and missed ticks; `done` fires after `want` tick outcomes."""

    def __init__(self, want: int) -> None:
        self.results: list[tuple[str, float, float]] = []  # target, scheduled wall, loop start
        self.missed: list[tuple[str, float]] = []
        self.order: list[tuple[str, float]] = []  # every outcome, in callback order
        self.want = want
        self.done = asyncio.Event()

    def on_result(self, target: Target, scheduled: float, result: ProbeResult) -> None:
        self.results.append((target.id, scheduled, result.duration))
        self.order.append((target.id, scheduled))
        self._check()

    def on_missed(self, target: Target, scheduled: float) -> None:
        self.missed.append((target.id, scheduled))
        self.order.append((target.id, scheduled))
        self._check()

    def _check(self) -> None:
        if len(self.results) + len(self.missed) >= self.want:
            self.done.set()


def prober_taking(seconds: float, starts: list[tuple[str, float]] | None = None,
                  in_flight: Counter[str] | None = None, peaks: dict[str, int] | None = None):
    async def probe(target: Target, timeout: float) -> ProbeResult:
        loop = asyncio.get_running_loop()
        if starts is not None:
            starts.append((target.id, loop.time()))
        if in_flight is not None and peaks is not None:
            in_flight[target.id] += 1
            in_flight["*"] += 1
            peaks[target.id] = max(peaks.get(target.id, 0), in_flight[target.id])
            peaks["*"] = max(peaks.get("*", 0), in_flight["*"])
        try:
            await asyncio.sleep(seconds)
        finally:
            if in_flight is not None:
                in_flight[target.id] -= 1
                in_flight["*"] -= 1
        return ProbeResult(ok=True, duration=seconds)

    return lambda kind: probe


def count_calls(obj: object, method: str) -> list[int]:
    """Wrap `obj`'s bound `method` in one that counts its calls: [calls so far]. Set on
    the instance before anything takes the bound method (a timer's callback)."""
    calls = [0]
    real = getattr(obj, method)

    def counted(*args: Any) -> Any:
        calls[0] += 1
        return real(*args)

    setattr(obj, method, counted)
    return calls


async def run_until(scheduler: Scheduler, rec: Recorder, limit: float) -> None:
    task = asyncio.create_task(scheduler.run())
    try:
        async with asyncio.timeout(limit):
            await rec.done.wait()
    finally:
        scheduler.stop()
        await task


async def test_no_drift_over_many_ticks() -> None:
    interval, ticks = 0.05, 60
    starts: list[tuple[str, float]] = []
    rec = Recorder(ticks)
    sched = Scheduler(
        [make_target("a", interval, 0.02)],
        max_concurrency=10,
        on_result=rec.on_result,
        on_missed=rec.on_missed,
        prober_for=prober_taking(0.001, starts),
    )
    await run_until(sched, rec, limit=30)
    assert not rec.missed
    scheduled = [s for _, s, _ in rec.results]
    # scheduled times are exact multiples of the interval plus the phase
    steps = [b - a for a, b in itertools.pairwise(scheduled)]
    assert all(abs(s - interval) < 1e-6 for s in steps), steps[:5]
    offset = phase_offset("a", interval)
    assert all(abs(((s - offset) / interval) - round((s - offset) / interval)) < 1e-6
               for s in scheduled)
    # actual starts do not accumulate error: the n-th start is near first + n*interval
    t0 = starts[0][1]
    errors = [abs(t - (t0 + i * interval)) for i, (_, t) in enumerate(starts)]
    assert max(errors[-10:]) < 0.03, errors[-10:]
    assert sched.stats.lag.count == len(starts)


async def test_phases_are_spread_and_stable() -> None:
    interval = 10.0
    offsets = [phase_offset(f"target-{i}", interval) for i in range(10_000)]
    assert all(0 <= o < interval for o in offsets)
    assert offsets == [phase_offset(f"target-{i}", interval) for i in range(10_000)]
    bins = Counter(int(o) for o in offsets)  # 10 one-second bins
    assert len(bins) == 10
    assert max(bins.values()) < 1200 and min(bins.values()) > 800, bins


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40),
       st.floats(min_value=1.0, max_value=86_400.0, allow_nan=False),
       st.sampled_from([0.001, 0.01, 0.05, 0.1, 0.25, 1.0]))
def test_a_phase_is_its_slot_of_the_spread_phase(tid: str, interval: float,
                                                 slot: float) -> None:
    spread = phase_offset(tid, interval, 0.0)
    offset = phase_offset(tid, interval, slot)
    assert 0 <= offset <= spread < interval
    # the start of the slot the spread phase falls in: a whole number of slots, and
    # the next slot starts after the spread phase
    k = round(offset / slot)
    assert offset == k * slot
    assert spread < (k + 1) * slot
    assert offset == phase_offset(tid, interval, slot)  # stable


def test_auto_slot_keeps_about_twenty_probes_a_slot() -> None:
    assert auto_slot([]) == 0.05
    assert auto_slot([10.0] * 1000) == 0.05  # 100 probes a second: 5 a slot
    assert auto_slot([10.0] * 4000) == 0.05  # 400: 20 a slot
    assert auto_slot([10.0] * 4001) == 0.02
    assert auto_slot([10.0] * 10_000) == 0.02  # 1,000 a second: 20 a slot
    assert auto_slot([10.0] * 20_000) == 0.01
    assert auto_slot([1.0] * 100_000) == 0.005  # the smallest, however many
    # mixed intervals count by their probes a second
    assert auto_slot([1.0] * 300 + [60.0] * 5940) == 0.05  # 399 a second
    assert auto_slot([1.0] * 300 + [10.0] * 1010) == 0.02  # 401


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1.0, max_value=3600.0), max_size=50),
       st.integers(min_value=1, max_value=5000))
def test_auto_slot_shrinks_as_probes_grow(intervals: list[float], more: int) -> None:
    slot = auto_slot(intervals)
    assert slot in AUTO_SLOTS
    assert auto_slot(intervals + [1.0] * more) <= slot
    rate = sum(1 / i for i in intervals)
    assert rate * slot <= PER_SLOT + 1e-9 or slot == AUTO_SLOTS[-1]


def test_targets_in_one_slot_share_a_due_time_to_the_last_bit() -> None:
    interval, slot = 10.0, 0.05
    offsets = [phase_offset(f"target-{i}", interval, slot) for i in range(10_000)]
    by_slot = Counter(offsets)
    # 200 slots in 10 s, ~50 targets in each: every slot holds some, none a crowd
    assert len(by_slot) == 200
    assert min(by_slot.values()) >= 20 and max(by_slot.values()) <= 90, by_slot
    # ticks of the same slot are the same float, whatever the tick
    assert len({o + 123_456 * interval for o in offsets}) == 200


def test_probes_in_one_slot_start_at_one_wake_up() -> None:
    """Without slots each of 100 phases is a wake-up of the loop; in 50 ms slots the
    targets of a slot start together, at one."""
    import uvloop

    def run(slot: float) -> tuple[int, int, set[float]]:
        targets = [make_target(f"t{i}", 0.5, 0.1) for i in range(100)]
        rec = Recorder(300)
        sched = Scheduler(targets, max_concurrency=1000, on_result=rec.on_result,
                          on_missed=rec.on_missed, prober_for=prober_taking(0.0),
                          slot=slot)
        wakeups = count_calls(sched, "_on_timer")
        uvloop.run(run_until(sched, rec, 10.0))
        assert not rec.missed
        # wall times near 1.8e9 s carry ~0.2 us of float rounding
        phases = {round(s % 0.5, 5) % 0.5 for _, s, _ in rec.results}
        return wakeups[0], sched.stats.started, phases

    woken, started, phases = run(0.05)
    assert len(phases) <= 10  # 0.5 s in 50 ms slots
    assert all(abs(p / 0.05 - round(p / 0.05)) < 1e-3 for p in phases), phases
    # one wake-up per slot's tick (and the first, and one spare), not one per probe
    assert woken <= started / 100 * len(phases) + 2, (woken, started)
    assert woken < started / 5, (woken, started)
    woken, started, phases = run(0.0)
    assert len(phases) > 50
    assert woken > started / 2, (woken, started)


async def test_a_target_never_has_two_probes_in_flight() -> None:
    # probe takes 2.5 intervals: ticks in between must be missed, not overlapped
    interval = 0.04
    in_flight: Counter[str] = Counter()
    peaks: dict[str, int] = {}
    rec = Recorder(30)
    sched = Scheduler(
        [make_target("slow", interval, 0.035)],
        max_concurrency=10,
        on_result=rec.on_result,
        on_missed=rec.on_missed,
        prober_for=prober_taking(interval * 2.5, in_flight=in_flight, peaks=peaks),
    )
    await run_until(sched, rec, limit=30)
    assert peaks["slow"] == 1
    assert rec.missed, "ticks during a running probe must be counted as missed"
    assert sched.stats.missed == len(rec.missed)
    # every tick ends in exactly one outcome: scheduled times never repeat
    seen = [s for _, s, _ in rec.results] + [s for _, s in rec.missed]
    assert len(seen) == len(set(seen))
    ordered = sorted(seen)
    gaps = [round((b - a) / interval) for a, b in itertools.pairwise(ordered)]
    assert set(gaps) == {1}, "no tick may vanish without an outcome"
    # outcomes arrive in tick order (a missed tick waits for the busy one's result), so
    # the store's "last stored tick" watermark never passes a tick still in flight
    times = [t for _, t in rec.order]
    assert times == sorted(times)


async def test_global_concurrency_limit_and_no_data_when_overloaded() -> None:
    interval = 0.05
    in_flight: Counter[str] = Counter()
    peaks: dict[str, int] = {}
    targets = [make_target(f"t{i}", interval, 0.045) for i in range(8)]
    rec = Recorder(160)
    sched = Scheduler(
        targets,
        max_concurrency=2,
        on_result=rec.on_result,
        on_missed=rec.on_missed,
        prober_for=prober_taking(0.03, in_flight=in_flight, peaks=peaks),
    )
    await run_until(sched, rec, limit=30)
    assert peaks["*"] <= 2
    # 8 targets x 30 ms of work per 50 ms with 2 slots cannot all run: the rest is no data
    assert rec.missed
    per_target: dict[str, list[float]] = defaultdict(list)
    for tid, s, _ in rec.results:
        per_target[tid].append(s)
    for tid, s in rec.missed:
        per_target[tid].append(s)
    for tid, times in per_target.items():
        assert len(times) == len(set(times)), f"{tid} has a tick counted twice"


async def test_stop_waits_for_in_flight_probes() -> None:
    done: list[str] = []

    async def probe(target: Target, timeout: float) -> ProbeResult:
        await asyncio.sleep(0.2)
        done.append(target.id)
        return ProbeResult(ok=True, duration=0.2)

    started = asyncio.Event()
    rec = Recorder(1)

    def on_result(target: Target, scheduled: float, result: ProbeResult) -> None:
        rec.on_result(target, scheduled, result)

    sched = Scheduler(
        [make_target("x", 1.0, 0.5)],
        max_concurrency=1,
        on_result=on_result,
        on_missed=rec.on_missed,
        spread=False,
        prober_for=lambda kind: probe,
    )
    task = asyncio.create_task(sched.run())

    async def wait_started() -> None:
        while sched.stats.in_flight == 0:
            await asyncio.sleep(0.01)
        started.set()

    await asyncio.wait_for(wait_started(), 5)
    sched.stop()
    await asyncio.wait_for(task, 5)
    assert done == ["x"]
    assert len(rec.results) == 1


@pytest.mark.parametrize("n", [200])
async def test_lag_stays_small_with_many_targets(n: int) -> None:
    interval = 0.5
    targets = [make_target(f"t{i}", interval, 0.2) for i in range(n)]
    rec = Recorder(n * 4)
    sched = Scheduler(
        targets,
        max_concurrency=1000,
        on_result=rec.on_result,
        on_missed=rec.on_missed,
        prober_for=prober_taking(0.001),
    )
    await run_until(sched, rec, limit=30)
    assert not rec.missed
    # median lag in the lowest buckets: the dispatcher is not the bottleneck
    buckets = sched.stats.lag.cumulative()
    below_10ms = dict(buckets)["0.01"]
    assert below_10ms / sched.stats.lag.count > 0.9, buckets
    assert statistics.mean(d for _, _, d in rec.results) < 0.05


async def test_a_failure_while_the_loop_froze_is_no_data() -> None:
    """The design rule: slamon's own trouble is never counted against the target."""
    timeout = 0.4
    entered = asyncio.Event()

    async def probe(target: Target, timeout_: float) -> ProbeResult:
        entered.set()
        await asyncio.sleep(timeout_)  # the answer never comes: a timeout
        return ProbeResult.failure(FailureReason.TIMEOUT, timeout_, "timeout")

    async def run_one(freeze: float) -> Recorder:
        rec = Recorder(1)
        sched = Scheduler(
            [make_target("t", 1.0, timeout)], max_concurrency=1,
            on_result=rec.on_result, on_missed=rec.on_missed, spread=False,
            prober_for=lambda kind: probe,
        )
        task = asyncio.create_task(sched.run())
        # the probe itself must be running: `in_flight` counts it from dispatch, before
        # its task has started, and a freeze before the start is not inside the probe
        async with asyncio.timeout(5):
            await entered.wait()
        if freeze:
            time.sleep(freeze)  # block the event loop, as a huge scrape would
        async with asyncio.timeout(5):
            await rec.done.wait()
        sched.stop()
        await task
        return rec

    frozen = await run_one(0.6)
    assert frozen.missed and not frozen.results
    # (the converse, a timeout without a freeze counting as a failure, is the pure
    # rule's test below: on a loaded machine a real stall could void a control run)


def test_which_failures_a_loop_freeze_voids() -> None:
    from slamon.scheduler import stalled_verdict

    def fail(reason: FailureReason, duration: float = 0.6) -> ProbeResult:
        return ProbeResult.failure(reason, duration)

    # "too slow" only because slamon froze: 0.6 s measured, 0.3 s of it frozen, limit 0.5 s
    assert stalled_verdict(fail(FailureReason.TOO_SLOW), 0.3, 2.0, max_response_time=0.5)
    # too slow even without the freeze: 1.0 s measured, 0.3 s frozen, limit 0.5 s
    assert not stalled_verdict(fail(FailureReason.TOO_SLOW, 1.0), 0.3, 2.0, 0.5)
    # a short hiccup below the stall threshold voids nothing
    assert not stalled_verdict(fail(FailureReason.TOO_SLOW), 0.1, 2.0, 0.5)
    # a timeout: a hanging target hangs whatever slamon did, unless slamon barely ran
    assert not stalled_verdict(fail(FailureReason.TIMEOUT, 2.0), 0.3, 2.0)
    assert stalled_verdict(fail(FailureReason.TIMEOUT, 2.0), 1.0, 2.0)
    # a 503 is the target's answer, however slow slamon was to read it
    assert not stalled_verdict(fail(FailureReason.STATUS), 0.3, 2.0)
    assert not stalled_verdict(fail(FailureReason.TOO_SLOW), 0.0, 2.0, 0.5)


# -- virtual time ------------------------------------------------------------------------
#
# The tests below run the scheduler on an event loop whose clock only moves when
# nothing is ready to run: a 10 s interval takes no real time, every deadline is
# met exactly, and a "freeze" of the loop is a jump of the clock inside a callback.
# So outcomes can be asserted exactly, boundaries included, on a loaded machine too.

WALL0 = 1_699_999_800.0  # wall time at loop time 0: a multiple of every interval used (300)


class _Clock:
    now = 0.0


class _AdvancingSelector(selectors.DefaultSelector):
    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        ready = super().select(0)
        if not ready:
            if timeout is None:
                raise RuntimeError("virtual time: nothing scheduled, nothing to wait for")
            # every deadline here is a whole number of microseconds: rounding keeps the
            # drift of summing 0.05 s monitor periods out of exact comparisons (never
            # rounding down: a deadline that is not, such as a spread phase, must be met)
            exact = self.clock.now + timeout
            self.clock.now = max(round(exact, 6), exact)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = _Clock()
        super().__init__(_AdvancingSelector(self.clock))

    def time(self) -> float:
        return self.clock.now

    def freeze(self, seconds: float) -> None:
        """The loop is blocked this long (a huge scrape, swap): time passes, nothing runs."""
        self.clock.now += seconds


def simulate(monkeypatch: pytest.MonkeyPatch, scenario: Callable[[VirtualTimeLoop], Any]) -> Any:
    loop = VirtualTimeLoop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    monkeypatch.setattr(scheduler_module, "time", SimpleNamespace(time=lambda: WALL0 + loop.time(),
                                        monotonic=loop.time))
    try:
        out = loop.run_until_complete(scenario(loop))
    finally:
        loop.close()
    assert not errors, errors
    return out


class Outcomes:
    """Every tick outcome in callback order: (target, scheduled wall - WALL0, kind)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float, str]] = []
        self.starts: list[tuple[str, float]] = []  # (target, loop time) per probe started
        self.results: list[tuple[str, float, ProbeResult, Target]] = []

    def on_result(self, target: Target, scheduled: float, result: ProbeResult) -> None:
        self.seen.append((target.id, scheduled - WALL0, "result"))
        self.results.append((target.id, scheduled - WALL0, result, target))

    def on_missed(self, target: Target, scheduled: float) -> None:
        self.seen.append((target.id, scheduled - WALL0, "missed"))

    def of(self, tid: str) -> list[tuple[float, str]]:
        return [(t, kind) for target, t, kind in self.seen if target == tid]


Plan = dict[str, Callable[[VirtualTimeLoop], Any]]


def probers(
    plan: Plan,
    loop: VirtualTimeLoop,
    starts: list[tuple[str, float]] | None = None,
):
    """prober_for: target id -> coroutine function(loop) giving its ProbeResult."""

    async def probe(target: Target, timeout: float) -> ProbeResult:
        if starts is not None:
            starts.append((target.id, loop.time()))
        result: ProbeResult = await plan[target.id](loop)
        return result

    return lambda kind: probe


def taking(seconds: float, ok: bool = True) -> Callable[[VirtualTimeLoop], Any]:
    async def run(loop: VirtualTimeLoop) -> ProbeResult:
        await asyncio.sleep(seconds)
        if ok:
            return ProbeResult(ok=True, duration=seconds)
        return ProbeResult.failure(FailureReason.STATUS, seconds)

    return run


def make_scheduler(
    loop: VirtualTimeLoop,
    targets: list[Target],
    plan: Plan,
    out: Outcomes,
    **kw: Any,
) -> Scheduler:
    kw.setdefault("max_concurrency", 100)
    kw.setdefault("spread", False)
    return Scheduler(
        targets,
        on_result=out.on_result,
        on_missed=out.on_missed,
        prober_for=probers(plan, loop, out.starts),
        **kw,
    )


async def run_for(sched: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(seconds)
    sched.stop()
    await task


def run_virtual(
    monkeypatch: pytest.MonkeyPatch,
    targets: list[Target],
    plan: Plan,
    seconds: float,
    **kw: Any,
) -> tuple[Scheduler, Outcomes, float]:
    """Run a scheduler for `seconds` of virtual time, stop it and let it drain:
    (the scheduler, every outcome, the virtual time at which run() returned)."""
    out = Outcomes()

    async def scenario(loop: VirtualTimeLoop) -> tuple[Scheduler, float]:
        sched = make_scheduler(loop, targets, plan, out, **kw)
        await run_for(sched, seconds)
        return sched, loop.time()

    sched, ended = simulate(monkeypatch, scenario)
    return sched, out, ended


def test_virtual_ticks_are_exact_and_in_target_order(monkeypatch: pytest.MonkeyPatch) -> None:
    targets = [make_target("a", 10.0, 2.0), make_target("b", 4.0, 2.0)]
    sched, out, _ = run_virtual(monkeypatch, targets, {"a": taking(1.0), "b": taking(1.0)}, 39.5)
    assert out.of("a") == [(t, "result") for t in (0.0, 10.0, 20.0, 30.0)]
    assert out.of("b") == [(float(t), "result") for t in range(0, 37, 4)]
    # ticks due at the same instant start in the order the targets were given
    assert [tid for tid, t in out.starts if t in (0.0, 20.0)] == ["a", "b", "a", "b"]
    assert all(r.duration == 1.0 for _, _, r, _ in out.results)
    stats = sched.stats
    assert (stats.started, stats.completed, stats.missed, stats.stalled) == (14, 14, 0, 0)
    assert stats.in_flight == 0
    assert (stats.lag.count, stats.lag.total, stats.lag.max) == (14, 0.0, 0.0)


def test_virtual_spread_phase_and_first_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    targets = [make_target("x", 10.0, 2.0)]
    _, out, _ = run_virtual(monkeypatch, targets, {"x": taking(0.5)}, 25.0, spread=True)
    offset = phase_offset("x", 10.0)
    first = first_tick(WALL0, 10.0, offset) * 10.0 + offset - WALL0
    assert 0 <= first < 10.0
    # every tick that starts and ends (0.5 s) before the stop at 25
    want = [first + 10.0 * k for k in range(3) if first + 10.0 * k + 0.5 < 25.0]
    assert [t for t, _ in out.of("x")] == pytest.approx(want)
    assert [t for _, t in out.starts] == pytest.approx(want)


def test_virtual_start_at_misses_what_is_already_an_interval_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    targets = [make_target("x", 10.0, 2.0)]
    _, out, _ = run_virtual(monkeypatch, targets, {"x": taking(1.0)}, 15.0, start_at=WALL0 - 25)
    # -20 and -10 are an interval late or more when the scheduler starts (exactly, for
    # -10): no data; 0 is on time
    assert out.of("x") == [(-20.0, "missed"), (-10.0, "missed"), (0.0, "result"), (10.0, "result")]


def one_slot(
    monkeypatch: pytest.MonkeyPatch,
    a: Target,
    b: Target,
    takes: tuple[float, float],
    seconds: float,
) -> tuple[Scheduler, Outcomes, float]:
    """Targets "a" then "b" (probes taking `takes`) with room for one probe at a time."""
    plan = {"a": taking(takes[0]), "b": taking(takes[1])}
    return run_virtual(monkeypatch, [a, b], plan, seconds, max_concurrency=1)


def test_virtual_concurrency_limit_queues_then_starts_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = make_target("a", 10.0, 5.0), make_target("b", 10.0, 5.0)
    sched, out, _ = one_slot(monkeypatch, a, b, (3.0, 1.0), 25.0)
    assert out.of("a") == [(0.0, "result"), (10.0, "result"), (20.0, "result")]
    assert out.of("b") == [(0.0, "result"), (10.0, "result"), (20.0, "result")]
    lag = sched.stats.lag
    assert (lag.count, lag.total, lag.max) == (6, 9.0, 3.0)  # b waited 3 s for a each time


def test_virtual_queued_tick_is_missed_once_an_interval_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = make_target("a", 100.0, 50.0), make_target("b", 5.0, 2.0)
    sched, out, _ = one_slot(monkeypatch, a, b, (12.0, 1.0), 19.0)
    # b@0 waits for a's slot until 12: too late for it and for the ticks it held up;
    # b@15 runs normally. A target never has two ticks queued at once.
    assert out.of("b") == [(0.0, "missed"), (5.0, "missed"), (10.0, "missed"), (15.0, "result")]
    assert sched.stats.missed == 3 and sched.stats.started == 2
    # the slot frees at 5 = b's due + interval: exactly an interval late is too late
    _, out, _ = one_slot(monkeypatch, a, b, (5.0, 1.0), 9.0)
    assert out.of("b")[0] == (0.0, "missed")


def test_virtual_queued_tick_of_a_removed_target_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = Outcomes()
    a, b = make_target("a", 100.0, 50.0), make_target("b", 100.0, 2.0)

    async def scenario(loop: VirtualTimeLoop) -> None:
        plan = {"a": taking(3.0), "b": taking(1.0)}
        sched = make_scheduler(loop, [a, b], plan, out, max_concurrency=1)
        task = asyncio.create_task(sched.run())
        await asyncio.sleep(1.0)  # b@0 waits for a's slot
        sched.update_targets([a])
        await asyncio.sleep(9.0)
        sched.stop()
        await task

    simulate(monkeypatch, scenario)
    # neither probed when the slot frees at 3 nor reported as missed
    assert out.of("b") == [] and out.starts == [("a", 0.0)]


def test_virtual_overrunning_probe_defers_then_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    targets = [make_target("x", 10.0, 30.0)]
    sched, out, _ = run_virtual(monkeypatch, targets, {"x": taking(25.0)}, 35.0)
    assert out.seen == [
        ("x", 0.0, "result"),
        ("x", 10.0, "missed"),
        ("x", 20.0, "missed"),
        ("x", 30.0, "result"),  # delivered when run() drains after stop
    ]
    assert sched.stats.missed == 2 and sched.stats.completed == 2


def test_virtual_what_waits_for_the_next_tick_is_not_for_the_collector_to_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What each target keeps between its ticks adds nothing for a full collection to
    walk (docs/benchmarks.md): its place in the heap is a pair of numbers, which the
    collector stops tracking once it has seen it, and a probe that ended in time leaves
    the entry's (empty) list of deferred ticks as it was. A new list per probe, or the
    entry in the heap's tuple, was one more tracked object per target. A probe that
    deferred ticks gets a new list."""
    targets = [make_target("x", 10.0, 30.0), make_target("y", 10.0, 30.0)]
    kept: dict[str, list[int]] = {}

    async def scenario(loop: VirtualTimeLoop) -> None:
        out = Outcomes()
        sched = make_scheduler(loop, targets, {"x": taking(1.0), "y": taking(15.0)}, out)
        task = asyncio.create_task(sched.run())
        await asyncio.sleep(0)
        kept.update({k: e.deferred for k, e in sched._entries.items()})
        await asyncio.sleep(35.0)
        sched.stop()
        await task
        assert [kind for _, kind in out.of("x")] == ["result"] * 4
        assert ("y", 10.0, "missed") in out.seen  # deferred behind the 15 s probe
        assert sched._entries["x"].deferred is kept["x"] == []
        assert sched._entries["y"].deferred is not kept["y"]
        assert sched._entries["y"].deferred == []
        gc.collect()
        assert len(sched._heap) == 2 and sorted(sched._queued) == sorted(s for _, s in sched._heap)
        assert not any(gc.is_tracked(pair) for pair in sched._heap)

    simulate(monkeypatch, scenario)


def test_virtual_prober_overrun_and_prober_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hang(loop: VirtualTimeLoop) -> ProbeResult:
        await asyncio.sleep(10**6)
        raise AssertionError("unreachable")

    async def crash(loop: VirtualTimeLoop) -> ProbeResult:
        await asyncio.sleep(2.0)
        raise KeyError("prober bug")

    targets = [make_target("hang", 60.0, 3.0), make_target("crash", 60.0, 3.0)]
    sched, out, _ = run_virtual(monkeypatch, targets, {"hang": hang, "crash": crash}, 70.0)
    got = sorted((tid, t, r.reason, r.duration) for tid, t, r, _ in out.results)
    # the scheduler gives up half a second after the prober's own timeout; durations
    # are measured from each probe's own start (the second ticks start at 60)
    assert got == [
        ("crash", 0.0, FailureReason.OTHER, 2.0),
        ("crash", 60.0, FailureReason.OTHER, 2.0),
        ("hang", 0.0, FailureReason.TIMEOUT, 3.5),
        ("hang", 60.0, FailureReason.TIMEOUT, 3.5),
    ]
    assert all("KeyError" in r.detail for tid, _, r, _ in out.results if tid == "crash")
    assert sched.stats.completed == 4 and sched.stats.stalled == 0


def test_virtual_loop_freeze_voids_failures_only(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Outcomes()

    def frozen(ok: bool) -> Callable[[VirtualTimeLoop], Any]:
        async def run(loop: VirtualTimeLoop) -> ProbeResult:
            await asyncio.sleep(0.1)
            loop.freeze(1.0)  # blocked: the timeout ran out while nothing could run
            if ok:
                return ProbeResult(ok=True, duration=1.1)
            return ProbeResult.failure(FailureReason.TIMEOUT, 1.1)

        return run

    async def scenario(loop: VirtualTimeLoop) -> Scheduler:
        targets = [make_target("up", 60.0, 1.0), make_target("down", 60.0, 1.0)]
        plan = {"up": frozen(True), "down": frozen(False), "plain": taking(0.5, ok=False)}
        sched = make_scheduler(loop, targets, plan, out)
        task = asyncio.create_task(sched.run())
        await asyncio.sleep(5.0)
        sched.update_targets([*targets, make_target("plain", 6.0, 1.0)])
        await asyncio.sleep(5.0)
        sched.stop()
        await task
        return sched

    sched = simulate(monkeypatch, scenario)
    assert out.of("up") == [(0.0, "result")]  # a success is a success, freeze or not
    assert out.of("down") == [(0.0, "missed")]  # slamon's freeze, not the target: no data
    assert out.of("plain") == [(6.0, "result")]  # a failure without a freeze counts
    assert (sched.stats.stalled, sched.stats.missed) == (1, 1)
    assert sched.stall_monitor.stalls and sched.stall_monitor.longest > 0.9


def test_virtual_update_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Outcomes()

    async def scenario(loop: VirtualTimeLoop) -> Scheduler:
        a, b, d = (make_target(t, 10.0, 2.0) for t in "abd")
        plan = {t: taking(1.0) for t in "abd"} | {"c": taking(0.25)}
        sched = make_scheduler(loop, [a, b, d], plan, out)
        task = asyncio.create_task(sched.run())
        await asyncio.sleep(15.0)
        b2 = make_target("b", 10.0, 3.0)  # changed: a new schedule from now on
        sched.update_targets([a, b2, make_target("c", 1.0, 0.5)])  # d removed
        assert sorted(sched.target_ids) == ["a", "b", "c"]
        await asyncio.sleep(19.5)
        sched.stop()
        await task
        return sched

    simulate(monkeypatch, scenario)
    assert out.of("a") == [(t, "result") for t in (0.0, 10.0, 20.0, 30.0)]
    assert out.of("b") == [(t, "result") for t in (0.0, 10.0, 20.0, 30.0)]
    timeouts = [(t, target.timeout) for tid, t, _, target in out.results if tid == "b"]
    assert timeouts == [(0.0, 2.0), (10.0, 2.0), (20.0, 3.0), (30.0, 3.0)]
    assert out.of("d") == [(0.0, "result"), (10.0, "result")]
    # the removed d and the replaced b's old schedule are never probed again
    starts = sorted(out.starts)
    assert [t for tid, t in starts if tid in "bd"] == [0.0, 10.0, 20.0, 30.0, 0.0, 10.0]
    # a new target starts at once, not at the next tick of the others
    assert out.of("c") == [(float(t), "result") for t in range(15, 35)]


def test_virtual_targets_given_to_a_scheduler_started_with_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # discovery may deliver the first targets after start-up, and take them all away
    out = Outcomes()

    async def scenario(loop: VirtualTimeLoop) -> None:
        plan = {"a": taking(1.0), "b": taking(1.0)}
        sched = make_scheduler(loop, [], plan, out)
        task = asyncio.create_task(sched.run())
        await sched.wait_scheduled()
        await asyncio.sleep(5.0)
        sched.update_targets([make_target("a", 10.0, 2.0)])
        await asyncio.sleep(20.0)
        sched.update_targets([])
        await asyncio.sleep(20.0)
        sched.update_targets([make_target("b", 10.0, 2.0)])
        await asyncio.sleep(10.0)
        sched.stop()
        await task

    simulate(monkeypatch, scenario)
    # each starts at its first tick at or after being given
    assert out.of("a") == [(10.0, "result"), (20.0, "result")]
    assert out.of("b") == [(50.0, "result")]
    assert sorted(out.starts) == [("a", 10.0), ("a", 20.0), ("b", 50.0)]


def test_virtual_nothing_starts_once_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Outcomes()

    async def scenario(loop: VirtualTimeLoop) -> float:
        x = make_target("x", 2.0, 10.0)
        sched = make_scheduler(loop, [x], {"x": taking(5.0), "y": taking(1.0)}, out)
        task = asyncio.create_task(sched.run())
        await asyncio.sleep(1.0)
        sched.stop()
        sched.stop()  # a second stop (a second signal) is harmless
        await asyncio.sleep(1.0)
        assert not task.done()  # draining: x's probe is in flight until 5
        # a reload that lands meanwhile starts nothing
        sched.update_targets([x, make_target("y", 1.0, 0.5)])
        await task
        return loop.time()

    ended = simulate(monkeypatch, scenario)
    assert ended == 5.0  # run() returned when the probe in flight ended
    assert out.starts == [("x", 0.0)] and out.of("x") == [(0.0, "result")]
    # the ticks x passed while busy are reported missed; after stop none are added
    assert out.of("y") == []


def test_virtual_a_missed_callback_bug_ends_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # a tick found a whole interval late in dispatch is reported from the timer
    # callback: a bug in that callback ends run() with it instead of vanishing
    out = Outcomes()

    def broken(target: Target, scheduled: float) -> None:
        raise ZeroDivisionError("on_missed bug")

    async def freeze(loop: VirtualTimeLoop) -> ProbeResult:
        loop.freeze(25.0)  # the loop blocked past the other target's next two ticks
        return ProbeResult(ok=True, duration=0.0)

    async def scenario(loop: VirtualTimeLoop) -> str:
        targets = [make_target("f", 100.0, 50.0), make_target("x", 10.0, 2.0)]
        sched = make_scheduler(loop, targets, {"f": freeze, "x": taking(0.0)}, out)
        sched._on_missed = broken
        with pytest.raises(ZeroDivisionError) as raised:
            await asyncio.wait_for(sched.run(), 60.0)
        return str(raised.value)

    assert simulate(monkeypatch, scenario) == "on_missed bug"


def test_virtual_stop_returns_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    targets = [make_target("x", 100.0, 2.0)]
    _, out, ended = run_virtual(monkeypatch, targets, {"x": taking(1.0)}, 5.0)
    assert ended == 5.0
    assert out.of("x") == [(0.0, "result")]


def test_virtual_wait_scheduled(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Outcomes()

    async def scenario(loop: VirtualTimeLoop) -> list[float]:
        sched = make_scheduler(loop, [make_target("x", 10.0, 2.0)], {"x": taking(1.0)}, out)
        waiter = asyncio.create_task(sched.wait_scheduled())  # before run() exists
        task = asyncio.create_task(sched.run())
        await waiter
        ready = [loop.time()]
        await sched.wait_scheduled()  # and after
        ready.append(loop.time())
        sched.stop()
        await task
        return ready

    assert simulate(monkeypatch, scenario) == [0.0, 0.0]


def test_virtual_result_callback_errors_do_not_stop_the_scheduler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[float] = []

    def on_result(target: Target, scheduled: float, result: ProbeResult) -> None:
        calls.append(scheduled - WALL0)
        raise RuntimeError("the callback owner logs its own errors")

    async def scenario(loop: VirtualTimeLoop) -> None:
        sched = Scheduler(
            [make_target("x", 10.0, 5.0)],
            max_concurrency=10,
            on_result=on_result,
            on_missed=lambda target, scheduled: None,
            spread=False,
            prober_for=probers({"x": taking(4.0)}, loop),
        )
        task = asyncio.create_task(sched.run())
        await asyncio.sleep(22.0)  # the tick at 20 is still probing when stop() comes
        sched.stop()
        await task
        gc.collect()

    simulate(monkeypatch, scenario)  # and nothing reaches the loop's exception handler
    assert calls == [0.0, 10.0, 20.0]


def watch(
    monkeypatch: pytest.MonkeyPatch, monitor: StallMonitor, script: list[tuple[float, float]]
) -> StallMonitor:
    """Run `monitor` on the virtual loop; per (sleep, freeze) of `script`: let the loop
    run that long, then block it that long. One more second, then stop the monitor."""

    async def scenario(loop: VirtualTimeLoop) -> StallMonitor:
        task = asyncio.create_task(monitor.run())
        for sleep, freeze in script:
            await asyncio.sleep(sleep)
            loop.freeze(freeze)
        await asyncio.sleep(1.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return monitor

    result: StallMonitor = simulate(monkeypatch, scenario)
    return result


def test_virtual_stall_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    script = [
        (0.0, 0.18),  # the monitor has started, sleeps until 0.05: 0.13 s late, not a stall
        (1.0, 0.18),  # right after a wake-up: 0.13 s late again
        (0.51, 0.3),  # in the middle of a period
        (1.0, 0.5),
    ]
    monitor = watch(monkeypatch, StallMonitor(), script)
    lateness = [b - a for a, b in monitor.stalls]
    assert len(lateness) == 2, monitor.stalls
    assert 0.25 <= lateness[0] <= 0.3 and 0.45 <= lateness[1] <= 0.5
    assert monitor.longest == max(lateness)


def test_virtual_stall_monitor_keeps_the_latest_256_stalls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 300 freezes of 0.3 s, 0.1 s of normal running apart: each one a stall
    monitor = watch(monkeypatch, StallMonitor(), [(0.1, 0.3)] * 300)
    assert len(monitor.stalls) == 256
    starts = [a for a, _ in monitor.stalls]
    assert starts == sorted(starts)
    # the first 44 are forgotten: the oldest kept is the 45th freeze (each round of
    # sleep and freeze takes 0.4 s)
    assert 44 * 0.4 < starts[0] < 45 * 0.4 + 0.1


def test_virtual_check_ins_replace_the_monitors_wake_ups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loop that checks in often enough never wakes for the monitor's own timer, and a
    freeze between two check-ins is the stall it would have been without them."""
    monitor = StallMonitor()
    fired, rearmed = count_calls(monitor, "_on_timer"), count_calls(monitor, "_rearm")

    async def scenario(loop: VirtualTimeLoop) -> tuple[int, float]:
        task = asyncio.create_task(monitor.run())
        await asyncio.sleep(0)
        rearmed[0] = 0
        for _ in range(200):  # 2 s of check-ins 10 ms apart
            await asyncio.sleep(0.01)
            monitor.check_in(loop.time())
        quiet = fired[0]
        # the timer moves on once it is within half a period, not at every check-in
        assert rearmed[0] <= 2.0 / (0.5 * StallMonitor.PERIOD) + 1, rearmed
        expected = monitor.expected
        loop.freeze(0.3)  # between two check-ins, before the monitor's timer is due
        monitor.check_in(loop.time())
        await asyncio.sleep(1.0)  # no more check-ins: the monitor's timer takes over
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return quiet, expected

    quiet, expected = simulate(monkeypatch, scenario)
    assert quiet == 0
    assert list(monitor.stalls) == [(expected, pytest.approx(expected - 0.05 + 0.3))]
    # on its own again: one wake-up per period
    assert 1.0 / StallMonitor.PERIOD - 2 <= fired[0] <= 1.0 / StallMonitor.PERIOD + 1


def test_a_stall_monitor_not_running_ignores_check_ins_and_late_timers() -> None:
    monitor = StallMonitor()
    monitor.check_in(5.0)  # the scheduler before the monitor runs, or after it stopped
    monitor._on_timer()  # a timer that fired after run() ended
    assert monitor.expected == math.inf and not monitor.stalls and monitor.longest == 0.0


def test_virtual_stall_threshold_is_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = StallMonitor()
    monitor.PERIOD, monitor.THRESHOLD = 0.5, 0.25  # binary fractions: exact arithmetic
    # the wake-up due at 1.0 comes at 1.25: exactly the threshold late
    monitor = watch(monkeypatch, monitor, [(0.75, 0.5)])
    assert list(monitor.stalls) == [(1.0, 1.25)] and monitor.longest == 0.25


def test_stalled_seconds() -> None:
    m = StallMonitor()
    assert m.longest == 0.0 and not m.stalls
    m.stalls.extend([(10.0, 11.0), (20.0, 20.5)])
    m.expected = 30.0
    assert m.stalled(9.0, 12.0) == 1.0
    assert m.stalled(10.5, 20.25) == 0.5 + 0.25
    assert m.stalled(11.0, 20.0) == 0.0
    assert m.stalled(0.0, 5.0) == 0.0
    # one still in progress: the monitor should have woken at `expected`
    assert m.stalled(29.0, 30.125) == 0.0  # less than the threshold late: not (yet) a stall
    assert m.stalled(29.0, 30.5) == 0.5
    m.expected = 0.0
    assert m.stalled(-1.0, StallMonitor.THRESHOLD) == StallMonitor.THRESHOLD  # inclusive


def test_stalled_verdict_boundaries() -> None:
    from slamon.scheduler import stalled_verdict

    slow = ProbeResult.failure(FailureReason.TOO_SLOW, 0.75)
    assert stalled_verdict(slow, 0.0, 2.0, 0.5) is False
    # the freeze is exactly the stall threshold: counted
    assert stalled_verdict(
        ProbeResult.failure(FailureReason.TOO_SLOW, 0.5 + StallMonitor.THRESHOLD),
        StallMonitor.THRESHOLD,
        2.0,
        0.5,
    )
    assert stalled_verdict(slow, 0.25, 2.0, 0.5)  # 0.75 - 0.25 is exactly the limit
    timeout = ProbeResult.failure(FailureReason.TIMEOUT, 2.0)
    assert stalled_verdict(timeout, 1.0, 2.0)  # exactly half the timeout
    assert stalled_verdict(timeout, 0.99, 2.0) is False


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(10**6), 10**6).map(float),
    st.sampled_from([1.0, 2.0, 10.0, 30.0, 60.0]),
    st.integers(0, 59),
)
def test_first_tick_is_the_first_at_or_after_start(start: float, interval: float, k: int) -> None:
    offset = float(k % int(interval))
    n = first_tick(start, interval, offset)
    assert n * interval + offset >= start > (n - 1) * interval + offset


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(LAG_BUCKETS), st.floats(0, 20)), max_size=30))
def test_lag_histogram_matches_naive(values: list[float]) -> None:
    h = LagHistogram()
    for v in values:
        h.observe(v)
    assert h.count == len(values)
    assert h.total == pytest.approx(sum(values))
    assert h.max == max(values, default=0.0)
    want = [(repr(b), sum(1 for v in values if v <= b)) for b in LAG_BUCKETS]
    assert h.cumulative() == [*want, ("+Inf", len(values))]


def test_lag_buckets_are_the_1_2_5_series_from_1ms_to_10s() -> None:
    series = tuple(m * 10.0**e for e in range(-3, 2) for m in (1, 2.5, 5) if m * 10.0**e <= 10)
    assert pytest.approx(series, rel=1e-12) == LAG_BUCKETS
    assert len(LagHistogram().counts) == len(LAG_BUCKETS) + 1


def test_uvloop_timer_firing_early_does_not_spin_the_dispatcher() -> None:
    """uvloop rounds a timer to the nearest millisecond, so one set for the due time
    fires up to 0.5 ms early: a dispatcher that waits for the exact due time again
    re-arms a 0 ms timer until the clock passes it, one wake-up per loop iteration (this
    once cost 3/4 of slamon's CPU), and one that waits a millisecond more wakes twice
    per tick. The timer is set past the due time: one wake-up per due time."""
    import uvloop

    # spread phases, no slots: due times at arbitrary fractions of a millisecond
    targets = [make_target(f"t{i}", 0.5, 0.1) for i in range(100)]
    rec = Recorder(300)
    sched = Scheduler(targets, max_concurrency=1000, on_result=rec.on_result,
                      on_missed=rec.on_missed, prober_for=prober_taking(0.0), slot=0.0)
    wakeups = count_calls(sched, "_on_timer")
    monitor_wakeups = count_calls(sched.stall_monitor, "_on_timer")

    async def main() -> None:
        await run_until(sched, rec, 10.0)

    uvloop.run(main())
    started = sched.stats.started
    assert started >= 300 and not rec.missed
    # one wake-up per distinct due time at most (ties share them), plus the first
    assert wakeups[0] <= started + 1, (wakeups, started)
    # ~200 due times a second (never more than 24 ms apart with these phases) check in
    # for the stall monitor, which then need not wake on its own: it did 20 times a
    # second. One wake-up may come before the first tick, one spare
    assert monitor_wakeups[0] <= 2, monitor_wakeups


@pytest.mark.parametrize("runner", ["uvloop", "asyncio"])
def test_no_probe_starts_before_its_wall_clock_tick(runner: str) -> None:
    """A server judges a request by its arrival time, so a probe that starts even a
    fraction of a millisecond before its tick can be judged as the tick before. uvloop's
    loop.time() is libuv's clock floored to the millisecond: mapping wall time through
    it starts ticks up to 1 ms early."""
    import uvloop

    starts: list[tuple[str, float, int]] = []  # target, wall time at start, tick

    async def probe(target: Target, timeout: float) -> ProbeResult:
        starts.append((target.id, time.time(), 0))
        return ProbeResult(ok=True, duration=0.0)

    targets = [make_target(f"t{i}", 0.25, 0.1) for i in range(50)]
    rec = Recorder(400)
    sched = Scheduler(targets, max_concurrency=1000, on_result=rec.on_result,
                      on_missed=rec.on_missed, prober_for=lambda kind: probe)

    async def main() -> None:
        # a busy loop turn before the scheduler maps its first ticks: libuv's cached
        # clock is then as stale as it gets within its millisecond
        await asyncio.sleep(0)
        await run_until(sched, rec, 10.0)

    (uvloop.run if runner == "uvloop" else asyncio.run)(main())
    assert len(rec.results) >= 400 and not rec.missed
    # each probe's start is paired with its outcome: the prober returns at once
    early = [scheduled - wall for (_, wall, _), (_, scheduled, _) in zip(starts, rec.results,
                                                                          strict=False)]
    # time.time() and the monotonic clock are read a few microseconds apart when mapped
    assert max(early) < 50e-6, sorted(early)[-5:]


async def test_held_definitions_tick_with_their_target_and_report_apart() -> None:
    """A held definition given before run() is scheduled with the targets, at its
    target's own ticks (the phase of its id), and its outcomes reach `on_held` with its
    key, never `on_result`; given again without it, it stops."""
    interval = 0.05
    target = make_target("a", interval, 0.02)
    old = make_target("a", interval, 0.03)  # the same id, another definition
    rec = Recorder(6)
    held: list[tuple[str, float, float, bool | None]] = []
    got_held = asyncio.Event()

    def on_held(key: str, t: Target, scheduled: float, result: ProbeResult | None) -> None:
        held.append((key, t.timeout, scheduled, None if result is None else result.ok))
        if len(held) >= 6:
            got_held.set()

    sched = Scheduler([target], max_concurrency=10, on_result=rec.on_result,
                      on_missed=rec.on_missed, prober_for=prober_taking(0.001),
                      on_held=on_held)
    sched.update_held({"a@1": old})
    task = asyncio.create_task(sched.run())
    try:
        async with asyncio.timeout(10):
            await rec.done.wait()
            await got_held.wait()
        assert {(k, timeout) for k, timeout, _, _ in held} == {("a@1", 0.03)}
        assert {tid for tid, _, _ in rec.results} == {"a"}
        assert all(ok is True for *_, ok in held)
        # the same instants as the target's own ticks
        offset = phase_offset("a", interval)
        for _, _, scheduled, _ in held:
            k = (scheduled - offset) / interval
            assert abs(k - round(k)) < 1e-6
        sched.update_held({})
        assert sched._held == {}
        seen = len(held)
        # two more of the target's ticks: nothing more for the held definition
        rec.want = len(rec.results) + len(rec.missed) + 2
        rec.done.clear()
        async with asyncio.timeout(10):
            await rec.done.wait()
        assert len(held) <= seen + 1  # at most the one probe already in flight
    finally:
        sched.stop()
        await task


async def test_held_definitions_given_while_running_keep_or_replace_their_entry() -> None:
    """Given while running, a held definition is probed and reported to `on_held`; given
    again, equal (even as another object), it keeps its entry and schedule; a tick it
    could not run reaches `on_held` as None."""
    interval = 0.05
    target = make_target("a", interval, 0.02)
    slow = make_target("a", interval, 0.2)  # its probe outlasts the interval
    rec = Recorder(3)
    held: list[tuple[str, bool | None]] = []
    enough = asyncio.Event()

    def on_held(key: str, t: Target, scheduled: float, result: ProbeResult | None) -> None:
        held.append((key, None if result is None else result.ok))
        if sum(1 for _, ok in held if ok is None) >= 2 and any(ok for _, ok in held):
            enough.set()

    def prober_for(kind: str) -> Any:
        fast = prober_taking(0.001)("http")

        async def probe(t: Target, timeout: float) -> ProbeResult:
            if t.timeout == 0.2:  # the held one: slower than its interval
                await asyncio.sleep(0.12)
                return ProbeResult(ok=True, duration=0.12)
            return await fast(t, timeout)

        return probe

    sched = Scheduler([target], max_concurrency=10, on_result=rec.on_result,
                      on_missed=rec.on_missed, prober_for=prober_for, on_held=on_held)
    task = asyncio.create_task(sched.run())
    try:
        async with asyncio.timeout(10):
            await rec.done.wait()
        sched.update_held({"a@2": slow})
        entry = sched._held["a@2"]
        assert sched._entries["a"].target is target  # the target's own entry untouched
        sched.update_held({"a@2": slow.model_copy()})  # equal, another object
        assert sched._held["a@2"] is entry
        async with asyncio.timeout(10):
            await enough.wait()
        assert {key for key, _ in held} == {"a@2"}
        assert {tid for tid, _, _ in rec.results} == {"a"}
    finally:
        sched.stop()
        await task
