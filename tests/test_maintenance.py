"""Maintenance windows: cron parsing, DST, scope, and a minute-by-minute oracle."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from slamon.config.maintenance import MaintenanceWindow
from slamon.sla.maintenance import (
    active_at,
    applies,
    intervals,
    intervals_by_target,
    merge,
    overlap_seconds,
    window_intervals,
)
from slamon.wallclock import parse_cron


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def cron_window(schedule: str, duration: Any, tz: str = "UTC", **scope: Any) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate(
        {
            "kind": "cron",
            "cron": {"schedule": schedule, "duration": duration, "timezone": tz},
            **scope,
        }
    )


def test_cron_fields() -> None:
    c = parse_cron("*/15 2-4 * * *")
    assert c.minutes == {0, 15, 30, 45} and c.hours == {2, 3, 4}
    c = parse_cron("5,10-20/5 0 1 jan,Dec sun-tue")
    assert c.minutes == {5, 10, 15, 20} and c.months == {1, 12} and c.weekdays == {0, 1, 2}
    assert parse_cron("0 0 * * 7").weekdays == {0}
    assert parse_cron("10/20 * * * *").minutes == {10, 30, 50}


def test_cron_dom_dow_or_semantics() -> None:
    both = parse_cron("0 0 13 * fri")  # the 13th OR any Friday
    assert both.day_matches(datetime(2024, 6, 13).date())  # a Thursday
    assert both.day_matches(datetime(2024, 6, 14).date())  # a Friday
    assert not both.day_matches(datetime(2024, 6, 15).date())
    dow_only = parse_cron("0 0 * * fri")
    assert not dow_only.day_matches(datetime(2024, 6, 13).date())


@pytest.mark.parametrize(
    "expr",
    [
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "5-1 * * * *",
        "*/0 * * * *",
        "* * 0 * *",
        "a * * * *",
        "1,,2 * * * *",
    ],
)
def test_cron_errors(expr: str) -> None:
    with pytest.raises(ValueError):
        parse_cron(expr)


def test_once_window_clipped_and_merged() -> None:
    w = MaintenanceWindow.model_validate(
        {
            "kind": "once",
            "once": {"start": "2024-05-01T10:00:00+02:00", "end": "2024-05-01T12:00:00Z"},
        }
    )
    a, b = ts("2024-05-01T08:00:00Z"), ts("2024-05-01T12:00:00Z")
    assert intervals([w], 0, 2 * 10**9) == [(a, b)]
    assert intervals([w], a + 60, a + 120) == [(a + 60, a + 120)]
    assert intervals([w, w], a - 100, b + 100) == [(a, b)]
    assert active_at([w], a) and not active_at([w], b) and not active_at([w], a - 1)


def test_weekly_window_in_dst_zone() -> None:
    w = MaintenanceWindow.model_validate(
        {
            "kind": "weekly",
            "weekly": {
                "days": ["sun"],
                "start": "02:30",
                "duration": "1h",
                "timezone": "Europe/Berlin",
            },
        }
    )
    start, end = ts("2024-03-24T00:00:00Z"), ts("2024-04-08T00:00:00Z")
    got = intervals([w], start, end)
    assert got == [
        (ts("2024-03-24T01:30:00Z"), ts("2024-03-24T02:30:00Z")),  # CET
        # 02:30 does not exist on 2024-03-31: the window starts at the jump
        (ts("2024-03-31T01:00:00Z"), ts("2024-03-31T02:00:00Z")),
        (ts("2024-04-07T00:30:00Z"), ts("2024-04-07T01:30:00Z")),  # CEST
    ]
    # 02:30 on the fall-back Sunday occurs twice: the window starts at the first one
    got = intervals([w], ts("2024-10-27T00:00:00Z"), ts("2024-10-28T00:00:00Z"))
    assert got == [(ts("2024-10-27T00:30:00Z"), ts("2024-10-27T01:30:00Z"))]


def test_scope_rules() -> None:
    everywhere = cron_window("0 * * * *", 60)
    api_only = cron_window("10 * * * *", 60, targets=["api"])
    sla_only = cron_window("20 * * * *", 60, slas=["gold"])
    both = cron_window("30 * * * *", 60, targets=["api"], slas=["gold"])
    ws = [everywhere, api_only, sla_only, both]

    def starts(**kw: Any) -> list[int]:
        return [int(a) % 3600 // 60 for a, _ in intervals(ws, 0, 3600, **kw)]

    assert starts() == [0]
    assert starts(target="api") == [0, 10]
    assert starts(target="web") == [0]
    assert starts(sla="gold") == [0, 20]
    assert starts(target="api", sla="gold") == [0, 10, 20, 30]
    assert starts(target="web", sla="gold") == [0, 20]
    by_target = intervals_by_target(ws, 0, 3600, ["api", "web"], "gold")
    assert len(by_target["api"]) == 4 and len(by_target["web"]) == 2
    # a window for one SLA never applies to another one
    assert starts(sla="silver") == [0]
    assert starts(target="api", sla="silver") == [0, 10]
    assert applies(sla_only, None, "silver") is False
    assert applies(sla_only, "web", "gold") is True
    assert applies(api_only, "web", "gold") is False


def test_window_intervals_only_overlapping_occurrences() -> None:
    once = MaintenanceWindow.model_validate({"kind": "once", "once": {"start": 100, "end": 200}})
    assert window_intervals(once, 0, 100) == []  # starts exactly at the end
    assert window_intervals(once, 200, 300) == []  # ended exactly at the start
    assert window_intervals(once, 250, 300) == []
    assert window_intervals(once, 0, 50) == []
    assert window_intervals(once, 150, 160) == [(150, 160)]
    hourly = cron_window("0 * * * *", 600)  # [h:00, h:10) every hour
    assert window_intervals(hourly, 600, 3600) == []  # the 0:00 one ends at 600
    assert window_intervals(hourly, 599, 3601) == [(599, 600), (3600, 3601)]
    assert intervals([once, hourly], 150, 150) == []
    assert intervals([once, hourly], 160, 150) == []


def test_window_longer_than_gap_and_lookback() -> None:
    # a 2-day window starting Saturday 00:00 is still active on Monday at 00:00 - 1s
    w = cron_window("0 0 * * sat", "2d")
    monday = ts("2024-06-10T00:00:00Z")
    assert active_at([w], monday - 1)
    assert not active_at([w], monday)
    assert intervals([w], monday - 3600, monday + 3600) == [(monday - 3600, monday)]


def test_model_errors() -> None:
    with pytest.raises(ValidationError, match="section required"):
        MaintenanceWindow.model_validate({"kind": "cron"})
    with pytest.raises(ValidationError, match="not allowed"):
        MaintenanceWindow.model_validate(
            {
                "kind": "once",
                "once": {"start": 0, "end": 10},
                "cron": {"schedule": "* * * * *", "duration": 60},
            }
        )
    with pytest.raises(ValidationError, match="after start"):
        MaintenanceWindow.model_validate({"kind": "once", "once": {"start": 10, "end": 10}})
    with pytest.raises(ValidationError, match="5 fields"):
        cron_window("* * *", 60)
    with pytest.raises(ValidationError, match="HH:MM"):
        MaintenanceWindow.model_validate(
            {"kind": "weekly", "weekly": {"days": ["mon"], "start": "25:00", "duration": 60}}
        )
    with pytest.raises(ValidationError):
        MaintenanceWindow.model_validate(
            {"kind": "weekly", "weekly": {"days": ["funday"], "start": "01:00", "duration": 60}}
        )


def _field(draw: st.DrawFn, lo: int, hi: int) -> str:
    kind = draw(st.sampled_from(["star", "list", "range", "step"]))
    if kind == "star":
        return "*"
    if kind == "list":
        return ",".join(str(x) for x in draw(st.lists(st.integers(lo, hi), min_size=1, max_size=3)))
    a = draw(st.integers(lo, hi))
    b = draw(st.integers(a, hi))
    if kind == "range":
        return f"{a}-{b}"
    return f"{a}-{b}/{draw(st.integers(1, 5))}"


@st.composite
def cron_exprs(draw: st.DrawFn) -> str:
    return " ".join(
        [
            _field(draw, 0, 59),
            _field(draw, 0, 23),
            _field(draw, 1, 31),
            _field(draw, 1, 12),
            _field(draw, 0, 6),
        ]
    )


@settings(max_examples=60, deadline=None)
@given(
    cron_exprs(),
    st.integers(1, 180).map(lambda m: m * 60),
    st.sampled_from(["UTC", "Asia/Kolkata"]),  # zones without DST in range: oracle is exact
    st.integers(1_600_000_000 // 60, 1_700_000_000 // 60).map(lambda m: m * 60),
    st.integers(1, 6 * 60),
)
def test_cron_intervals_match_minute_by_minute_oracle(
    expr: str, duration: int, tz: str, start: int, minutes: int
) -> None:
    w = cron_window(expr, duration, tz)
    end = start + minutes * 60
    got = intervals([w], start, end)
    cron = parse_cron(expr)
    zone = ZoneInfo(tz)
    active = set()
    for u in range(start - duration, end, 60):
        local = datetime.fromtimestamp(u, zone)
        if cron.matches(local.replace(tzinfo=None)):
            active.update(range(max(u, start), min(u + duration, end), 60))
    assert {m for m in range(start, end, 60) if any(a <= m < b for a, b in got)} == active
    for m in range(start, end, 60):
        assert active_at([w], m) == (m in active)
    # merged: sorted, disjoint, non-touching
    assert all(got[i][1] < got[i + 1][0] for i in range(len(got) - 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=8))
def test_merge_and_overlap(raw: list[tuple[int, int]]) -> None:
    ivs = [(float(a), float(a + b)) for a, b in raw]
    merged = merge(ivs)
    covered = {x for a, b in ivs for x in range(int(a), int(b))}
    assert {x for a, b in merged for x in range(int(a), int(b))} == covered
    assert overlap_seconds(ivs, 0, 300) == len(covered)
    assert overlap_seconds(ivs, 10, 50) == len({x for x in covered if 10 <= x < 50})
    # sorted, non-empty, disjoint and not touching (touching ones are joined)
    assert all(a < b for a, b in merged)
    assert all(merged[i][1] < merged[i + 1][0] for i in range(len(merged) - 1))
