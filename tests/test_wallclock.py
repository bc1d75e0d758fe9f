"""Wall-clock arithmetic: zones, local time across DST, cron fields and starts, ISO text.

Checked against hand-worked examples and naive recomputations (minute-by-minute
scans of the wall clock) rather than against the module's own helpers.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slamon.wallclock import (
    WEEKDAYS,
    CronSpec,
    cron_starts,
    iso,
    local_naive,
    parse_cron,
    parse_hhmm,
    resolve_local,
    utc_iso,
    weekly_cron,
    zone,
)


def utc(text: str) -> int:
    """Unix seconds of a naive ISO text read as UTC."""
    return calendar.timegm(datetime.fromisoformat(text).timetuple())


# -- zones and local time ------------------------------------------------------------


def test_zone_is_cached_and_rejects_unknown_names() -> None:
    assert zone("Europe/Berlin") is zone("Europe/Berlin")
    assert zone("Europe/Berlin").key == "Europe/Berlin"
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        zone("Mars/Olympus")
    with pytest.raises(ValueError, match="unknown timezone"):
        zone("../etc/passwd")  # ZoneInfo's own ValueError, same message


def test_local_naive_examples() -> None:
    assert local_naive(0, ZoneInfo("Asia/Kolkata")) == datetime(1970, 1, 1, 5, 30)
    assert local_naive(-1, ZoneInfo("UTC")) == datetime(1969, 12, 31, 23, 59, 59)
    berlin = ZoneInfo("Europe/Berlin")
    assert local_naive(utc("2024-07-01T12:00:00"), berlin) == datetime(2024, 7, 1, 14, 0)
    assert local_naive(utc("2024-01-01T12:00:00"), berlin).tzinfo is None


def naive_resolve(label: datetime, tz: ZoneInfo) -> int:
    """First minute (modern offsets are whole minutes) whose wall clock reads `label` or
    later, scanning from well before any offset could put it."""
    base = calendar.timegm(label.timetuple())
    for u in range(base - 16 * 3600, base + 16 * 3600, 60):
        if datetime.fromtimestamp(u, tz).replace(tzinfo=None) >= label:
            return u
    raise AssertionError("no instant found")  # pragma: no cover


ZONES = [
    "UTC",
    "Etc/UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30 min DST
    "America/Santiago",  # clocks change at midnight
    "Pacific/Apia",  # skipped 2011-12-30 entirely
    "Asia/Kolkata",
]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(ZONES),
    st.datetimes(datetime(2000, 1, 1), datetime(2030, 12, 31)).map(
        lambda d: d.replace(second=0, microsecond=0)
    ),
)
def test_resolve_local_matches_a_minute_scan(tz_name: str, label: datetime) -> None:
    tz = ZoneInfo(tz_name)
    assert resolve_local(label, tz) == naive_resolve(label, tz)


@pytest.mark.parametrize(
    ("tz_name", "label", "want"),
    [
        # spring forward 02:00 -> 03:00 CET/CEST: 02:30 does not exist, the jump does
        ("Europe/Berlin", datetime(2024, 3, 31, 2, 30), "2024-03-31T01:00:00"),
        ("Europe/Berlin", datetime(2024, 3, 31, 2, 0), "2024-03-31T01:00:00"),
        ("Europe/Berlin", datetime(2024, 3, 31, 3, 0), "2024-03-31T01:00:00"),
        ("Europe/Berlin", datetime(2024, 3, 31, 1, 59), "2024-03-31T00:59:00"),
        # fall back: 02:30 happens twice, the first one counts
        ("Europe/Berlin", datetime(2024, 10, 27, 2, 30), "2024-10-27T00:30:00"),
        ("America/New_York", datetime(2024, 3, 10, 2, 15), "2024-03-10T07:00:00"),
        ("America/New_York", datetime(2024, 11, 3, 1, 30), "2024-11-03T05:30:00"),
        # Lord Howe springs forward only 30 min: 02:00 -> 02:30 at +10:30
        ("Australia/Lord_Howe", datetime(2024, 10, 6, 2, 10), "2024-10-05T15:30:00"),
        # Samoa skipped the whole of 2011-12-30 (UTC-10 -> UTC+14)
        ("Pacific/Apia", datetime(2011, 12, 30, 12, 0), "2011-12-30T10:00:00"),
        ("UTC", datetime(1969, 12, 31, 23, 59, 59), "1969-12-31T23:59:59"),
        ("Etc/UTC", datetime(2024, 2, 29, 12, 34, 56), "2024-02-29T12:34:56"),
    ],
)
def test_resolve_local_gaps_and_folds(tz_name: str, label: datetime, want: str) -> None:
    assert resolve_local(label, ZoneInfo(tz_name)) == utc(want)


def test_resolve_local_in_a_gap_lands_on_the_exact_second_of_the_jump() -> None:
    # an odd-second label in the gap: the binary search must end on the jump itself,
    # not on a neighbour of it
    berlin = ZoneInfo("Europe/Berlin")
    jump = utc("2024-03-31T01:00:00")
    for label in (datetime(2024, 3, 31, 2, 0, 1), datetime(2024, 3, 31, 2, 59, 59)):
        s = resolve_local(label, berlin)
        assert s == jump
        assert local_naive(s, berlin) >= label > local_naive(s - 1, berlin)


# -- cron ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "field", "want"),
    [
        ("* * * * *", "minutes", set(range(60))),
        ("* * * * *", "hours", set(range(24))),
        ("* * * * *", "days", set(range(1, 32))),
        ("* * * * *", "months", set(range(1, 13))),
        ("* * * * *", "weekdays", set(range(7))),
        ("1-10/3 * * * *", "minutes", {1, 4, 7, 10}),
        ("5/15 * * * *", "minutes", {5, 20, 35, 50}),
        ("59 * * * *", "minutes", {59}),
        ("0 */7 * * *", "hours", {0, 7, 14, 21}),
        ("0 23 * * *", "hours", {23}),
        ("0 0 31 * *", "days", {31}),
        ("0 0 1-3,30 * *", "days", {1, 2, 3, 30}),
        ("0 0 * JAN,mar-May *", "months", {1, 3, 4, 5}),
        ("0 0 * 12 *", "months", {12}),
        ("0 0 * * mon-fri", "weekdays", {1, 2, 3, 4, 5}),
        ("0 0 * * SAT,sun", "weekdays", {6, 0}),
        ("0 0 * * 5-7", "weekdays", {5, 6, 0}),  # 7 is Sunday too
        ("0 0 * * 0", "weekdays", {0}),
    ],
)
def test_cron_field_values(expr: str, field: str, want: set[int]) -> None:
    assert getattr(parse_cron(expr), field) == want


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "needs 5 fields"),
        ("* * * * * *", "needs 5 fields"),
        ("60 * * * *", "minute value 60 is outside 0-59"),
        ("-1 * * * *", "invalid minute value ''"),
        ("* 24 * * *", "hour value 24 is outside 0-23"),
        ("* * 0 * *", "day-of-month value 0 is outside 1-31"),
        ("* * 32 * *", "day-of-month value 32 is outside 1-31"),
        ("* * * 0 *", "month value 0 is outside 1-12"),
        ("* * * 13 *", "month value 13 is outside 1-12"),
        ("* * * * 8", "day-of-week value 8 is outside 0-7"),
        ("jan * * * *", "invalid minute value 'jan'"),
        ("5-1 * * * *", "invalid range '5-1'"),
        ("*/0 * * * *", "invalid step '0'"),
        ("*/x * * * *", "invalid step 'x'"),
        ("5/ * * * *", "invalid step ''"),
        ("1,,2 * * * *", "empty item in minute field"),
    ],
)
def test_cron_errors_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        parse_cron(expr)


def test_cron_star_fields_and_day_semantics() -> None:
    thu, fri, sat = date(2024, 6, 13), date(2024, 6, 14), date(2024, 6, 15)
    # both restricted: the 13th OR a Friday
    both = parse_cron("0 0 13 * fri")
    assert not both.dom_star and not both.dow_star
    assert both.day_matches(thu) and both.day_matches(fri) and not both.day_matches(sat)
    # a field starting with * counts as unrestricted even with a step: AND
    stepped = parse_cron("0 0 */2 * fri")  # odd days that are Fridays
    assert stepped.dom_star and not stepped.dow_star
    assert not stepped.day_matches(thu)  # 13th, odd, but a Thursday
    assert not stepped.day_matches(date(2024, 6, 14))  # Friday, even day
    assert stepped.day_matches(date(2024, 6, 21))  # Friday the 21st
    dow_stepped = parse_cron("0 0 13 * */2")  # the 13th when it is Sun/Tue/Thu/Sat
    assert dow_stepped.dow_star and not dow_stepped.dom_star
    assert dow_stepped.day_matches(thu)
    assert not dow_stepped.day_matches(date(2024, 9, 13))  # a Friday
    # the month restricts whatever the days say
    june = parse_cron("0 0 13 jun fri")
    assert june.day_matches(thu) is True and june.day_matches(date(2024, 7, 13)) is False
    assert not june.day_matches(date(2024, 7, 12))  # a Friday in July


def test_cron_matches_needs_minute_hour_and_day() -> None:
    c = parse_cron("30 2 * * mon")
    monday = datetime(2024, 6, 10, 2, 30)
    assert c.matches(monday)
    assert not c.matches(monday.replace(minute=31))
    assert not c.matches(monday.replace(hour=3))
    assert not c.matches(monday + timedelta(days=1))


def test_parse_hhmm() -> None:
    assert parse_hhmm("2:30") == time(2, 30)
    assert parse_hhmm(" 02:05 ") == time(2, 5)
    assert parse_hhmm("23:59") == time(23, 59)
    assert parse_hhmm("19:00") == time(19, 0)
    for bad in ("24:00", "12:60", "1230", "", "2:3", "-1:00"):
        with pytest.raises(ValueError, match="invalid time of day"):
            parse_hhmm(bad)


@pytest.mark.parametrize("day", WEEKDAYS)
def test_weekly_cron_matches_exactly_its_days(day: str) -> None:
    c = weekly_cron([day], "19:45")
    assert (c.minutes, c.hours) == ({45}, {19})
    monday = date(2024, 6, 10)
    for k in range(14):  # two weeks, every month day and month allowed
        d = monday + timedelta(days=k)
        assert c.day_matches(d) == (d.strftime("%A").lower() == day)
    assert c.day_matches(date(2024, 12, 31)) == (day == "tuesday")
    assert c.day_matches(date(2024, 1, 1)) == (day == "monday")


def test_weekly_cron_several_days() -> None:
    c = weekly_cron(["saturday", "sunday"], "00:00")
    assert c.weekdays == {6, 0}
    assert c.dom_star and not c.dow_star


def minute_scan(cron: CronSpec, tz: ZoneInfo, lo: float, hi: float) -> list[int]:
    """Starts by brute force, for a zone without clock changes in the range."""
    first = int(lo // 60) * 60
    return [
        u
        for u in range(first, int(hi) + 1, 60)
        if lo <= u < hi and cron.matches(datetime.fromtimestamp(u, tz).replace(tzinfo=None))
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["0 * * * *", "*/20 1-3 * * *", "59 23 * * *", "0 0 1 * *", "15 12 * * sun"]),
    st.sampled_from(["UTC", "Asia/Kolkata", "Pacific/Kiritimati"]),
    st.floats(1_704_067_200, 1_704_067_200 + 40 * 86400),
    st.floats(0, 5 * 86400),
)
def test_cron_starts_match_a_minute_scan(expr: str, tz_name: str, lo: float, span: float) -> None:
    cron = parse_cron(expr)
    want = minute_scan(cron, ZoneInfo(tz_name), lo, lo + span)
    assert list(cron_starts(cron, tz_name, lo, lo + span)) == want


def test_cron_starts_bounds_are_half_open() -> None:
    hourly = parse_cron("0 * * * *")
    t = utc("2024-05-01T10:00:00")
    assert list(cron_starts(hourly, "UTC", t, t + 3600)) == [t]
    assert list(cron_starts(hourly, "UTC", t + 0.5, t + 3600.5)) == [t + 3600]
    assert list(cron_starts(hourly, "UTC", t - 0.5, t)) == []
    assert list(cron_starts(hourly, "UTC", t, t)) == []
    # a daily start just past hi's day boundary in a zone far ahead of UTC
    daily = parse_cron("0 0 * * *")
    kiritimati = utc("2024-05-01T10:00:00")  # midnight of May 2 at UTC+14
    got = list(cron_starts(daily, "Pacific/Kiritimati", kiritimati - 10, kiritimati + 1))
    assert got == [kiritimati]
    # and one just before lo's day boundary in a zone far behind
    pago = utc("2024-05-02T11:00:00")  # midnight of May 2 at UTC-11
    assert list(cron_starts(daily, "Pacific/Pago_Pago", pago, pago + 60)) == [pago]


def test_cron_starts_across_clock_changes() -> None:
    # every label of Berlin's missing hour resolves to the jump: one start, not three
    c = parse_cron("*/20 2 * * *")
    day = utc("2024-03-31T00:00:00")
    assert list(cron_starts(c, "Europe/Berlin", day - 86400, day + 86400)) == [
        utc("2024-03-30T01:00:00"),
        utc("2024-03-30T01:20:00"),
        utc("2024-03-30T01:40:00"),
        utc("2024-03-31T01:00:00"),
    ]
    # the repeated hour on the fall-back day starts once per label, at its first pass
    fall = utc("2024-10-27T00:00:00")
    assert list(cron_starts(c, "Europe/Berlin", fall, fall + 86400)) == [
        utc("2024-10-27T00:00:00"),
        utc("2024-10-27T00:20:00"),
        utc("2024-10-27T00:40:00"),
    ]


def test_cron_starts_where_the_local_day_is_not_the_labels_day() -> None:
    # Samoa skipped 2011-12-30: its 12:30 resolves to the jump (10:00Z), whose own
    # wall clock already reads 2011-12-31 00:00
    jump = utc("2011-12-30T10:00:00")
    c = parse_cron("30 12 * * *")
    got = list(cron_starts(c, "Pacific/Apia", jump, jump + 86400))
    assert got == [jump, utc("2011-12-30T22:30:00")]  # the 30th, then the 31st at +14
    # St. John's 1990: the 28th began at 00:00 NDT (02:30Z), then at 00:01 NDT the clock
    # went back to 23:01 of the 27th: an end in that repeated hour, whose wall clock
    # shows the 27th, still comes after the 28th's midnight
    midnight = parse_cron("0 0 * * *")
    lo, hi = utc("1990-10-27T14:30:00"), utc("1990-10-28T03:00:00")  # 23:30 NST, 27th
    assert local_naive(hi, ZoneInfo("America/St_Johns")) == datetime(1990, 10, 27, 23, 30)
    assert list(cron_starts(midnight, "America/St_Johns", lo, hi)) == [
        utc("1990-10-28T02:30:00")
    ]


# -- ISO text ------------------------------------------------------------------------


def test_iso_text() -> None:
    assert utc_iso(0) == "1970-01-01T00:00:00Z"
    assert utc_iso(1_700_000_000) == "2023-11-14T22:13:20Z"
    assert iso(1_700_000_000.75) == "2023-11-14T22:13:20Z"  # fraction dropped
    assert iso(-0.5) == "1969-12-31T23:59:59Z"
