"""Feeds each SLA's evidence leaves and closes its periods exactly once.

The verdict is computed by the pure `compute_period_result` from the leaves in
the store, so what slamon decides and what a third party recomputes from the
published leaves cannot differ.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slamon.config.root import Config
from slamon.config.sla import Sla
from slamon.config.slo import Slo
from slamon.config.targets import Target
from slamon.sla.evidence import Leaf
from slamon.sla.maintenance import intervals_by_target
from slamon.sla.periods import due_periods, period_bounds, period_index
from slamon.sla.policy import policy_digest_for, schedule_text
from slamon.sla.result import PeriodResult, compute_period_result
from slamon.sli.slo import is_good
from slamon.store.base import ClosedPeriod, Store

#: periods read and recorded per call to the store when many are due at once (one
#: transaction each; bounded for the catch-up after a long stop)
CLOSE_BATCH = 500

ClosedHook = Callable[[Sla, PeriodResult, ClosedPeriod], Awaitable[None]]


@dataclass(slots=True)
class SlaRuntime:
    sla: Sla
    slo: Slo
    parts: tuple[Target, ...]
    resolution: int
    grace: float
    digest: bytes
    last_closed: int
    first_period: int
    #: start of the first period that may still receive leaves
    open_from: int = 0
    late: int = 0
    #: (last_closed, wall time from which the next period closes): the once-a-second
    #: check of every SLA is then one comparison, not a calendar sum. A reload builds
    #: new runtimes, so `sla` and `grace` never change under the cached value
    _closable: tuple[int, float] | None = None

    def closable_at(self) -> float:
        cached = self._closable
        if cached is None or cached[0] != self.last_closed:
            _, end = period_bounds(self.sla.period, self.last_closed + 1)
            cached = self._closable = (self.last_closed, end + self.grace)
        return cached[1]


def effective_grace(sla: Sla, parts: tuple[Target, ...], flush_interval: float) -> float:
    """Never close before the last probe of the period can have been stored."""
    longest = max((t.timeout for t in parts), default=0.0)
    return max(sla.grace, longest + flush_interval + 1.0)


def ticks_per_bucket(
    after: float, before: float, interval: float, offset: float, resolution: int
) -> dict[int, int]:
    """Scheduled ticks k*interval+offset with after < t < before, counted per bucket."""
    first = math.floor((after - offset) / interval) + 1
    last = math.ceil((before - offset) / interval) - 1
    out: dict[int, int] = {}
    if last < first:
        return out
    k = first
    while k <= last:
        t = k * interval + offset
        bucket = int(t // resolution) * resolution
        # every tick up to the bucket's end in one step
        k_end = min(last, math.ceil((bucket + resolution - offset) / interval) - 1)
        if k_end < k:  # float edge: the tick sits exactly on the boundary
            k_end = k
        out[bucket] = out.get(bucket, 0) + (k_end - k + 1)
        k = k_end + 1
    return out


def schedule_changes(slas: Sequence[Sla], running: Mapping[str, str]) -> list[str]:
    """One line per SLA whose period schedule is not the one it runs under (`running`:
    SLA id -> `schedule_text`, from the tracker or from the store).

    Period ids, the stored periods and the on-chain registration all count in the
    schedule an SLA started with. Changed under the same id, the next period id would
    be read in the new numbering (a monthly SLA's period 682 becomes week 682, in
    1983): such a config must be refused."""
    errors = []
    for i, sla in enumerate(slas):
        was = running.get(sla.id)
        if was is not None and was != (now := schedule_text(sla)):
            errors.append(
                f"slas[{i}] ({sla.id}): the period and evidence_resolution cannot change "
                f"under the same SLA id: its periods are numbered by {was}, the config says "
                f"{now}; restore them, or add the new schedule as a new SLA (a contract "
                "registers an SLA with its schedule, so it needs a new registration too)")
    return errors


class SlaTracker:
    def __init__(
        self,
        config: Config,
        store: Store,
        log: Any,
        on_closed: ClosedHook | None = None,
        flush_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.log = log
        self.on_closed = on_closed
        self.flush_interval = flush_interval
        self.config = config
        self.slas: dict[str, SlaRuntime] = {}
        self._by_target: dict[str, list[SlaRuntime]] = {}
        self.closed_total: dict[tuple[str, str], int] = {}
        self.last_result: dict[str, PeriodResult] = {}
        #: SLAs a reload added, whose start and schedule the store has yet to get
        self._unsaved: dict[str, tuple[int, str]] = {}
        #: the schedule of every SLA the store has progress of, running or not (a running
        #: SLA's is its config's: a reload that would change it is refused)
        self._schedules: dict[str, str] = {}

    # -- set-up -----------------------------------------------------------
    async def start(
        self,
        sla_progress: dict[str, tuple[int, int]],
        start_at: float,
        schedules: Mapping[str, str] | None = None,
    ) -> None:
        """Resume each SLA where it stopped; a new SLA starts with the current period.

        `schedules` are the ones stored (the caller has refused a config that changes
        one: `schedule_changes`); the SLAs without one get theirs written."""
        stored = schedules or {}
        self._build(self.config, sla_progress, start_at)
        new = [(rt.sla.id, rt.first_period, schedule_text(rt.sla)) for rt in self.slas.values()
               if rt.sla.id not in stored]
        await self.store.set_sla_starts(new)
        self._schedules = {**stored, **{sid: schedule for sid, _, schedule in new}}

    def _build(
        self, config: Config, sla_progress: dict[str, tuple[int, int]], start_at: float
    ) -> None:
        targets = {t.id: t for t in config.targets}
        slos = {s.id: s for s in config.slos}
        self.slas = {}
        for sla in config.slas:
            slo = slos[sla.slo]
            parts = tuple(targets[t] for t in slo.targets)
            if sla.id in sla_progress:
                last_closed, first = sla_progress[sla.id]
            else:
                first = period_index(sla.period, start_at)
                last_closed = first - 1
            rt = SlaRuntime(
                sla=sla,
                slo=slo,
                parts=parts,
                resolution=sla.resolution_s,
                grace=effective_grace(sla, parts, self.flush_interval),
                digest=policy_digest_for(sla, slo, config),
                last_closed=last_closed,
                first_period=first,
            )
            rt.open_from = period_bounds(sla.period, last_closed + 1)[0]
            self.slas[sla.id] = rt
        self._by_target = {}
        for rt in self.slas.values():
            for part in rt.parts:
                self._by_target.setdefault(part.id, []).append(rt)

    def schedule_errors(self, config: Config) -> list[str]:
        """`schedule_changes` of `config` against the schedules the SLAs run under, and
        those of SLAs a reload removed (their periods stay stored under their id)."""
        return schedule_changes(config.slas, self._schedules)

    def apply_config(self, config: Config, now: float) -> None:
        """Reload: SLAs keep their progress; new ones start with the current period.

        The caller has refused a config for which `schedule_errors` is not empty."""
        progress = {sid: (rt.last_closed, rt.first_period) for sid, rt in self.slas.items()}
        self.config = config
        self._build(config, progress, now)
        added = {sid: (rt.first_period, schedule_text(rt.sla))
                 for sid, rt in self.slas.items() if sid not in progress}
        self._unsaved.update(added)
        for sid, (_, schedule) in added.items():
            self._schedules.setdefault(sid, schedule)

    def fill_gaps(
        self,
        progress: dict[str, float],
        start_at: float,
        offset_of: Callable[[Target], float],
    ) -> int:
        """Record as no data every tick slamon did not run while it was down.

        From the last stored tick (or the start of the first open period) up to
        the first tick of this run. Returns the number of ticks filled.
        """
        filled = 0
        latest: dict[str, float] = {}
        for target_id, runtimes in self._by_target.items():
            target = runtimes[0].parts[[p.id for p in runtimes[0].parts].index(target_id)]
            offset = offset_of(target)
            for rt in runtimes:
                after = max(progress.get(target_id, -math.inf), rt.open_from - 1e-6)
                counts = ticks_per_bucket(after, start_at, target.interval, offset,
                                          rt.resolution)
                for bucket, n in counts.items():
                    self.store.add_leaf(rt.sla.id, target_id, bucket, 0, 0, n)
                    filled += n
                if counts:
                    last_k = math.ceil((start_at - offset) / target.interval) - 1
                    latest[target_id] = max(latest.get(target_id, -math.inf),
                                            last_k * target.interval + offset)
        for target_id, t in latest.items():
            if t > progress.get(target_id, -math.inf):
                self.store.batch.progress[target_id] = max(
                    t, self.store.batch.progress.get(target_id, -math.inf))
        return filled

    # -- recording --------------------------------------------------------
    def record(self, target: Target, t: float, ok: bool, duration: float) -> None:
        for rt in self._by_target.get(target.id, ()):
            if t < rt.open_from:
                rt.late += 1  # its period is closed already: the root is final
                continue
            bucket = int(t // rt.resolution) * rt.resolution
            good = 1 if is_good(rt.slo, ok, duration) else 0
            self.store.add_leaf(rt.sla.id, target.id, bucket, good, 1, 0)

    def record_missed(self, target: Target, t: float) -> None:
        for rt in self._by_target.get(target.id, ()):
            if t < rt.open_from:
                rt.late += 1
                continue
            bucket = int(t // rt.resolution) * rt.resolution
            self.store.add_leaf(rt.sla.id, target.id, bucket, 0, 0, 1)

    # -- closing ----------------------------------------------------------
    async def close_due(self, now: float | None = None) -> list[PeriodResult]:
        """Close every period whose end + grace has passed, oldest first per SLA.

        Periods due together (every SLA of a kind ends its period at the same
        instant) are read and recorded CLOSE_BATCH at a time: one call to the
        store's thread for their leaves and one transaction for their records."""
        now = time.time() if now is None else now
        if self._unsaved:
            unsaved, self._unsaved = self._unsaved, {}
            await self.store.set_sla_starts(
                [(sid, first, schedule) for sid, (first, schedule) in unsaved.items()])
        due = (
            (rt, n)
            for rt in list(self.slas.values()) if now >= rt.closable_at()
            for n in list(due_periods(rt.sla.period, rt.last_closed, now, rt.grace))
        )
        closed: list[PeriodResult] = []
        flushed = False
        while chunk := list(itertools.islice(due, CLOSE_BATCH)):
            if not flushed:
                await self.store.flush()  # the periods' last leaves must be in
                flushed = True
            closed.extend(await self._close(chunk, now))
        return closed

    async def compute(self, rt: SlaRuntime, n: int) -> PeriodResult:
        """The result of period n from the leaves stored so far (final once closed)."""
        start, end = period_bounds(rt.sla.period, n)
        rows = await self.store.period_leaves(rt.sla.id, start, end)
        return self._result(rt, start, end, rows)

    def _result(self, rt: SlaRuntime, start: int, end: int,
                rows: dict[str, list[tuple[int, int, int, int]]]) -> PeriodResult:
        leaves = {
            target: [Leaf(target, b, g, v, nd) for b, g, v, nd in items]
            for target, items in rows.items()
        }
        maint = intervals_by_target(
            self.config.maintenance, start, end, [p.id for p in rt.parts], rt.sla.id
        )
        return compute_period_result(
            rt.sla, (start, end), leaves, maint, len(rt.parts) > 1,
            slo_objective=rt.slo.objective,
        )

    async def _close(self, due: list[tuple[SlaRuntime, int]], now: float) -> list[PeriodResult]:
        spans = [period_bounds(rt.sla.period, n) for rt, n in due]
        rows = await self.store.periods_leaves(
            [(rt.sla.id, start, end) for (rt, _), (start, end) in zip(due, spans, strict=True)])
        results = [self._result(rt, start, end, r)
                   for (rt, _), (start, end), r in zip(due, spans, rows, strict=True)]
        records = [
            ClosedPeriod(
                sla=rt.sla.id,
                period=n,
                start=result.start,
                end=result.end,
                closed_at=now,
                result=result.to_json(),
                root=result.evidence_root,
                policy_digest=rt.digest,
            )
            for (rt, n), result in zip(due, results, strict=True)
        ]
        inserted = await self.store.close_periods(
            [(record, rt.first_period) for (rt, _), record in zip(due, records, strict=True)])
        for (rt, n), result, record, new in zip(due, results, records, inserted, strict=True):
            rt.last_closed = n
            rt.open_from = result.end
            self.last_result[rt.sla.id] = result
            if not new:
                continue
            key = (rt.sla.id, result.verdict)
            self.closed_total[key] = self.closed_total.get(key, 0) + 1
            self.log.info(
                "period_closed",
                sla=rt.sla.id,
                period=n,
                verdict=result.verdict,
                sli_ppm=result.sli_ppm,
                good=result.good,
                valid=result.valid,
                no_data=result.no_data,
            )
            if self.on_closed is not None:
                await self.on_closed(rt.sla, result, record)
        return results
