"""TargetEvents against naive recomputation from the raw outcomes."""

from __future__ import annotations

import bisect
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slamon.config.slo import Slo
from slamon.sli import DEFAULT_TIERS, Counts, RollingCounter, RollingWindow, SloState, is_good
from slamon.sli.events import DEFAULT_BOUNDS, TargetEvents, bounds_for

BASE = 1_699_999_200.0

Outcome = tuple[float, bool, float]  # scheduled time, ok, duration

durations = st.one_of(
    st.sampled_from([0.0, *DEFAULT_BOUNDS, 0.3, 0.12]),
    st.floats(min_value=0.0, max_value=15.0, allow_nan=False),
)
outcomes = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=8 * 86400, allow_nan=False).map(lambda x: BASE + x),
        st.booleans(),
        durations,
    ),
    max_size=60,
)
lengths = st.sampled_from([60.0, 300.0, 3600.0, 6 * 3600.0, 86400.0, 3 * 86400.0, 30 * 86400.0])
thresholds = st.sampled_from([None, *DEFAULT_BOUNDS])


def naive(events: list[Outcome], now: float, length: float, threshold: float | None) -> Counts:
    """Good and valid over the buckets the query covers (RollingWindow.query semantics)."""
    res = next(t.resolution for t in DEFAULT_TIERS if length <= (t.buckets - 1) * t.resolution)
    first, last = math.floor((now - length) / res), math.floor(now / res)
    inside = [e for e in events if first <= math.floor(e[0] / res) <= last]
    slo = Slo(id="x", targets=["t"], objective=0.9, sli="latency" if threshold else "availability",
              latency_threshold=threshold)
    return Counts(sum(is_good(slo, ok, d) for _, ok, d in inside), len(inside))


def fill(events: list[Outcome], bounds: tuple[float, ...] = DEFAULT_BOUNDS) -> TargetEvents:
    out = TargetEvents(bounds)
    for t, ok, d in events:
        out.add(t, ok, d)
    return out


@settings(max_examples=150, deadline=None)
@given(outcomes, lengths, thresholds, st.floats(min_value=0, max_value=86400))
def test_counts_equal_a_recomputation_from_the_outcomes(
    events: list[Outcome], length: float, threshold: float | None, later: float
) -> None:
    now = max((t for t, _, _ in events), default=BASE) + later
    assert fill(events).counts(now, length, threshold) == naive(events, now, length, threshold)


@settings(max_examples=100, deadline=None)
@given(outcomes, lengths, thresholds)
def test_a_view_equals_the_window_an_slo_used_to_keep(
    events: list[Outcome], length: float, threshold: float | None
) -> None:
    """What each SLO kept before: a (good, valid) window fed with is_good."""
    slo = Slo(id="x", targets=["t"], objective=0.9, sli="latency" if threshold else "availability",
              latency_threshold=threshold)
    window = RollingWindow()
    for t, ok, d in events:
        window.add(t, int(is_good(slo, ok, d)), 1)
    now = max((t for t, _, _ in events), default=BASE)
    assert fill(events).counts(now, length, threshold) == window.query(now, length)


@settings(max_examples=100, deadline=None)
@given(outcomes, st.lists(st.floats(min_value=0.01, max_value=12.0), max_size=3), lengths)
def test_new_bounds_keep_every_count_they_can(
    events: list[Outcome], extra: list[float], length: float
) -> None:
    """Thresholds that are bounds before and after answer the same; a new bound answers
    from the old bound below it (the history between them counted slower)."""
    new_bounds = bounds_for(extra)
    before = fill(events)
    after = fill(events)
    after.rebound(new_bounds)
    now = max((t for t, _, _ in events), default=BASE)
    for threshold in new_bounds:
        if threshold in DEFAULT_BOUNDS:
            assert after.counts(now, length, threshold) == before.counts(now, length, threshold)
        else:
            below = max((b for b in DEFAULT_BOUNDS if b < threshold), default=None)
            expect = before.counts(now, length, below) if below else Counts(0, 0)
            got = after.counts(now, length, threshold)
            assert got.good == expect.good
            assert got.valid == before.counts(now, length).valid
    # events counted under the new bounds are exact for every bound
    fresh = fill(events, new_bounds)
    for threshold in new_bounds:
        assert fresh.counts(now, length, threshold) == naive(events, now, length, threshold)
    # dropping the extra bounds merges the cells back: exact again
    after.rebound(DEFAULT_BOUNDS)
    fresh.rebound(DEFAULT_BOUNDS)
    for threshold in (None, *DEFAULT_BOUNDS):
        assert after.counts(now, length, threshold) == fresh.counts(now, length, threshold) == (
            naive(events, now, length, threshold))


@settings(max_examples=60, deadline=None)
@given(outcomes, st.lists(st.floats(min_value=0, max_value=8 * 86400), max_size=10))
def test_snapshot_round_trip_onto_other_bounds(events: list[Outcome], missed: list[float]) -> None:
    ev = fill(events)
    for x in missed:
        ev.add_no_data(BASE + x)
    now = max([t for t, _, _ in events] + [BASE + x for x in missed] + [BASE])
    back = TargetEvents.from_bytes(ev.to_bytes())
    assert back.bounds == ev.bounds and back.to_bytes() == ev.to_bytes()
    moved = TargetEvents.from_bytes(ev.to_bytes(), bounds_for([0.3]))
    assert moved.bounds == bounds_for([0.3])
    for length in (600.0, 86400.0, 30 * 86400.0):
        assert moved.no_data(now, length) == ev.no_data(now, length) == sum(
            1 for x in missed
            if naive([(BASE + x, True, 0.0)], now, length, None).valid)
        for threshold in (None, *DEFAULT_BOUNDS):
            assert moved.counts(now, length, threshold) == ev.counts(now, length, threshold)


def test_corrupt_snapshots_are_refused() -> None:
    blob = fill([(BASE, True, 0.2), (BASE + 10, False, 1.0)]).to_bytes()
    for bad in (b"", b"SLE", blob[:-1], blob + b"\0", b"XYZ" + blob[3:], b"SLE\x09" + blob[4:]):
        with pytest.raises(ValueError):
            TargetEvents.from_bytes(bad)


def test_bounds_are_checked() -> None:
    for bad in ((0.5, 0.1), (0.0,), (-1.0,), (math.inf,), (0.1, 0.1)):
        with pytest.raises(ValueError):
            TargetEvents(bad)
    assert bounds_for([0.3, None, 0.1]) == tuple(sorted({*DEFAULT_BOUNDS, 0.3}))
    ev = TargetEvents(bounds_for([0.3]))
    assert ev.exact(0.3) and ev.exact(None) and not ev.exact(0.2)


def test_a_bad_query_fails_like_a_window_even_without_events() -> None:
    empty = TargetEvents()
    with pytest.raises(ValueError, match="exceeds the retention"):
        empty.counts(BASE, 400 * 86400)
    with pytest.raises(ValueError, match="exceeds the retention"):
        fill([(BASE, True, 0.1)]).counts(BASE, 400 * 86400)


@settings(max_examples=60, deadline=None)
@given(outcomes, outcomes)
def test_absorb_adds_another_ring(a: list[Outcome], b: list[Outcome]) -> None:
    mine, theirs, both = RollingCounter(), RollingCounter(), RollingCounter()
    for t, _, _ in a:
        mine.add(t)
        both.add(t)
    for t, _, _ in b:
        theirs.add(t)
        both.add(t)
    mine.absorb(theirs)
    now = max([t for t, _, _ in a + b] + [BASE])
    for length in (600.0, 6 * 3600.0, 3 * 86400.0, 30 * 86400.0):
        assert mine.query(now, length) == both.query(now, length)


def test_a_shared_view_and_an_own_state_agree() -> None:
    """LiveState's SLOs read shared events; a state without them keeps its own."""
    slo = Slo(id="x", targets=["t"], objective=0.9, sli="latency", latency_threshold=0.3)
    shared = TargetEvents(bounds_for([0.3]))
    view = SloState(slo, {"t": 10}, {"t": 5}, events={"t": shared})
    own = SloState(slo, {"t": 10}, {"t": 5})
    for i in range(500):
        ok, d = i % 7 != 0, (i % 10) / 20
        shared.add(BASE + 10 * i, ok, d)
        view.record("t", BASE + 10 * i, ok, d)
        own.record("t", BASE + 10 * i, ok, d)
    now = BASE + 5000
    for length in (600.0, 3600.0, 86400.0):
        assert view.counts(now, length) == own.counts(now, length)
    assert view.good_total == own.good_total
    assert view.nbytes() == 0 < own.nbytes()


def ring_counts(events: list[Outcome], now: float, length: float,
                threshold: float | None, bounds: tuple[float, ...] = DEFAULT_BOUNDS) -> Counts:
    """What rings of the same events answer, one ring per cell and one of failures, each
    summed by its own query: what `counts` answered before it remembered its answers."""
    cells: dict[int, RollingCounter] = {}
    for t, ok, d in events:
        cell = bisect.bisect_left(bounds, d) if ok else len(bounds) + 1
        cells.setdefault(cell, RollingCounter()).add(t)
    good_cells = len(bounds) + 1 if threshold is None else bisect.bisect_right(bounds, threshold)
    valid = {cell: ring.query(now, length) for cell, ring in cells.items()}
    return Counts(sum(v for c, v in valid.items() if c < good_cells), sum(valid.values()))


steps = st.lists(
    st.one_of(
        # an outcome, mostly just after the clock, now and then late or far ahead
        st.tuples(st.just("add"), st.one_of(st.floats(0, 30), st.floats(-3 * 86400, 10 * 86400)),
                  st.booleans(), durations),
        # a query: the clock moves on (now and then back), a window, a threshold
        st.tuples(st.just("ask"), st.one_of(st.floats(0, 40), st.floats(-86400, 5 * 86400)),
                  lengths, thresholds),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_remembered_answers_equal_the_rings_as_events_arrive(script: list[tuple[Any, ...]]) -> None:
    """`counts` keeps its answers and slides them as events arrive and the clock moves;
    after any mix of adds (late, early, far ahead) and queries it answers what rings of
    the same events answer afresh."""
    live, seen = TargetEvents(), []
    clock = BASE
    for step in script:
        if step[0] == "add":
            _, ahead, ok, d = step
            seen.append((clock + ahead, ok, d))
            live.add(clock + ahead, ok, d)
        else:
            _, moved, length, threshold = step
            clock += moved
            assert live.counts(clock, length, threshold) == ring_counts(
                seen, clock, length, threshold), (clock, length, threshold)


def test_a_saturated_bucket_is_answered_as_the_ring_counts_it() -> None:
    """Past 65,535 events in one bucket the ring stops counting: a remembered answer
    must not count on."""
    live = TargetEvents()
    t = BASE + 3600.0
    assert live.counts(t, 86400.0) == Counts(0, 0)
    for _ in range(65_540):
        live.add(t, True, 0.05)
    expected = ring_counts([(t, True, 0.05)] * 65_540, t, 86400.0, None)
    assert expected.valid < 65_540  # the ring saturated
    assert live.counts(t, 86400.0) == expected


def test_an_event_far_ahead_drops_buckets_a_remembered_answer_held() -> None:
    """An event a whole retention ahead makes the ring drop older buckets of that tier;
    the same query again gets what the ring still holds, not the answer it got before."""
    live = TargetEvents()
    live.add(BASE, True, 0.05)
    assert live.counts(BASE, 300.0) == Counts(1, 1)
    live.add(BASE + 10 * 86400, True, 0.05)  # same cell; the 10 s tier keeps ~10 minutes
    assert live.counts(BASE, 300.0) == ring_counts(
        [(BASE, True, 0.05), (BASE + 10 * 86400, True, 0.05)], BASE, 300.0, None) == Counts(0, 0)


def test_an_answer_is_not_remembered_while_a_ring_is_ahead_of_its_window() -> None:
    """With a ring's newest bucket a retention ahead of the window, an event inside the
    window is too old for that ring's tier (dropped): a remembered answer would count it."""
    live = TargetEvents()
    live.add(BASE + 10 * 86400, True, 0.05)
    assert live.counts(BASE, 300.0) == Counts(0, 0)
    live.add(BASE, True, 0.05)
    seen = [(BASE + 10 * 86400, True, 0.05), (BASE, True, 0.05)]
    assert live.counts(BASE, 300.0) == ring_counts(seen, BASE, 300.0, None) == Counts(0, 0)


def test_new_bounds_forget_the_answers_of_the_old_ones() -> None:
    """A latency threshold that stops being a bound is answered from the bound below it:
    an answer remembered under the old bounds must not outlive them."""
    live = TargetEvents()
    live.add(BASE, True, 0.2)
    assert live.counts(BASE, 300.0, 0.25) == Counts(1, 1)
    bounds = tuple(b for b in DEFAULT_BOUNDS if b != 0.25)
    live.rebound(bounds)
    assert live.counts(BASE, 300.0, 0.25) == fill([(BASE, True, 0.2)], bounds).counts(
        BASE, 300.0, 0.25) == Counts(0, 1)
    other = TargetEvents()
    other.add(BASE, False, 0.2)
    live.take(other)
    assert live.counts(BASE, 300.0, 0.25) == Counts(0, 1)
    assert live.counts(BASE, 300.0) == Counts(0, 1)


def test_answers_kept_are_bounded() -> None:
    """Windows of earlier configs are not kept for ever: at most 32 answers a target."""
    live = TargetEvents()
    live.add(BASE, True, 0.05)
    for minutes in range(1, 200):
        assert live.counts(BASE, 60.0 * minutes) == Counts(1, 1)
    assert live._memo is not None and 0 < len(live._memo) <= 32


def test_equal_bounds_are_one_shared_tuple_of_floats_and_bad_ones_are_refused() -> None:
    from slamon.sli.events import checked_bounds

    first = checked_bounds([0.125, 0.5, 3])
    assert first == (0.125, 0.5, 3.0) and all(type(b) is float for b in first)
    # given again as a list, as an equal tuple, or with ints: the same object
    assert checked_bounds([0.125, 0.5, 3.0]) is first
    assert checked_bounds((0.125, 0.5, 3.0)) is first
    again = checked_bounds((0.125, 0.5, 3))
    assert again is first and type(again[2]) is float
    for bad in ((0.5, 0.125), (0.0, 1.0), (-1.0,), (float("nan"),), (1.0, float("inf"))):
        with pytest.raises(ValueError):
            checked_bounds(bad)
