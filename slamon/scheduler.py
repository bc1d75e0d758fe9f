"""Runs every target on its own interval, on monotonic deadlines.

One dispatcher coroutine and a heap of deadlines instead of one sleeping task
per target: 10,000 targets cost one timer, not 10,000.

Ticks are aligned to wall-clock multiples of the interval plus a stable
per-target phase (hash of the id), so a restarted slamon probes at the same
scheduled times as before. Phases fall on a grid of slots (5-50 ms, by the
probes a second): targets are spread over the interval, and those whose phases
share a slot start together, at one wake-up of the loop instead of one each.
Every tick ends in exactly one of: a probe, or a *missed* tick (slamon could
not run it in time: no data, never good or bad).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from slamon.config.process import DEFAULT_SLOT
from slamon.config.targets import Target
from slamon.probers.base import FailureReason, Prober, ProbeResult

ResultCallback = Callable[[Target, float, ProbeResult], None]
MissedCallback = Callable[[Target, float], None]
#: the outcome of a held definition's tick (`slamon.sla.held`): its key, the target as
#: held, the tick's wall time and the result, None for a tick not run
HeldCallback = Callable[[str, Target, float, ProbeResult | None], None]

#: extra time past a prober's own timeout before the scheduler gives up on it
SAFETY_MARGIN = 0.5
#: uvloop rounds a timer's delay to the nearest millisecond and fires it once its clock,
#: floored to the millisecond, reaches that: a timer set for a due time fires up to
#: 0.5 ms early. On uvloop the dispatch timer is set this much past the due time, so it
#: does not fire early and then again for the same tick (a wake-up of an otherwise idle
#: loop costs about as much CPU as a probe's Python). On any loop, a timer that still
#: fires early is set this much past the due time again, rather than spinning until the
#: clock passes it. A tick never starts early (a target's server may judge a request by
#: its arrival time)
TIMER_SLACK = 0.0006
#: a timer of asyncio's own loop may fire up to its clock resolution early (and a due
#: time computed in floats is off by an ulp): a tick this close counts as due
_DUE_TOLERANCE = 1e-6
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def phase_offset(target_id: str, interval: float, slot: float = DEFAULT_SLOT) -> float:
    """Stable offset in [0, interval): the same on every host and every restart.

    A multiple of `slot` (when it is above 0): at 10,000 targets on 10 s, ~20 targets
    share each 20 ms slot and start at one wake-up of the loop. A wake-up of an
    otherwise idle loop costs more CPU than a probe's Python, so probes each on its
    own instant cost up to twice as much (docs/benchmarks.md).
    """
    digest = hashlib.blake2b(target_id.encode(), digest_size=8).digest()
    offset = (int.from_bytes(digest, "big") / 2**64) * interval
    if slot > 0:
        # the slot's index times the slot, not offset - offset % slot: the same float
        # for every target in the slot, so they share a due time to the last bit
        k = math.floor(offset / slot)
        if k * slot > offset:  # the quotient rounded up to the next whole number
            k -= 1
        offset = k * slot
    return offset


def target_phase(target: Target, spread: bool, slot: float) -> float:
    """Where in its interval a target ticks: its `phase_offset`, or 0 with
    `scheduler.spread` off. The scheduler and the gap filler both place ticks by it."""
    return phase_offset(target.id, target.interval, slot) if spread else 0.0


#: the slots `auto_slot` picks from, largest first
AUTO_SLOTS = (DEFAULT_SLOT, 0.02, 0.01, 0.005)
#: probes a slot `auto_slot` aims at, at most on average: starting ~20 probes takes
#: ~1-2 ms, so even while a scrape shares the GIL none starts 10 ms late, where 50 did
#: (docs/benchmarks.md, "Probes started in slots")
PER_SLOT = 20


def auto_slot(intervals: Iterable[float]) -> float:
    """The slot for targets probed at these intervals: the largest of `AUTO_SLOTS` that
    holds `PER_SLOT` probes or fewer on average (50 ms up to 400 probes a second, 20 ms
    at 10,000 targets on 10 s)."""
    rate = sum(1.0 / i for i in intervals if i > 0)
    for slot in AUTO_SLOTS:
        if rate * slot <= PER_SLOT + 1e-9:  # 400 * 0.05 is 20.000000000000004
            return slot
    return AUTO_SLOTS[-1]


def resolve_slot(given: float | None, targets: Iterable[Target]) -> float:
    """The slot a process runs with: the configured one, or (None: `auto`) the
    `auto_slot` of the targets it starts with."""
    return auto_slot(t.interval for t in targets) if given is None else given


def timer_slack(loop: asyncio.AbstractEventLoop) -> float:
    """How far past a due time to set a timer on `loop` so it does not fire before it."""
    return TIMER_SLACK if type(loop).__module__.partition(".")[0] == "uvloop" else 0.0


def first_tick(start_at: float, interval: float, offset: float) -> int:
    """Index of the first tick at or after `start_at`."""
    return math.ceil((start_at - offset) / interval)


@dataclass(eq=False, slots=True)
class _Entry:
    target: Target
    prober: Prober
    interval: float
    offset: float
    tick: int = 0  # index k: scheduled wall time = k * interval + offset
    due: float = 0.0  # loop time of tick k
    busy: bool = False  # a probe queued or in flight: never two at once
    removed: bool = False
    #: ticks missed while busy, reported once the busy tick's outcome is: outcomes
    #: reach the callbacks in tick order, so a "last stored tick" watermark is exact
    deferred: list[int] = field(default_factory=list)
    #: the key of a held definition (probed for SLA periods only), None for a target
    held: str | None = None

    def wall(self, tick: int) -> float:
        return tick * self.interval + self.offset


@dataclass(slots=True)
class LagHistogram:
    """Cumulative histogram kept as plain ints; the metrics collector reads it."""

    buckets: tuple[float, ...] = LAG_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0
    max: float = 0.0

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        if value > self.max:
            self.max = value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def cumulative(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            running += n
            out.append((repr(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out


class StallMonitor:
    """Notices when the event loop itself stopped running (a long scrape, GC, swap).

    A probe that fails while slamon was frozen did not measure the target: its
    timeout ran out while nothing could run. Such a probe is *no data*, never bad.

    The loop must check in at least every `PERIOD`; one that checks in `THRESHOLD` or
    more late was frozen. The monitor's own timer is one way to check in; the
    scheduler's wake-ups are another (`check_in`). With probes due every few
    milliseconds the timer is pushed on before it fires, so the monitor costs the
    loop no wake-up of its own: on an otherwise idle loop a wake-up costs about as
    much CPU as a probe's Python (docs/benchmarks.md).
    """

    #: how often the loop must check in; a check-in this much late or more is a stall
    PERIOD = 0.05
    THRESHOLD = 0.2

    def __init__(self, keep: int = 256) -> None:
        self.stalls: deque[tuple[float, float]] = deque(maxlen=keep)  # loop times
        self.longest = 0.0
        #: when the loop should check in next: past it, a stall is in progress
        self.expected = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    async def run(self) -> None:
        """Watch until cancelled."""
        loop = self._loop = asyncio.get_running_loop()
        self.expected = loop.time() + self.PERIOD
        self._rearm()
        try:
            await loop.create_future()  # only a cancel ends it
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self._loop, self._timer, self._timer_at = None, None, math.inf

    def check_in(self, now: float) -> None:
        """The loop is running at `now` (loop time): a check-in, as the monitor's own
        timer firing would be. The timer moves on only once it is within half a period,
        so at most two re-arms a period, however often the loop checks in."""
        if self._loop is None:
            return
        self._check(now)
        if self._timer_at < now + 0.5 * self.PERIOD:
            self._rearm()

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        loop = self._loop
        if loop is None:
            return
        self._check(loop.time())
        self._rearm()

    def _check(self, now: float) -> None:
        late = now - self.expected
        if late >= self.THRESHOLD:
            self.stalls.append((self.expected, now))
            self.longest = max(self.longest, late)
        self.expected = now + self.PERIOD

    def _rearm(self) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = self.expected
        self._timer = self._loop.call_at(self.expected, self._on_timer)

    def stalled(self, start: float, end: float) -> float:
        """Seconds of stall overlapping [start, end] (loop time), counting one still in
        progress: right after a freeze, a probe may resume before the monitor does."""
        spans = list(self.stalls)
        if end - self.expected >= self.THRESHOLD:
            spans.append((self.expected, end))
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans if b > start and a < end)


def stalled_verdict(
    result: ProbeResult, frozen: float, timeout: float, max_response_time: float | None = None
) -> bool:
    """Whether a failed probe's verdict is explained by slamon's own loop freeze.

    "Too slow" is voided when the response time less the freeze is within the limit:
    the target was fast, slamon's clock ran on while it could not read the answer.
    Any other failure (a timeout included: a hanging target stays hanging, however
    long slamon froze) only when the freeze took half the timeout or more, so the
    probe barely ran at all.
    """
    if frozen <= 0:
        return False
    if (
        result.reason is FailureReason.TOO_SLOW
        and max_response_time is not None
        and frozen >= StallMonitor.THRESHOLD
        and result.duration - frozen <= max_response_time
    ):
        return True
    return frozen >= 0.5 * timeout


@dataclass(slots=True)
class SchedulerStats:
    lag: LagHistogram = field(default_factory=LagHistogram)
    missed: int = 0
    #: failed probes turned into no data because the loop stalled during them
    stalled: int = 0
    started: int = 0
    completed: int = 0
    in_flight: int = 0


class Scheduler:
    def __init__(
        self,
        targets: Iterable[Target],
        *,
        max_concurrency: int,
        on_result: ResultCallback,
        on_missed: MissedCallback,
        spread: bool = True,
        slot: float | None = None,
        prober_for: Callable[[str], Prober] | None = None,
        start_at: float | None = None,
        on_held: HeldCallback | None = None,
    ) -> None:
        self._max_concurrency = max_concurrency
        self._on_result = on_result
        self._on_missed = on_missed
        self._spread = spread
        if prober_for is None:
            from slamon.probers import get_prober

            prober_for = get_prober
        self._prober_for = prober_for
        self._entries: dict[str, _Entry] = {}
        #: held definitions by key: probed like targets, their outcomes to `on_held`
        self._held: dict[str, _Entry] = {}
        self._on_held = on_held
        self._initial_held: dict[str, Target] = {}
        #: (due, seq): numbers only, so the garbage collector stops tracking each pair the
        #: first time it sees it. With the entry in the tuple, every target's pair stayed
        #: tracked and every full collection walked them (docs/benchmarks.md)
        self._heap: list[tuple[float, int]] = []
        #: each pushed seq's entry, until popped
        self._queued: dict[int, _Entry] = {}
        self._seq = 0
        self._pending: deque[tuple[_Entry, int, float]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        #: probes the guard cancelled (told apart from a cancel by whoever stops us)
        self._overran: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the one timer of the scheduler: due at the heap's head
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        #: how far past a due time the dispatch timer is set on this loop (`timer_slack`)
        self._slack = 0.0
        self._stopped: asyncio.Future[None] | None = None
        self._stopping = False
        self._first_round: asyncio.Event | None = None
        self._initial_targets = list(targets)
        #: fixed for the scheduler's life, so a target's phase never moves while it runs
        #: (None: `auto_slot` of the targets it starts with)
        self._slot = resolve_slot(slot, self._initial_targets)
        #: wall time from which ticks are run: the state store fills the ticks
        #: before it as no data, so the two must agree on this instant
        self._start_at = start_at
        self.stats = SchedulerStats()
        self.stall_monitor = StallMonitor()

    # -- public -----------------------------------------------------------
    @property
    def target_ids(self) -> list[str]:
        return list(self._entries)

    async def run(self) -> None:
        """Dispatch ticks until stop(); then let in-flight probes finish."""
        loop = self._loop = asyncio.get_running_loop()
        self._slack = timer_slack(loop)
        self._stopped = loop.create_future()
        self._first_round = asyncio.Event()
        for target in self._initial_targets:
            self._add(target, self._start_at)
        self._initial_targets = []
        for key, target in self._initial_held.items():
            self._add(target, self._start_at, key)
        self._initial_held = {}
        monitor = loop.create_task(self.stall_monitor.run(), name="stall-monitor")
        await asyncio.sleep(0)  # the monitor is watching before the first probe starts
        self._first_round.set()
        try:
            if not self._stopping:
                self._arm()
                await self._stopped
        finally:
            self._disarm()
            monitor.cancel()
        await self.drain()

    # Dispatch is a plain timer callback, not a coroutine waiting on an Event under a
    # timeout: at 1,000 due times a second that wait (a Timeout, a future, a cancelled
    # task and its exception, per wake-up) cost more CPU than the probes' own Python.
    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        loop = self._loop
        if self._stopping or loop is None:
            return
        now = loop.time()
        self.stall_monitor.check_in(now)
        early = bool(self._heap) and self._heap[0][0] > now + _DUE_TOLERANCE
        try:
            self._dispatch_due(now, loop)
        except BaseException as exc:  # a callback's bug ends run() with it, as it always did
            if self._stopped is not None and not self._stopped.done():
                self._stopped.set_exception(exc)
            return
        self._arm(TIMER_SLACK if early else self._slack)

    def _arm(self, slack: float | None = None) -> None:
        """Have the timer fire at the heap's head (sooner only: later is re-armed)."""
        loop = self._loop
        if loop is None or self._stopping or not self._heap:
            return
        due = self._heap[0][0]
        if due >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = loop.call_at(due + (self._slack if slack is None else slack),
                                   self._on_timer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf

    async def wait_scheduled(self) -> None:
        """Return once every target has its first tick scheduled (for READY=1)."""
        while self._first_round is None:
            await asyncio.sleep(0)
        await self._first_round.wait()

    def stop(self) -> None:
        """Stop scheduling new ticks; run() returns once in-flight probes end."""
        self._stopping = True
        self._pending.clear()
        self._disarm()
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def slot(self) -> float:
        """The grid the phases fall on, fixed for the scheduler's life (0: none)."""
        return self._slot

    def update_targets(self, targets: Iterable[Target]) -> None:
        """Apply a reload: unchanged targets keep their schedule; removed ones stop."""
        self._update(self._entries, {t.id: t for t in targets}, held=False)

    def update_held(self, held: Mapping[str, Target]) -> None:
        """The held definitions to probe, by key (`SlaTracker.held_targets`): each is
        probed at its target's own ticks and its outcomes go to `on_held`; one no longer
        given stops."""
        if self._loop is None:  # not running yet: run() schedules them
            self._initial_held = dict(held)
            return
        self._update(self._held, held, held=True)

    def _update(self, entries: dict[str, _Entry], new: Mapping[str, Target],
                held: bool) -> None:
        for key, entry in list(entries.items()):
            given = new.get(key)
            if given is None or (given is not entry.target and given != entry.target):
                entry.removed = True
                del entries[key]
        for key, target in new.items():
            if key not in entries:
                self._add(target, None, key if held else None)
        self._arm()

    # -- internals --------------------------------------------------------
    def _add(self, target: Target, start_at: float | None = None,
             held: str | None = None) -> None:
        interval = target.interval
        # a held definition ticks when its target did: the instants its period counts
        offset = target_phase(target, self._spread, self.slot)
        entry = _Entry(target, self._prober_for(target.kind), interval, offset, held=held)
        # Wall time is mapped through time.monotonic(), the clock both asyncio's and
        # uvloop's loop.time() read, not through loop.time() itself: uvloop floors it to
        # the millisecond, and a tick mapped from a floored reading starts up to 1 ms
        # before its wall-clock time, which a server judging by arrival counts as the
        # tick before
        wall_now, mono_now = time.time(), time.monotonic()
        entry.tick = first_tick(wall_now if start_at is None else start_at, interval, offset)
        entry.due = mono_now + (entry.wall(entry.tick) - wall_now)
        if held is None:
            self._entries[target.id] = entry
        else:
            self._held[held] = entry
        self._push(entry)

    def _push(self, entry: _Entry) -> None:
        self._seq += 1
        self._queued[self._seq] = entry
        heapq.heappush(self._heap, (entry.due, self._seq))

    def _dispatch_due(self, now: float, loop: asyncio.AbstractEventLoop) -> None:
        heap, queued = self._heap, self._queued
        horizon = now + _DUE_TOLERANCE
        while heap and heap[0][0] <= horizon:
            due, seq = heapq.heappop(heap)
            entry = queued.pop(seq)
            if entry.removed:
                continue
            tick = entry.tick
            entry.tick += 1
            entry.due = due + entry.interval
            self._push(entry)
            if entry.busy:
                entry.deferred.append(tick)  # still probing an earlier tick
            elif now >= due + entry.interval:
                self._missed(entry, tick)  # so late the next tick is already due
            elif self.stats.in_flight < self._max_concurrency:
                self._start(entry, tick, due, now, loop)
            else:
                entry.busy = True
                self._pending.append((entry, tick, due))

    def _missed(self, entry: _Entry, tick: int) -> None:
        self.stats.missed += 1
        if entry.held is None:
            self._on_missed(entry.target, entry.wall(tick))
        elif self._on_held is not None:
            self._on_held(entry.held, entry.target, entry.wall(tick), None)

    def _start(
        self,
        entry: _Entry,
        tick: int,
        due: float,
        now: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        entry.busy = True
        self.stats.in_flight += 1
        self.stats.started += 1
        self.stats.lag.observe(max(0.0, now - due))
        task = loop.create_task(self._probe(entry, tick))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _probe(self, entry: _Entry, tick: int) -> None:
        target = entry.target
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.current_task()
        assert task is not None
        # a prober keeps its own timeout; this guard is for a prober bug. A timer handle,
        # not asyncio.timeout(): that costs a Timeout object and a reschedule per probe
        guard = loop.call_at(started + target.timeout + SAFETY_MARGIN, self._overrun, task)
        try:
            result = await entry.prober(target, target.timeout)
        except asyncio.CancelledError:
            if task not in self._overran:
                raise
            task.uncancel()
            result = ProbeResult.failure(
                FailureReason.TIMEOUT, loop.time() - started, "prober overran its timeout"
            )
        except Exception as exc:  # a prober bug must not kill the scheduler
            result = ProbeResult.failure(
                FailureReason.OTHER, loop.time() - started, f"internal error: {type(exc).__name__}"
            )
        finally:
            guard.cancel()
            self._overran.discard(task)
            self.stats.in_flight -= 1
            self.stats.completed += 1
        try:
            if not entry.removed:
                if not result.ok and stalled_verdict(
                    result,
                    self.stall_monitor.stalled(started, loop.time()),
                    target.timeout,
                    target.http.max_response_time if target.http is not None else None,
                ):
                    # slamon, not the target, failed to run this probe: no data
                    self.stats.stalled += 1
                    self._missed(entry, tick)
                elif entry.held is None:
                    self._on_result(target, entry.wall(tick), result)
                elif self._on_held is not None:
                    self._on_held(entry.held, target, entry.wall(tick), result)
        finally:
            self._release(entry)

    def _overrun(self, task: asyncio.Task[None]) -> None:
        if not task.done():
            self._overran.add(task)
            task.cancel()

    def _release(self, entry: _Entry) -> None:
        """The busy tick has its outcome: report the ticks missed meanwhile, in order."""
        entry.busy = False
        if not entry.deferred:
            # the usual case: no new list per probe, none for a full collection to walk
            return
        deferred, entry.deferred = entry.deferred, []
        if not entry.removed:
            for tick in deferred:
                self._missed(entry, tick)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # on_result raised: keep going, the callback owner logs its own errors
            pass
        self._start_pending()

    def _start_pending(self) -> None:
        if not self._pending:
            return
        loop = asyncio.get_event_loop()
        now = loop.time()
        while self._pending and self.stats.in_flight < self._max_concurrency:
            entry, tick, due = self._pending.popleft()
            if entry.removed:
                entry.busy = False
                continue
            if now >= due + entry.interval:
                self._missed(entry, tick)
                self._release(entry)
                continue
            self._start(entry, tick, due, now, loop)
