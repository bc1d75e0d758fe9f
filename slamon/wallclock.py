"""Wall-clock arithmetic: zones, weekdays, local time, cron schedules, ISO text.

A leaf module (it imports nothing from slamon), so config validation, SLA
periods, maintenance windows and every message that prints a time share one
definition of each. Pure: time is passed in as unix seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_EPOCH = datetime(1970, 1, 1)

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
_SHORT_DAYS = {d[:3]: d for d in WEEKDAYS}


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """Cached ZoneInfo lookup (raises ValueError for unknown names)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}: use an IANA name like Europe/Berlin") from exc


def local_naive(t: int, tz: ZoneInfo) -> datetime:
    """Wall-clock time (naive) shown in `tz` at unix second `t`."""
    return datetime.fromtimestamp(t, tz).replace(tzinfo=None)


def resolve_local(label: datetime, tz: ZoneInfo) -> int:
    """First unix second at which the wall clock of `tz` reads `label` or later."""
    if tz.key in ("UTC", "Etc/UTC"):
        return int((label - _EPOCH).total_seconds())
    stamps = [int(label.replace(tzinfo=tz, fold=f).timestamp()) for f in (0, 1)]
    exists = [s for s in stamps if local_naive(s, tz) == label]
    if exists:
        return min(exists)
    # In a gap: the jump lies between the two interpretations; binary search it.
    lo, hi = min(stamps), max(stamps)
    while local_naive(lo, tz) >= label:  # pragma: no cover - defensive
        lo -= 86400
    while local_naive(hi, tz) < label:  # pragma: no cover - defensive
        hi += 86400
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if local_naive(mid, tz) >= label:
            hi = mid
        else:
            lo = mid
    return hi



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


def cron_starts(cron: CronSpec, tz_name: str, lo: float, hi: float) -> Iterator[int]:
    """Unix start instants of occurrences with lo <= start < hi, ascending."""
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



def utc_iso(t: int) -> str:
    """Unix seconds as ISO 8601 UTC, for messages and documents."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def iso(t: float) -> str:
    """Unix time (seconds, fraction dropped) as ISO 8601 UTC: notifications and pages."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
