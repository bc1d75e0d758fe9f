"""Maintenance windows: when they are active, as merged [start, end) intervals.

Pure: time is passed in (unix seconds). Recurring windows (weekly, cron) are
defined in local wall-clock time of their zone; each occurrence starts at the
first instant the wall clock reads its start time or later (an ambiguous time
uses its first occurrence, a time skipped by DST starts at the jump, exactly
like period boundaries in slamon.periods) and lasts `duration` elapsed seconds.

Scope: a window applies to a (target, sla) query when, for each dimension, the
window's list is empty (= all) or contains the queried id. Passing None for a
dimension means "not about a particular one": then only windows with an empty
list in that dimension match. That is deliberately strict, so a window for one
target never leaks into another target's accounting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slamon.config.sla import MaintenanceWindow

Interval = tuple[float, float]

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DOWS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


@dataclass(frozen=True)
class CronSpec:
    """A parsed 5-field cron expression. Day-of-week: 0 = Sunday (7 also accepted).

    As in Vixie cron, when both day-of-month and day-of-week are restricted
    (neither starts with `*`), a day matches if *either* matches.
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_star: bool
    dow_star: bool

    def day_matches(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def matches(self, local: datetime) -> bool:
        return (
            local.minute in self.minutes
            and local.hour in self.hours
            and self.day_matches(local.date())
        )


def _field(text: str, lo: int, hi: int, names: dict[str, int], what: str) -> frozenset[int]:
    def num(tok: str) -> int:
        tok = tok.lower()
        if tok in names:
            return names[tok]
        if not tok.isdigit():
            raise ValueError(f"invalid {what} value {tok!r}")
        value = int(tok)
        if not lo <= value <= hi:
            raise ValueError(f"{what} value {value} is outside {lo}-{hi}")
        return value

    out: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ValueError(f"empty item in {what} field")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"invalid step {step_text!r} in {what} field")
            step = int(step_text)
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = num(a), num(b)
            if first > last:
                raise ValueError(f"invalid range {base!r} in {what} field")
        else:
            first = num(base)
            last = hi if slash else first
        out.update(range(first, last + 1, step))
    return frozenset(out)


def parse_cron(expr: str) -> CronSpec:
    """Parse "min hour dom month dow" with `*`, lists, ranges, steps and names."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {expr!r} needs 5 fields: minute hour day-of-month month day-of-week"
        )
    minute, hour, dom, month, dow = fields
    weekdays = _field(dow, 0, 7, _DOWS, "day-of-week")
    weekdays = frozenset(d % 7 for d in weekdays)
    return CronSpec(
        minutes=_field(minute, 0, 59, {}, "minute"),
        hours=_field(hour, 0, 23, {}, "hour"),
        days=_field(dom, 1, 31, {}, "day-of-month"),
        months=_field(month, 1, 12, _MONTHS, "month"),
        weekdays=weekdays,
        dom_star=dom.startswith("*"),
        dow_star=dow.startswith("*"),
    )


_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: str) -> time:
    match = _HHMM.match(value.strip())
    if not match:
        raise ValueError(f"invalid time of day {value!r}: use HH:MM, e.g. 02:30")
    return time(int(match.group(1)), int(match.group(2)))


def weekly_cron(days: Iterable[str], start: str) -> CronSpec:
    """A weekly window is the cron schedule "M H * * days"."""
    from slamon.config.sla import WEEKDAYS

    at = parse_hhmm(start)
    return CronSpec(
        minutes=frozenset({at.minute}),
        hours=frozenset({at.hour}),
        days=frozenset(range(1, 32)),
        months=frozenset(range(1, 13)),
        weekdays=frozenset((WEEKDAYS.index(d) + 1) % 7 for d in days),
        dom_star=True,
        dow_star=False,
    )


def _cron_starts(cron: CronSpec, tz_name: str, lo: float, hi: float) -> Iterator[int]:
    """Unix start instants of occurrences with lo <= start < hi, ascending."""
    from slamon.config.sla import zone
    from slamon.periods import local_naive, resolve_local

    tz = zone(tz_name)
    day = local_naive(int(lo // 1), tz).date() - timedelta(days=1)
    last = local_naive(int(hi // 1) + 1, tz).date() + timedelta(days=1)
    hours = sorted(cron.hours)
    minutes = sorted(cron.minutes)
    prev = None
    while day <= last:
        if cron.day_matches(day):
            for h in hours:
                for m in minutes:
                    s = resolve_local(datetime.combine(day, time(h, m)), tz)
                    # labels in a DST gap can resolve to the same instant: keep one
                    if lo <= s < hi and s != prev:
                        prev = s
                        yield s
        day += timedelta(days=1)


def window_intervals(window: MaintenanceWindow, start: float, end: float) -> list[Interval]:
    """Occurrences of one window overlapping [start, end), clipped, unmerged."""
    if window.kind == "once":
        assert window.once is not None
        a, b = float(window.once.start), float(window.once.end)
        return [(max(a, start), min(b, end))] if a < end and b > start else []
    if window.kind == "weekly":
        assert window.weekly is not None
        cron = weekly_cron(window.weekly.days, window.weekly.start)
        duration, tz_name = window.weekly.duration, window.weekly.timezone
    else:
        assert window.cron is not None
        cron = parse_cron(window.cron.schedule)
        duration, tz_name = window.cron.duration, window.cron.timezone
    out: list[Interval] = []
    for s in _cron_starts(cron, tz_name, start - duration, end):
        a, b = float(s), s + duration
        if b > start:
            out.append((max(a, start), min(b, end)))
    return out


def applies(window: MaintenanceWindow, target: str | None, sla: str | None) -> bool:
    """Scope check; see the module docstring for what None means."""
    if window.targets and (target is None or target not in window.targets):
        return False
    return not (window.slas and (sla is None or sla not in window.slas))


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted union of half-open intervals; touching intervals are joined."""
    out: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def intervals(
    windows: Sequence[MaintenanceWindow],
    start: float,
    end: float,
    target: str | None = None,
    sla: str | None = None,
) -> list[Interval]:
    """Merged maintenance intervals within [start, end) for the given scope."""
    if end <= start:
        return []
    found: list[Interval] = []
    for w in windows:
        if applies(w, target, sla):
            found.extend(window_intervals(w, start, end))
    return merge(found)


def active_at(
    windows: Sequence[MaintenanceWindow],
    t: float,
    target: str | None = None,
    sla: str | None = None,
) -> bool:
    """Whether maintenance is active at unix time t (drives slamon_maintenance_active)."""
    return any(a <= t < b for a, b in intervals(windows, t, t + 1, target, sla))


def intervals_by_target(
    windows: Sequence[MaintenanceWindow],
    start: float,
    end: float,
    targets: Iterable[str],
    sla: str | None,
) -> dict[str, list[Interval]]:
    """Per-target intervals for one SLA, the shape compute_period_result takes."""
    return {t: intervals(windows, start, end, t, sla) for t in targets}


def overlap_seconds(ivs: Iterable[Interval], start: float, end: float) -> float:
    """Total length of (merged) intervals inside [start, end)."""
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in merge(ivs))
