"""SLA period arithmetic: period ids and [start, end) bounds in unix seconds.

Pure: time is passed in. Period ids are stable integers (they go on-chain):

- hourly:  local hours since 1970-01-01T00:00 (wall clock of the zone)
- daily:   local days since 1970-01-01
- weekly:  weeks since the week start on or before 1970-01-01 (a Thursday);
           with the default Monday start, week 0 begins 1969-12-29
- monthly: (year - 1970) * 12 + (month - 1), local calendar
- fixed:   floor((t - anchor) / length); period 0 starts at the anchor

In UTC these are t // 3600, t // 86400, (t // 86400 + 3) // 7 (Monday start)
and the calendar month count.

Calendar periods in a named zone start at a local wall-clock label (e.g.
"2024-03-31 00:00" for a day). A label maps to the *first instant at which the
zone's wall clock reads that label or later*:

- an ambiguous label (clock set back) is its first occurrence, so the
  repeated hour belongs to the period that was already running;
- a nonexistent label (clock set forward over it) is the instant of the jump.

Periods are therefore contiguous and never overlap; DST days last 23 or 25 h.
A period whose start and end labels map to the same instant (a local hour
skipped by DST, or Samoa's skipped 2011-12-30) is *empty*: it contains no
time, `period_index` never returns it, and it is never closed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from slamon.config.sla import PeriodSpec
from slamon.wallclock import WEEKDAYS, local_naive, resolve_local

_EPOCH = datetime(1970, 1, 1)
_EPOCH_DATE = date(1970, 1, 1)


def _week_epoch(spec: PeriodSpec) -> date:
    start = WEEKDAYS.index(spec.week_start)
    return _EPOCH_DATE - timedelta(days=(_EPOCH_DATE.weekday() - start) % 7)


def _label(spec: PeriodSpec, n: int) -> datetime:
    """Local wall-clock start label of calendar period n."""
    if spec.kind == "hourly":
        return _EPOCH + timedelta(hours=n)
    if spec.kind == "daily":
        return _EPOCH + timedelta(days=n)
    if spec.kind == "weekly":
        return datetime.combine(_week_epoch(spec) + timedelta(days=7 * n), datetime.min.time())
    if spec.kind == "monthly":
        year, month0 = divmod(n, 12)
        return datetime(1970 + year, month0 + 1, 1)
    raise ValueError(f"not a calendar period kind: {spec.kind}")


def _guess(spec: PeriodSpec, local: datetime) -> int:
    """Id of the period whose label precedes wall-clock time `local`."""
    if spec.kind == "hourly":
        return (local - _EPOCH) // timedelta(hours=1)
    if spec.kind == "daily":
        return (local.date() - _EPOCH_DATE).days
    if spec.kind == "weekly":
        return (local.date() - _week_epoch(spec)).days // 7
    return (local.year - 1970) * 12 + local.month - 1


def period_bounds(spec: PeriodSpec, n: int) -> tuple[int, int]:
    """[start, end) of period n in unix seconds (start == end for an empty period)."""
    if spec.kind == "fixed":
        start = spec.anchor_s + n * spec.length_s
        return start, start + spec.length_s
    return _calendar_bounds(spec, n)


# A calendar period's bounds take two zone conversions (~4 us): a start-up with 10,000
# SLAs asks the same few periods of equal specs tens of thousands of times
@functools.lru_cache(maxsize=1024)
def _calendar_bounds(spec: PeriodSpec, n: int) -> tuple[int, int]:
    tz = spec.tz
    return resolve_local(_label(spec, n), tz), resolve_local(_label(spec, n + 1), tz)


def period_index(spec: PeriodSpec, t: float) -> int:
    """Id of the (non-empty) period containing unix time `t`."""
    if spec.kind == "fixed":
        return int((t - spec.anchor_s) // spec.length_s)
    sec = int(t // 1)  # boundaries are whole seconds
    n = _guess(spec, local_naive(sec, spec.tz))
    # The label rule can move the repeated hour of a fall-back into the next
    # period, and skip empty periods: settle on the period that holds `sec`.
    while True:
        start, end = period_bounds(spec, n)
        if sec < start:
            n -= 1
        elif sec >= end:
            n += 1
        else:
            return n


def last_closable(spec: PeriodSpec, now: float, grace: float) -> int:
    """Highest period id whose end + grace <= now (it may be closed)."""
    return period_index(spec, now - grace) - 1


def due_periods(spec: PeriodSpec, last_closed: int, now: float, grace: float) -> Iterator[int]:
    """Non-empty periods after `last_closed` that are ready to close, oldest first.

    The caller persists `last_closed` so each period closes exactly once.
    """
    last = last_closable(spec, now, grace)
    for n in range(last_closed + 1, last + 1):
        start, end = period_bounds(spec, n)
        if end > start:
            yield n
