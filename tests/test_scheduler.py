"""Scheduler: monotonic deadlines, no drift, spread phases, no double flight, missed ticks.

The probers here are real coroutines that take a chosen time, so the test is
about scheduling only (the real probers have their own tests against real
servers). Intervals are below the config's 1 s minimum to keep tests short;
`model_construct` skips that validation on purpose.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections import Counter, defaultdict

import pytest

from slamon.config.targets import Target
from slamon.probers.base import FailureReason, ProbeResult
from slamon.scheduler import Scheduler, phase_offset


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
