"""Period boundaries: ids, contiguity, month ends, leap years, DST."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from slamon.config.sla import PeriodSpec
from slamon.sla import periods
from slamon.sla.periods import due_periods, period_bounds, period_index
from slamon.wallclock import resolve_local

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Santiago",  # DST switches at midnight: nonexistent and repeated midnights
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Asia/Kolkata",  # +05:30
    "Pacific/Apia",  # skipped 2011-12-30 entirely
]
KINDS = ["hourly", "daily", "weekly", "monthly"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

# 1970 .. 2100
times = st.integers(min_value=0, max_value=4_102_444_800)


@st.composite
def specs(draw: st.DrawFn) -> PeriodSpec:
    kind = draw(st.sampled_from([*KINDS, "fixed"]))
    if kind == "fixed":
        length = draw(st.integers(min_value=60, max_value=40 * 86400))
        anchor = draw(st.integers(min_value=-(10**9), max_value=2 * 10**9))
        return PeriodSpec(kind="fixed", length=length, anchor=anchor)
    tz = draw(st.sampled_from(ZONES))
    if kind == "weekly":
        return PeriodSpec(kind="weekly", timezone=tz, week_start=draw(st.sampled_from(DAYS)))
    return PeriodSpec(kind=kind, timezone=tz)


@settings(max_examples=400, deadline=None)
@given(specs(), times)
def test_every_instant_in_exactly_one_contiguous_period(spec: PeriodSpec, t: int) -> None:
    n = period_index(spec, t)
    start, end = period_bounds(spec, n)
    assert start <= t < end
    # neighbours share the boundaries: no gap, no overlap
    assert period_bounds(spec, n - 1)[1] == start
    assert period_bounds(spec, n + 1)[0] == end
    assert period_index(spec, start) == n
    assert period_index(spec, end - 1) == n
    assert period_index(spec, end) > n
    assert period_index(spec, t + 0.5) == n or t + 0.5 >= end


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ZONES), st.sampled_from(KINDS), st.integers(-100, 2000))
def test_bounds_monotone_and_index_roundtrip(tz: str, kind: str, n: int) -> None:
    spec = PeriodSpec(kind=kind, timezone=tz)  # type: ignore[arg-type]
    start, end = period_bounds(spec, n)
    assert end >= start
    if end > start:
        assert period_index(spec, start) == n


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 12 * 130), st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
def test_monthly_equals_naive_datetime_arithmetic(n: int, tz: str) -> None:
    # Midnight is never skipped or repeated in these zones, so naive arithmetic holds.
    zone = ZoneInfo(tz)
    year, month = 1970 + n // 12, n % 12 + 1
    nyear, nmonth = (year + 1, 1) if month == 12 else (year, month + 1)
    expected = (
        int(datetime(year, month, 1, tzinfo=zone).timestamp()),
        int(datetime(nyear, nmonth, 1, tzinfo=zone).timestamp()),
    )
    assert period_bounds(PeriodSpec(kind="monthly", timezone=tz), n) == expected


@settings(max_examples=200, deadline=None)
@given(times)
def test_utc_ids_are_simple_divisions(t: int) -> None:
    assert period_index(PeriodSpec(kind="hourly"), t) == t // 3600
    assert period_index(PeriodSpec(kind="daily"), t) == t // 86400
    assert period_index(PeriodSpec(kind="weekly"), t) == (t // 86400 + 3) // 7
    d = datetime.fromtimestamp(t, UTC)
    assert period_index(PeriodSpec(kind="monthly"), t) == (d.year - 1970) * 12 + d.month - 1


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def test_known_ids_and_week_start() -> None:
    assert period_index(PeriodSpec(kind="monthly"), ts("2024-01-15T00:00:00Z")) == 648
    monday = PeriodSpec(kind="weekly")
    assert period_bounds(monday, 0) == (ts("1969-12-29T00:00:00Z"), ts("1970-01-05T00:00:00Z"))
    sunday = PeriodSpec(kind="weekly", week_start="sun")
    n = period_index(sunday, ts("2024-06-05T12:00:00Z"))  # a Wednesday
    assert period_bounds(sunday, n) == (ts("2024-06-02T00:00:00Z"), ts("2024-06-09T00:00:00Z"))


@pytest.mark.parametrize(
    ("year", "days"), [(2024, 29), (2023, 28), (2000, 29), (2100, 28), (1972, 29)]
)
def test_february_length_in_leap_years(year: int, days: int) -> None:
    spec = PeriodSpec(kind="monthly")
    n = (year - 1970) * 12 + 1
    start, end = period_bounds(spec, n)
    assert (end - start) == days * 86400
    assert start == ts(f"{year}-02-01T00:00:00Z")


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("Europe/Berlin", "2024-03-31", 23),
        ("Europe/Berlin", "2024-10-27", 25),
        ("Europe/Berlin", "2024-06-01", 24),
        ("America/New_York", "2024-03-10", 23),
        ("America/New_York", "2024-11-03", 25),
        ("Australia/Lord_Howe", "2024-04-07", 24.5),
    ],
)
def test_dst_day_lengths(tz: str, day: str, hours: float) -> None:
    spec = PeriodSpec(kind="daily", timezone=tz)
    start_label = datetime.fromisoformat(day + "T12:00:00").replace(tzinfo=ZoneInfo(tz))
    n = period_index(spec, start_label.timestamp())
    start, end = period_bounds(spec, n)
    assert end - start == hours * 3600
    assert datetime.fromtimestamp(start, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") == day + " 00:00"


def test_hourly_dst_skipped_hour_is_empty_and_repeated_hour_is_long() -> None:
    spec = PeriodSpec(kind="hourly", timezone="Europe/Berlin")
    jump = ts("2024-03-31T01:00:00Z")  # 02:00 CET -> 03:00 CEST
    n = period_index(spec, jump)
    assert period_bounds(spec, n) == (jump, jump + 3600)  # local 03:00
    assert period_bounds(spec, n - 1) == (jump, jump)  # local 02:00 never happened
    assert period_bounds(spec, n - 2) == (jump - 3600, jump)  # local 01:00
    assert period_index(spec, jump - 1) == n - 2
    back = ts("2024-10-27T00:00:00Z")  # 02:00 CEST, then 03:00 CEST -> 02:00 CET
    m = period_index(spec, back)
    assert period_bounds(spec, m) == (back, back + 7200)  # local 02:00 occurs twice


def test_midnight_rules_santiago_and_samoa() -> None:
    # Santiago 2024-09-08: 00:00 -> 01:00 (midnight nonexistent); day starts at the jump
    spec = PeriodSpec(kind="daily", timezone="America/Santiago")
    n = period_index(spec, ts("2024-09-08T12:00:00-03:00"))
    start, end = period_bounds(spec, n)
    assert start == ts("2024-09-08T01:00:00-03:00") and end - start == 23 * 3600
    # Santiago 2024-04-07: at 24:00 -03 the clock goes back to 23:00 -04, so the 6th
    # lasts 25 h (the repeated 23:xx stays in it) and the 7th starts at 00:00 -04
    n = period_index(spec, ts("2024-04-06T23:30:00-04:00"))
    start, end = period_bounds(spec, n)
    assert end == ts("2024-04-07T00:00:00-04:00") and end - start == 25 * 3600
    # Samoa skipped 2011-12-30: an empty daily period, never returned by period_index
    apia = PeriodSpec(kind="daily", timezone="Pacific/Apia")
    skipped = (datetime(2011, 12, 30) - datetime(1970, 1, 1)).days
    s, e = period_bounds(apia, skipped)
    assert s == e
    assert period_index(apia, s) == skipped + 1


def test_fall_back_across_midnight_keeps_the_repeated_hour_in_the_new_day() -> None:
    # St. John's ended DST at 00:01 until 2006: at 00:01 NDT the clock went back to
    # 23:01 NST of the day before. The 28th began at its first 00:00; the repeated
    # 23:01-23:59 that follows is in the 28th, though the clock shows the 27th.
    repeated = ts("1990-10-27T23:30:00-03:30")
    day = PeriodSpec(kind="daily", timezone="America/St_Johns")
    n = period_index(day, repeated)
    assert n == (datetime(1990, 10, 28) - datetime(1970, 1, 1)).days
    start, end = period_bounds(day, n)
    assert (start, end) == (ts("1990-10-28T00:00:00-02:30"), ts("1990-10-29T00:00:00-03:30"))
    assert end - start == 25 * 3600
    assert period_bounds(day, n - 1) == (ts("1990-10-27T00:00:00-02:30"), start)
    hour = PeriodSpec(kind="hourly", timezone="America/St_Johns")
    m = period_index(hour, repeated)
    assert period_bounds(hour, m) == (start, ts("1990-10-28T01:00:00-03:30"))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ZONES), st.sampled_from(KINDS), times)
def test_period_index_computes_one_period_away_from_clock_changes(
    tz: str, kind: str, t: int
) -> None:
    """The tracker looks up a period for every probe result: the first guess (the period
    whose label the wall clock shows) is the answer, not the start of a walk. It is
    off only where a clock goes back across a label (none of ZONES does)."""
    spec = PeriodSpec(kind=kind, timezone=tz)  # type: ignore[arg-type]
    probes: list[int] = []

    def counting(spec_: PeriodSpec, n: int) -> tuple[int, int]:
        probes.append(n)
        return period_bounds(spec_, n)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(periods, "period_bounds", counting)
        n = period_index(spec, t)
    assert probes == [n]


@pytest.mark.parametrize("week_start", DAYS)
def test_week_zero_holds_the_epoch_for_every_week_start(week_start: str) -> None:
    # "weeks since the week start on or before 1970-01-01"
    spec = PeriodSpec(kind="weekly", week_start=week_start)
    start, end = period_bounds(spec, 0)
    assert start <= 0 < end and end - start == 7 * 86400
    assert datetime.fromtimestamp(start, UTC).strftime("%A").lower() == week_start


def test_instants_before_1970_floor_to_their_second() -> None:
    # 1969-12-31T23:59:59.5 is in the period before the one starting at the epoch
    for spec in (
        PeriodSpec(kind="hourly"),
        PeriodSpec(kind="daily"),
        PeriodSpec(kind="weekly", week_start="thursday"),
        PeriodSpec(kind="monthly"),
    ):
        assert period_bounds(spec, 0)[0] == 0
        assert period_index(spec, -0.5) == -1
        assert period_index(spec, 0.5) == 0


@settings(max_examples=150, deadline=None)
@given(specs(), times, st.integers(0, 3 * 86400), st.integers(-5, 5))
def test_due_periods_are_exactly_the_closable_ones(
    spec: PeriodSpec, now: int, grace: int, behind: int
) -> None:
    current = period_index(spec, now)
    last_closed = period_index(spec, now - grace) - 1 - abs(behind)
    if behind > 0:
        last_closed = current + behind  # already closed ahead (nothing is due)
    want = [
        n
        for n in range(last_closed + 1, current + 1)
        if period_bounds(spec, n)[1] + grace <= now
        and period_bounds(spec, n)[0] < period_bounds(spec, n)[1]
    ]
    assert list(due_periods(spec, last_closed, now, grace)) == want


def test_resolve_local_gap_and_fold() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert resolve_local(datetime(2024, 3, 31, 2, 30), berlin) == ts("2024-03-31T01:00:00Z")
    assert resolve_local(datetime(2024, 10, 27, 2, 30), berlin) == ts("2024-10-27T00:30:00Z")


def test_fixed_periods() -> None:
    spec = PeriodSpec(kind="fixed", length="7d", anchor="2024-01-01T00:00:00+01:00")
    anchor = ts("2023-12-31T23:00:00Z")
    assert period_bounds(spec, 0) == (anchor, anchor + 7 * 86400)
    assert period_index(spec, anchor - 1) == -1
    assert period_index(spec, anchor + 7 * 86400) == 1
    default_anchor = PeriodSpec(kind="fixed", length=3600)
    assert period_index(default_anchor, 7200.5) == 2


def test_due_periods_close_exactly_once() -> None:
    spec = PeriodSpec(kind="hourly", timezone="Europe/Berlin")
    grace = 300
    t0 = ts("2024-03-30T20:00:00Z")
    last = period_index(spec, t0) - 1
    closed: list[int] = []
    for now in range(t0, t0 + 12 * 3600, 97):
        for n in due_periods(spec, last, now, grace):
            assert period_bounds(spec, n)[1] + grace <= now
            closed.append(n)
            last = n
    assert len(closed) == len(set(closed))
    assert closed == sorted(closed)
    empty = [n for n in range(closed[0], closed[-1]) if n not in closed]
    assert all(period_bounds(spec, n)[0] == period_bounds(spec, n)[1] for n in empty)
    assert len(empty) == 1  # the skipped 02:00 hour


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "fixed"}, "required for fixed"),
        ({"kind": "fixed", "length": "1h", "timezone": "UTC"}, "they are absolute"),
        ({"kind": "fixed", "length": 30}, "at least 1m"),
        ({"kind": "daily", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"kind": "monthly", "week_start": "sunday"}, "only allowed for weekly"),
        ({"kind": "daily", "length": "1h"}, "only allowed for fixed"),
        ({"kind": "fixed", "length": "1h", "anchor": "2024-01-01T00:00:00"}, "UTC offset"),
    ],
)
def test_period_spec_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        PeriodSpec.model_validate(data)
    assert message in str(info.value)
