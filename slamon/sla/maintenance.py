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

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from slamon.wallclock import cron_starts, parse_cron, weekly_cron

if TYPE_CHECKING:
    from slamon.config.maintenance import MaintenanceWindow

Interval = tuple[float, float]

def window_intervals(window: MaintenanceWindow, start: float, end: float) -> list[Interval]:
    """Occurrences of one window overlapping [start, end), clipped, unmerged."""
    return [(max(a, start), min(b, end)) for a, b in occurrences(window, start, end)]


def occurrences(window: MaintenanceWindow, start: float, end: float) -> list[Interval]:
    """Occurrences of one window overlapping [start, end), whole (not clipped)."""
    if window.kind == "once":
        assert window.once is not None
        a, b = float(window.once.start), float(window.once.end)
        return [(a, b)] if a < end and b > start else []
    if window.kind == "weekly":
        assert window.weekly is not None
        cron = weekly_cron(window.weekly.days, window.weekly.start)
        duration, tz_name = window.weekly.duration, window.weekly.timezone
    else:
        assert window.cron is not None
        cron = parse_cron(window.cron.schedule)
        duration, tz_name = window.cron.duration, window.cron.timezone
    out: list[Interval] = []
    for s in cron_starts(cron, tz_name, start - duration, end):
        a, b = float(s), s + duration
        if b > start:
            out.append((a, b))
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


def covering(
    windows: Sequence[MaintenanceWindow], t: float, target: str, slas: Iterable[str] = ()
) -> tuple[int, Interval] | None:
    """The first window covering `target` at unix time t, as (its index, the whole
    occurrence), or None.

    For people (notifications, alerts, the status page) rather than accounting:
    a window naming SLAs covers the targets of those SLAs, so `slas` are the
    SLAs whose SLO measures `target`.
    """
    names = set(slas)
    for i, w in enumerate(windows):
        if w.targets and target not in w.targets:
            continue
        if w.slas and not names.intersection(w.slas):
            continue
        for a, b in occurrences(w, t, t + 1):
            if a <= t < b:
                return i, (a, b)
    return None


def slas_by_target(
    slas: Iterable[tuple[str, Iterable[str]]],
) -> dict[str, set[str]]:
    """(SLA id, its SLO's target ids) pairs -> target id -> the SLAs measuring it."""
    out: dict[str, set[str]] = {}
    for sla_id, targets in slas:
        for tid in targets:
            out.setdefault(tid, set()).add(sla_id)
    return out
