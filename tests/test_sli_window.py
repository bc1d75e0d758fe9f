"""RollingWindow: checked against a naive recomputation from the raw event list."""

from __future__ import annotations

import math
import struct
import sys
import time
import zlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slamon.sli.window import (
    COUNTER_MAX,
    DEFAULT_TIERS,
    Counts,
    RollingCounter,
    RollingWindow,
    Tier,
    _halves,
    cell_sums,
)

# small rings so that hypothesis laps them often
SMALL_TIERS = (Tier(1.0, 5), Tier(4.0, 6), Tier(16.0, 5))

Event = tuple[float, int, int]


def naive_query(
    events: Sequence[Event], tiers: Sequence[Tier], now: float, length: float
) -> Counts:
    """The documented semantics, recomputed from scratch.

    Tier: the finest with (buckets - 1) * resolution >= length. It retains the
    buckets in (H - buckets, H], H = the largest bucket index of any event added.
    Sum the events whose bucket index lies in [floor((now - length) / r), floor(now / r)].
    """
    tier = next(t for t in tiers if length <= (t.buckets - 1) * t.resolution)
    r, n = tier.resolution, tier.buckets
    if not events:
        return Counts(0, 0)
    head = max(math.floor(t / r) for t, _, _ in events)
    first, last = math.floor((now - length) / r), math.floor(now / r)
    good = valid = 0
    for t, g, v in events:
        b = math.floor(t / r)
        if first <= b <= last and b > head - n:
            good += g
            valid += v
    return Counts(good, valid)


def ideal_query(events: Sequence[Event], r: float, now: float, length: float) -> Counts:
    """Sum of events in [align(now - length), align(now) + r): no retention limit."""
    first, last = math.floor((now - length) / r), math.floor(now / r)
    sel = [(g, v) for t, g, v in events if first <= math.floor(t / r) <= last]
    return Counts(sum(g for g, _ in sel), sum(v for _, v in sel))


def _event(t: float, g: int, extra: int) -> Event:
    return (t, g, g + extra)


times = st.one_of(
    st.integers(min_value=0, max_value=40).map(float),
    st.integers(min_value=0, max_value=400).map(float),
    st.floats(min_value=0, max_value=400, allow_nan=False),
)
events_st = st.builds(_event, times, st.integers(0, 3), st.integers(0, 2))
# time as a walk (mostly forward, sometimes back, sometimes a jump) hits every ring case:
# one-bucket advances onto last lap's slot, late events, multi-lap gaps
steps = st.one_of(
    st.integers(-3, 3).map(float),
    st.floats(-6, 8, allow_nan=False),
    st.integers(4, 200).map(float),
)
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("add"), steps, st.integers(0, 3), st.integers(0, 2)),
        st.tuples(
            st.just("query"),
            st.floats(-8, 8, allow_nan=False),
            st.floats(min_value=0, max_value=SMALL_TIERS[-1].retention, allow_nan=False),
            st.just(0),
        ),
    ),
    max_size=80,
)


def _check_ops(ops: list[tuple[str, float, float, int]], clock: float) -> None:
    window = RollingWindow(SMALL_TIERS)
    events: list[Event] = []
    for op, a, b, c in ops:
        if op == "add":
            clock += a
            good, valid = int(b), int(b) + c
            window.add(clock, good, valid)
            events.append((clock, good, valid))
        else:
            now, length = clock + a, b
            assert window.query(now, length) == naive_query(events, SMALL_TIERS, now, length)
    for length in (0.0, 2.0, 4.0, 12.0, 30.0, 64.0):
        assert window.query(clock, length) == naive_query(events, SMALL_TIERS, clock, length)


@settings(max_examples=400, deadline=None)
@given(ops_st)
def test_query_matches_naive_small_tiers(ops: list[tuple[str, float, float, int]]) -> None:
    _check_ops(ops, clock=100.0)


@settings(max_examples=100, deadline=None)
@given(ops_st)
def test_query_matches_naive_before_the_epoch(ops: list[tuple[str, float, float, int]]) -> None:
    # time is just a number here: negative bucket indices are buckets like any other,
    # so "never written" must lie below every index a finite time can give
    _check_ops(ops, clock=-300.0)


# the same few lengths asked again and again, as a scrape does: answers slide from the
# previous one, and every add, lap and jump must keep the slid answer exact
cached_ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("add"), steps, st.integers(0, 3), st.integers(0, 2)),
        st.tuples(
            st.just("query"),
            st.one_of(st.floats(-3, 3, allow_nan=False), st.integers(-40, 40).map(float)),
            st.sampled_from([0.0, 3.0, 4.0, 7.5, 12.0, 20.0, 64.0]),
            st.just(0),
        ),
    ),
    max_size=120,
)


@settings(max_examples=600, deadline=None)
@given(cached_ops_st)
def test_repeated_lengths_slide_exactly(ops: list[tuple[str, float, float, int]]) -> None:
    _check_ops(ops, clock=100.0)


class _Reading(RollingCounter):
    """A counter that counts the buckets its queries read."""

    __slots__ = ("read",)

    def __init__(self, tiers: Sequence[Tier]) -> None:
        super().__init__(tiers)
        self.read = 0

    def _range(self, i: int, first: int, last: int) -> list[int]:
        self.read += max(0, last - first + 1)
        return super()._range(i, first, last)


@settings(max_examples=600, deadline=None)
@given(cached_ops_st)
def test_an_answer_slides_only_where_that_reads_fewer_buckets(
    ops: list[tuple[str, float, float, int]],
) -> None:
    """A length asked again reads the fewer buckets of the two ways to answer: sliding
    the last answer (the buckets that left and those that came) where it can slide
    (forward, overlapping or adjacent), or summing the range afresh; nothing when the
    range has not moved. Wrong answers are the other tests' business: here, a slide
    left out or a costly one taken."""
    ring = _Reading(SMALL_TIERS)
    clock = 100.0
    for op, a, b, _ in ops:
        if op == "add":
            clock += a
            ring.add(clock, int(b))
            continue
        length = b
        cached = ring._cache.get(length) if ring._cache else None
        was = None if cached is None else (cached[1], cached[2])
        ring.read = 0
        ring.query(clock + a, length)
        now = ring._cache.get(length) if ring._cache else None
        if now is None:  # an empty range: nothing read, nothing kept
            assert ring.read == 0 and was is None
            continue
        first, last = now[1], now[2]
        fresh_cost = last - first + 1
        if was is None:
            assert ring.read == fresh_cost
            continue
        was_first, was_last = was
        slide_cost = (first - was_first) + (last - was_last)
        if (first, last) == was:
            expected = 0  # or an empty range, which kept the answer
        elif was_first <= first <= was_last + 1 and was_last <= last:
            expected = min(slide_cost, fresh_cost)
        else:
            expected = fresh_cost
        assert ring.read == expected, (was, (first, last))


def test_a_one_bucket_answer_that_grows_slides() -> None:
    """The one case of a slide from the answer's last bucket that is cheaper than summing
    afresh: an answer of one bucket (here cut short by the newest bucket written) that
    grows by the next."""
    ring = _Reading(SMALL_TIERS)
    ring.add(10.5)
    assert ring.query(13.2, 3.0) == 1  # buckets 10..13, written up to 10
    ring.add(11.5)
    ring.read = 0
    assert ring.query(13.2, 3.0) == 2  # buckets 10..11 now
    assert ring.read == 1  # bucket 11 added to the answer; bucket 10 not read again


def test_slid_answers_follow_saturation_and_late_events() -> None:
    window = RollingCounter(SMALL_TIERS)
    for k in range(40):
        t = 100.0 + k
        window.add(t, COUNTER_MAX - 1 if k == 3 else 1)  # k=3, 4: the slot saturates
        window.add(t - 2.5)  # late: lands inside an answer already given
        # a copy has no answers cached: it sums every bucket afresh
        fresh = RollingCounter.from_bytes(window.to_bytes(), SMALL_TIERS)
        for length in (3.0, 12.0, 64.0):
            assert window.query(t, length) == fresh.query(t, length)
    assert window.query(139.0, 64.0) < 40 * 2 + COUNTER_MAX


def test_sequential_laps() -> None:
    """Every second for several laps of every ring, checked after each add."""
    window = RollingWindow(SMALL_TIERS)
    events: list[Event] = []
    for i in range(200):
        t = 1000.0 + i + (i % 3) * 0.3
        window.add(t, i % 2, 1)
        events.append((t, i % 2, 1))
        for length in (0.0, 3.0, 4.0, 20.0, 64.0):
            assert window.query(t, length) == naive_query(events, SMALL_TIERS, t, length)


def test_alignment_and_span() -> None:
    w = RollingWindow(SMALL_TIERS)
    w.add(10.0, 1, 1)  # bucket [10, 11) of the 1 s tier
    w.add(13.5, 0, 1)  # bucket [13, 14)
    assert w.tier_for(3.0) == Tier(1.0, 5)
    # [align(13.7 - 3), align(13.7)] = [10, 13] -> both events, span [10, 14)
    assert w.span(13.7, 3.0) == (10.0, 14.0)
    assert w.query(13.7, 3.0) == Counts(1, 2)
    # [11, 13] -> only the second
    assert w.query(13.7, 2.5) == Counts(0, 1)
    assert w.span(13.7, 2.5) == (11.0, 14.0)
    # a length beyond the 1 s tier goes to the 4 s tier: buckets [8, 12) and [12, 16)
    assert w.tier_for(4.5) == Tier(4.0, 6)
    assert w.query(13.7, 4.5) == Counts(1, 2)


def test_out_of_order_adds() -> None:
    w = RollingWindow(SMALL_TIERS)
    w.add(100.0, 1, 1)
    w.add(97.0, 0, 1)  # late by 3 s: 1 s tier still holds bucket 97 (head 100, 5 buckets)
    w.add(95.0, 1, 1)  # 100 - 5 = 95: gone from the 1 s tier, kept by coarser tiers
    assert w.query(100.0, 4.0) == Counts(1, 2)
    assert w.query(100.0, 8.0) == Counts(2, 3)  # 4 s tier: buckets 92..100


def test_lap_never_resurrects_old_data() -> None:
    w = RollingWindow(SMALL_TIERS)
    w.add(10.0, 1, 1)
    # jump by exactly one lap of the 1 s ring: slot 10 % 5 == 15 % 5
    w.add(15.0, 0, 1)
    assert w.query(10.5, 0.0) == Counts(0, 0)  # bucket 10 no longer retained by the 1 s tier
    assert w.query(15.0, 4.0) == Counts(0, 1)
    # far beyond every ring: everything old is gone, even when querying back in time
    w.add(10_000.0, 1, 1)
    for now in (10.0, 15.0, 9999.0):
        for length in (0.0, 4.0, 20.0, 64.0):
            assert w.query(now, length) == Counts(0, 0)
    assert w.query(10_000.0, 64.0) == Counts(1, 1)
    # a late event from before the jump is dropped by every tier
    w.add(15.0, 1, 1)
    assert w.query(10_000.0, 64.0) == Counts(1, 1)
    assert w.query(15.0, 64.0) == Counts(0, 0)


def test_time_going_backwards_slightly() -> None:
    w = RollingWindow()
    base = 1_700_000_000.0
    w.add(base, 1, 1)
    w.add(base - 0.5, 1, 1)
    w.add(base - 30, 0, 1)
    assert w.query(base, 60) == Counts(2, 3)
    # querying slightly in the past excludes newer buckets but keeps older ones
    assert w.query(base - 20, 20) == Counts(0, 1)


def test_large_gaps() -> None:
    w = RollingWindow()
    base = 1_700_000_000.0
    w.add(base, 1, 1)
    w.add(base + 3 * 3600, 1, 1)  # beyond 10 s and 1 min tiers
    assert w.query(base + 3 * 3600, 600) == Counts(1, 1)
    assert w.query(base + 3 * 3600, 4 * 3600) == Counts(2, 2)
    w.add(base + 100 * 86400, 0, 1)  # beyond every tier
    assert w.query(base + 100 * 86400, 92 * 86400) == Counts(0, 1)


def test_saturation_keeps_good_le_valid() -> None:
    w = RollingWindow(SMALL_TIERS)
    for _ in range(3):
        w.add(5.0, 30_000, 30_001)
    assert w.query(5.0, 0.0) == Counts(COUNTER_MAX, COUNTER_MAX)
    c = RollingCounter(SMALL_TIERS)
    c.add(5.0, 70_000)
    assert c.query(5.0, 0.0) == COUNTER_MAX


def test_a_ring_carries_past_255_widens_past_1023_and_tells_when_it_saturates() -> None:
    c = RollingCounter(SMALL_TIERS)
    size = sum(t.buckets for t in SMALL_TIERS)
    assert c.add(4.0, 255) is False
    assert [a.typecode for a in c._counters] == ["B"], "255 fits in a byte"
    assert c.nbytes() == size
    assert c.add(4.0, 1) is False
    # 4.0 is slot 4 of the 1 s tier: carry bits for slots 4..15, one byte per four
    assert [a.typecode for a in c._counters] == ["B"]
    assert c.nbytes() == size + 3
    assert c.query(4.0, 0.0) == 256 and c.query(4.0, 30.0) == 256
    assert c.add(4.0, 1023 - 256) is False
    assert [a.typecode for a in c._counters] == ["B"], "1,023 fits in ten bits"
    assert c.query(4.0, 0.0) == 1023 and c.query(4.0, 30.0) == 1023
    assert c.add(4.0, 1) is False
    assert [a.typecode for a in c._counters] == ["H"]
    assert c.nbytes() == 2 * size
    assert c.query(4.0, 0.0) == 1024 and c.query(4.0, 30.0) == 1024
    assert c.add(4.0, COUNTER_MAX - 1024) is False, "exactly full: nothing left out"
    assert c.query(4.0, 0.0) == COUNTER_MAX
    assert c.add(4.0, 1) is True
    assert c.query(4.0, 0.0) == COUNTER_MAX
    assert c.add(40.0, 1) is False  # a bucket of its own in every tier
    # from a byte straight to exactly full in one add
    assert RollingCounter(SMALL_TIERS).add(4.0, COUNTER_MAX) is False


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.floats(0, 60, allow_nan=False)), max_size=40),
    st.integers(-10, 62),
    st.integers(0, 20),
    st.integers(0, 3),
)
def test_cell_sums_count_what_each_ring_retains(
    events: list[tuple[int, float]], first: int, span: int, good_cells: int
) -> None:
    """Every tier, a range of buckets from before what the rings retain to past their
    heads: each ring counts its events in the buckets it still holds (after its own
    head, in the last n), good when its cell is below `good_cells`."""
    rings = [(cell, RollingCounter(SMALL_TIERS)) for cell in range(3)]
    for cell, t in events:
        rings[cell][1].add(t)
    last = first + span
    for tier, (res, n, _) in enumerate(rings[0][1]._layout):
        good = valid = 0
        for cell, _ring in rings:
            buckets = [math.floor(t / res) for c, t in events if c == cell]
            head = max(buckets, default=0)
            held = [b for b in buckets if head - n < b <= head and first <= b <= last]
            valid += len(held)
            good += len(held) if cell < good_cells else 0
        assert cell_sums(rings, tier, first, last, good_cells) == (good, valid)


# 18 slots: the carry bits of a counter need not start on a slot that is a multiple of 4
ODD_TIERS = (Tier(1.0, 7), Tier(3.0, 6), Tier(9.0, 5))

big_ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("add"), steps, st.integers(0, 300), st.integers(0, 300)),
        st.tuples(st.just("query"), st.floats(-8, 8, allow_nan=False),
                  st.floats(0, 36, allow_nan=False), st.just(0)),
        st.tuples(st.just("reload"), st.just(0.0), st.just(0.0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([SMALL_TIERS, ODD_TIERS]), big_ops_st)
def test_counts_past_a_byte_equal_the_naive_sums(
    tiers: tuple[Tier, ...], ops: list[tuple[str, float, float, int]],
) -> None:
    """Buckets of hundreds of events: carry bits set, cleared by laps, extended to a finer
    tier, widened past 1,023, read by a query, a slid answer, `cell_sums` (one bucket
    and a range), `split`, a snapshot round trip and `absorb`, always the naive sums."""
    w, c = RollingWindow(tiers), RollingCounter(tiers)
    events: list[Event] = []
    clock = 0.0

    def check(now: float, length: float) -> None:
        want = naive_query(events, tiers, now, length)
        assert w.query(now, length) == want
        assert c.query(now, length) == want.valid - want.good

    for op, a, b, extra in ops:
        if op == "add":
            clock += a
            good = int(b)
            w.add(clock, good, good + extra)
            c.add(clock, extra)
            events.append((clock, good, good + extra))
        elif op == "query":
            check(clock + a, b)
        else:  # a restart: what the snapshot restores is the ring from then on
            w = RollingWindow.from_bytes(w.to_bytes(), tiers)
            c = RollingCounter.from_bytes(c.to_bytes(), tiers)
    for length in (0.0, 1.0, 3.0, 6.0, 9.0, 18.0, 36.0):
        check(clock, length)
    good_ring, bad_ring = w.split()
    for tier, (res, n, _) in enumerate(w._layout):
        head = max((math.floor(t / res) for t, _, _ in events), default=0)
        for first, last in ((head, head), (head - 1, head - 1), (head - n, head),
                            (head - 3, head - 1)):
            held = [(g, v) for t, g, v in events
                    if max(head - n + 1, first) <= math.floor(t / res) <= min(head, last)]
            good, valid = sum(g for g, _ in held), sum(v for _, v in held)
            assert cell_sums([(0, good_ring), (1, bad_ring)], tier, first, last, 1) == (good, valid)
            assert cell_sums([(0, c)], tier, first, last, 0) == (0, valid - good)
    both = RollingWindow(tiers)
    both.absorb(w)
    both.absorb(RollingWindow(tiers))
    for length in (0.0, 3.0, 36.0):
        assert both.query(clock, length) == w.query(clock, length)


@pytest.mark.parametrize("tiers", [SMALL_TIERS, ODD_TIERS])
def test_carry_bits_of_a_slot_go_with_its_lap(tiers: tuple[Tier, ...]) -> None:
    """A bucket past 255 every few seconds, one bucket at a time: every slot a one-bucket
    step moves onto loses the carry bits of its last lap (the first slot of the carry
    fields too), and every window equals the naive sums at every step."""
    c = RollingCounter(tiers)
    events: list[Event] = []
    for second in range(90):
        count = 300 if second % 7 == 0 else 1
        c.add(float(second), count)
        events.append((float(second), 0, count))
        for length in (0.0, 1.0, 3.0, 6.0, 9.0, 18.0, 36.0):
            if length <= c.retention:
                assert c.query(float(second), length) == naive_query(
                    events, tiers, float(second), length).valid, (second, length)


def test_four_slots_of_carry_bits_three_each_are_summed_from_one_byte() -> None:
    c = RollingCounter(SMALL_TIERS)
    # 800 in each of the 16 s buckets 1..4 (slots 12-15: carry bits from slot 12 on, one
    # byte, 0xFF), 50 a second so that no finer bucket passes 1,023
    for second in range(16, 80):
        c.add(float(second), 50)
    assert [a.typecode for a in c._counters] == ["B"]
    assert c.nbytes() == 16 + 1
    assert c.query(79.0, 48.0) == 4 * 800
    assert c.query(79.0, 32.0) == 3 * 800


def test_a_migrated_ring_reads_counts_past_255_whole() -> None:
    w = RollingWindow(SMALL_TIERS)
    w.add(50.0, 300, 700)
    w.add(51.0, 1, 2)
    assert [a.typecode for a in w._counters] == ["B", "B"]
    moved = RollingWindow.from_bytes(w.to_bytes(), (Tier(1.0, 8), Tier(4.0, 3), Tier(16.0, 5)))
    assert moved.query(50.0, 0.0) == Counts(300, 700)
    assert moved.query(51.0, 8.0) == Counts(301, 702)
    assert [a.typecode for a in moved._counters] == ["B", "B"]


@pytest.mark.parametrize("order", ["little", "big"])
def test_halves_of_uint16_in_either_byte_order(order: str) -> None:
    fmt = "<" if order == "little" else ">"
    values = (0, 1, 200, 255, 256, 0x3FF, 0x1234, COUNTER_MAX)
    low, high = _halves(struct.pack(f"{fmt}8H", *values), order)
    assert low == bytes(v & 0xFF for v in values)
    assert high == bytes(v >> 8 for v in values)
    assert _halves(b"", order) == (b"", b"")


def test_split_gives_the_good_and_the_bad_of_a_window() -> None:
    w = RollingWindow(SMALL_TIERS)
    w.add(10.5, 3, 5)
    w.add(11.5, 2, 2)  # all good: no bad in this bucket
    w.add(30.0, 0, 4)
    good, bad = w.split()
    for now, length in ((10.5, 0.0), (11.5, 0.0), (30.0, 0.0), (12.0, 3.0), (30.0, 60.0)):
        counts = w.query(now, length)
        assert (good.query(now, length), bad.query(now, length)) == (
            counts.good, counts.valid - counts.good), (now, length)
    assert [c.typecode for c in good._counters + bad._counters] == ["B", "B"]
    big = RollingWindow(SMALL_TIERS)
    big.add(10.0, 300, 301)
    good, bad = big.split()
    assert (good.query(10.0, 0.0), bad.query(10.0, 0.0)) == (300, 1)
    assert [c.typecode for c in good._counters + bad._counters] == ["B", "B"]
    assert good.nbytes() > bad.nbytes(), "300 needs carry bits, 1 does not"
    big.add(10.0, 800, 800)
    good, bad = big.split()
    assert (good.query(10.0, 0.0), bad.query(10.0, 0.0)) == (1100, 1)
    assert [c.typecode for c in good._counters + bad._counters] == ["H", "B"]


def test_a_tier_merged_from_a_finer_one_keeps_its_oldest_bucket() -> None:
    """A new 4 s tier made of the old 1 s tier's 12 buckets fills all its 3 buckets: the
    newest is written last and must not land on the oldest's slot."""
    w = RollingWindow((Tier(1.0, 12), Tier(16.0, 5)))
    for s in range(12, 24):
        w.add(s + 0.5, 1, 1)
    moved = RollingWindow.from_bytes(w.to_bytes(), (Tier(4.0, 3), Tier(16.0, 5)))
    assert moved.tier_for(8.0) == Tier(4.0, 3)
    assert moved.query(15.9, 0.0) == Counts(4, 4)  # the oldest bucket, 12..15
    assert moved.query(23.5, 8.0) == Counts(12, 12)


def test_validation() -> None:
    w = RollingWindow(SMALL_TIERS)
    with pytest.raises(ValueError):
        w.add(1.0, 2, 1)
    with pytest.raises(ValueError):
        w.add(1.0, -1, 1)
    with pytest.raises(ValueError):
        w.add(math.nan, 1, 1)
    with pytest.raises(ValueError):
        w.query(1.0, SMALL_TIERS[-1].retention + 1)
    with pytest.raises(ValueError):
        w.query(1.0, -1)
    with pytest.raises(ValueError):
        RollingWindow((Tier(10, 5), Tier(1, 5)))
    with pytest.raises(ValueError):
        Tier(0, 5)
    with pytest.raises(ValueError):
        Tier(1, 1)
    assert w.retention == 64.0
    assert RollingWindow().retention == 92 * 86400


@settings(max_examples=60, deadline=None)
@given(st.lists(events_st, max_size=40), st.floats(0, 450, allow_nan=False))
def test_bytes_round_trip(events: list[Event], now: float) -> None:
    w = RollingWindow(SMALL_TIERS)
    for t, g, v in events:
        w.add(t, g, v)
    back = RollingWindow.from_bytes(w.to_bytes(), SMALL_TIERS)
    for length in (0.0, 3.0, 4.0, 10.0, 20.0, 64.0):
        assert back.query(now, length) == w.query(now, length)
    # and it keeps working identically afterwards
    w.add(now, 1, 1)
    back.add(now, 1, 1)
    assert back.to_bytes() == w.to_bytes()


def test_bytes_default_tiers_size_and_counter() -> None:
    w = RollingWindow()
    base = 1_700_000_000.0
    for i in range(0, 92 * 24 * 3600, 30):  # a full 92 days at a 30 s interval
        w.add(base + i, 1 if i % 7 else 0, 1)
    blob = w.to_bytes()
    back = RollingWindow.from_bytes(blob)
    end = base + 92 * 24 * 3600
    for length in (300, 3600, 86400, 30 * 86400, 90 * 86400):
        assert back.query(end, length) == w.query(end, length)
    print(
        f"\nto_bytes: full 92 d window at 30 s = {len(blob)} bytes "
        f"(empty {len(RollingWindow().to_bytes())} bytes, raw counters {w.nbytes()})"
    )
    c = RollingCounter()
    c.add(base, 3)
    assert RollingCounter.from_bytes(c.to_bytes()).query(base, 10) == 3
    with pytest.raises(ValueError):
        RollingCounter.from_bytes(blob)  # a window is not a counter


def test_from_bytes_rejects_garbage() -> None:
    blob = RollingWindow(SMALL_TIERS).to_bytes()
    for bad in (
        b"",
        b"xyz",
        blob[:10],
        b"NOPE" + blob[4:],
        blob[:-3],
        blob[:3] + b"\x09" + blob[4:],
    ):
        with pytest.raises(ValueError):
            RollingWindow.from_bytes(bad, SMALL_TIERS)


def test_from_bytes_migrates_tiers() -> None:
    old = RollingWindow(SMALL_TIERS)
    for t in range(0, 100):
        old.add(float(t), 1, 1)
    new_tiers = (Tier(1.0, 8), Tier(2.0, 10), Tier(16.0, 3))
    new = RollingWindow.from_bytes(old.to_bytes(), new_tiers)
    # 1 s: 5 stored buckets kept (95..99); 2 s: new resolution, empty; 16 s: newest 3 (80..99)
    assert new.query(99.0, 4.0) == Counts(5, 5)
    assert new.query(99.0, 7.0) == Counts(5, 5)  # 92 .. 99 requested, only 95..99 known
    assert new.query(99.0, 10.0) == Counts(0, 0)  # the 2 s tier starts empty
    assert new.query(99.0, 32.0) == Counts(36, 36)  # 16 s tier keeps buckets 4..6: t 64..99
    new.add(100.0, 0, 1)
    assert new.query(100.0, 0.0) == Counts(0, 1)


@pytest.mark.parametrize("new_tiers", [
    (Tier(1.0, 8), Tier(4.0, 3), Tier(16.0, 5)),  # the same resolutions, other lengths
    (Tier(1.0, 5), Tier(8.0, 6), Tier(16.0, 5)),  # the same lengths, another resolution
])
def test_from_bytes_onto_tiers_that_differ_in_one_way_only(new_tiers: tuple[Tier, ...]) -> None:
    old, direct = RollingWindow(SMALL_TIERS), RollingWindow(new_tiers)
    for t in range(100):
        good = 0 if t % 7 == 0 else 1
        old.add(float(t), good, 1)
        direct.add(float(t), good, 1)
    new = RollingWindow.from_bytes(old.to_bytes(), new_tiers)
    assert new.tiers == new_tiers
    # a tier of a resolution both have keeps its newest buckets: answers within what
    # both rings retain of it are those of a ring that had the new tiers all along
    for old_tier in SMALL_TIERS:
        kept = next((t for t in new_tiers if t.resolution == old_tier.resolution), None)
        if kept is None:
            continue
        for k in range(min(kept.buckets, old_tier.buckets)):
            length = k * kept.resolution
            if new.tier_for(length) == kept:
                assert new.query(99.0, length) == direct.query(99.0, length), (kept, length)


def test_a_snapshot_of_its_own_tiers_is_read_without_a_migration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = RollingWindow(SMALL_TIERS)
    for t in range(100):
        w.add(float(t), 1, 3 if t == 50 else 1)
    w.add(20.0, 0, 300)  # a bucket past 255: the ring is wide
    for ring in (w, RollingWindow(SMALL_TIERS)):
        blob = ring.to_bytes()

        def no_migration(*args: object) -> None:
            raise AssertionError("migrated a snapshot of the same tiers")

        monkeypatch.setattr(RollingWindow, "_restore_tiers", no_migration)
        back = RollingWindow.from_bytes(blob, SMALL_TIERS)
        assert back.to_bytes() == blob
        assert [c.typecode for c in back._counters] == [c.typecode for c in ring._counters]
        assert back.query(99.0, 60.0) == ring.query(99.0, 60.0)


# the tier that replaced a dropped one is filled from the coarsest dropped tier dividing it
NEW_TIERS = (Tier(1.0, 5), Tier(16.0, 5))


def migrated_naive(
    events: Sequence[Event], old: Tier, new: Tier, now: float, length: float
) -> Counts:
    """The `new` tier after migrating a ring whose coarsest dropped tier `old` divides
    it (factor f): sums of the `old` buckets the old ring still held ((H - old.buckets,
    H], H its newest bucket), in the `new` buckets the new ring retains
    ((H // f - new.buckets, H // f]), over the aligned query range."""
    if not events:
        return Counts(0, 0)
    factor = round(new.resolution / old.resolution)
    h = max(math.floor(t / old.resolution) for t, _, _ in events)
    head = h // factor
    first, last = math.floor((now - length) / new.resolution), math.floor(now / new.resolution)
    good = valid = 0
    for t, g, v in events:
        b = math.floor(t / old.resolution)
        nb = b // factor
        if b > h - old.buckets and nb > head - new.buckets and first <= nb <= last:
            good += g
            valid += v
    return Counts(good, valid)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(events_st, max_size=40),
    st.integers(2, 16),  # buckets of the dropped 4 s tier
    st.integers(2, 4),  # the new tier is 4 s x this
    st.integers(2, 7),  # buckets of the new tier: often fewer groups than the old ring has
    st.lists(st.floats(-20, 470, allow_nan=False), min_size=1, max_size=4),
)
def test_from_bytes_merges_a_dropped_tier_into_a_coarser_one(
    events: list[Event], old_n: int, factor: int, new_n: int, nows: list[float]
) -> None:
    # 2 s and 4 s both divide the new tier: the coarser one (4 s) is the source
    old_tiers = (Tier(1.0, 5), Tier(2.0, 6), Tier(4.0, old_n))
    coarse = Tier(4.0 * factor, new_n)
    new_tiers = (Tier(1.0, 5), coarse)
    old = RollingWindow(old_tiers)
    for t, g, v in events:
        old.add(t, g, v)
    new = RollingWindow.from_bytes(old.to_bytes(), new_tiers)
    latest = [max(t for t, _, _ in events)] if events else []
    for now in [*nows, *latest]:
        for length in (4.5, coarse.resolution, 2 * coarse.resolution, coarse.retention):
            if length > coarse.retention:
                continue
            assert new.tier_for(length) == coarse
            want = migrated_naive(events, old_tiers[-1], coarse, now, length)
            assert new.query(now, length) == want, (now, length)
        # the 1 s tier is the same resolution: kept as it was
        assert new.query(now, 3.0) == old.query(now, 3.0)


def test_migrating_an_empty_snapshot_gives_a_fresh_window() -> None:
    old = RollingWindow((Tier(1.0, 5), Tier(2.0, 6), Tier(8.0, 9)))
    new = RollingWindow.from_bytes(old.to_bytes(), NEW_TIERS)
    assert new.to_bytes() == RollingWindow(NEW_TIERS).to_bytes()
    assert new.query(100.0, 60.0) == Counts(0, 0)


def test_a_never_written_tier_is_stored_with_the_documented_head() -> None:
    """The head of a tier that never saw an event is -(2**62) in every state file: a
    later version recognises such tiers by it (they migrate as empty)."""
    blob = RollingWindow(SMALL_TIERS).to_bytes()
    assert struct.unpack_from("<3sBBH", blob) == (b"SLW", 1, 2, 3)
    tiers = [struct.unpack_from("<dIq", blob, 7 + 20 * i) for i in range(3)]
    assert tiers == [(1.0, 5, -(2**62)), (4.0, 6, -(2**62)), (16.0, 5, -(2**62))]
    # compressed: an empty default window is a few dozen bytes, not 7,840
    assert len(RollingWindow().to_bytes()) < 200


def test_from_bytes_starts_a_tier_empty_without_a_dividing_source() -> None:
    old = RollingWindow((Tier(1.0, 5), Tier(6.0, 20)))
    for t in range(100):
        old.add(float(t), 1, 1)
    new = RollingWindow.from_bytes(old.to_bytes(), NEW_TIERS)
    assert new.query(99.0, 3.0) == Counts(4, 4)
    assert new.query(99.0, 60.0) == Counts(0, 0)  # 6 s buckets cannot make 16 s ones


def test_from_bytes_migrates_the_former_hourly_tier() -> None:
    """Snapshots of the older 1 h x 2209 top tier load into the 2 h tier exactly."""
    former = (*DEFAULT_TIERS[:3], Tier(3600.0, 2209))
    old, direct = RollingWindow(former), RollingWindow()
    base = 1_700_000_000.0
    for i in range(30 * 144):  # 30 days, one event per 10 min
        t = base + 600 * i + 7
        for w in (old, direct):
            w.add(t, 1 if i % 5 else 0, 1)
    new = RollingWindow.from_bytes(old.to_bytes())
    end = base + 30 * 86400
    for length in (4 * 86400, 10 * 86400, 31 * 86400, 60 * 86400):
        assert new.query(end, length) == direct.query(end, length)
    assert new.query(end, 31 * 86400) == Counts(30 * 144 * 4 // 5, 30 * 144)


def test_reads_a_version_1_snapshot_built_from_the_documented_layout() -> None:
    """What an older slamon wrote must load: header "<3sBBH" (magic, version 1, fields,
    tiers), "<dIq" per tier (resolution, buckets, head), then zlib'd little-endian
    uint16 counters, all good counters first."""
    tiers = (Tier(1.0, 3), Tier(4.0, 2))
    # 1 s tier, head 10: buckets 8, 9, 10 in slots 8 % 3 = 2, 0, 1
    good_1s, valid_1s = [0, 3, 1], [1, 3, 2]
    # 4 s tier, head 2: bucket 2 ([8, 12)) in slot 0, bucket 1 ([4, 8)) in slot 1
    good_4s, valid_4s = [4, 2], [6, 2]
    body = struct.pack("<5H", *good_1s, *good_4s) + struct.pack("<5H", *valid_1s, *valid_4s)
    blob = (
        struct.pack("<3sBBH", b"SLW", 1, 2, 2)
        + struct.pack("<dIq", 1.0, 3, 10)
        + struct.pack("<dIq", 4.0, 2, 2)
        + zlib.compress(body)
    )
    w = RollingWindow.from_bytes(blob, tiers)
    assert w.query(10.5, 2.0) == Counts(4, 6)  # buckets 8..10 of the 1 s tier
    assert w.query(10.5, 1.0) == Counts(3, 4)  # buckets 9..10
    assert w.query(10.5, 4.0) == Counts(6, 8)  # buckets 1..2 of the 4 s tier
    assert struct.unpack_from("<3sBBH", w.to_bytes()) == (b"SLW", 1, 2, 2)


def test_counters_saturate_at_the_uint16_maximum() -> None:
    # the snapshot stores uint16 counters: the ceiling is 2**16 - 1, reached, not wrapped
    w = RollingWindow(SMALL_TIERS)
    w.add(5.0, 40_000, 40_000)
    w.add(5.0, 40_000, 40_000)
    w.add(6.0, 2**16 - 1, 2**16 - 1)
    assert w.query(5.0, 0.0) == Counts(2**16 - 1, 2**16 - 1)
    assert w.query(6.0, 0.0) == Counts(2**16 - 1, 2**16 - 1)
    c = RollingCounter(SMALL_TIERS)
    c.add(5.0, 2**16 + 5)
    assert c.query(5.0, 0.0) == 2**16 - 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 120), st.integers(0, 120)),
                max_size=60),
       st.integers(0, 60))
def test_a_ring_widens_when_a_bucket_passes_255_and_loses_nothing(
    events: list[tuple[int, int, int]], query_at: int,
) -> None:
    """Counters start as uint8; a bucket that passes 255 keeps two carry bits, the first
    one that would pass 1,023 widens the whole ring to uint16, so every count equals the
    naive sum (below the uint16 ceiling), and a snapshot round trip (always uint16)
    restores the same counts at the width needed."""
    w = RollingWindow(SMALL_TIERS)
    c = RollingCounter(SMALL_TIERS)
    for t, good, extra in events:
        w.add(float(t), good, good + extra)
        c.add(float(t), extra)
        w.query(float(t), 8.0)  # a cached answer must follow the widening too
    for length in (0.0, 3.0, 8.0, 30.0):
        res = w.tier_for(length).resolution
        first = math.floor((query_at - length) / res)
        last = math.floor(query_at / res)
        newest = max((math.floor(t / res) for t, _, _ in events), default=None)
        if newest is None:
            continue
        n = w.tier_for(length).buckets
        kept = [(t, g, x) for t, g, x in events
                if first <= math.floor(t / res) <= last and math.floor(t / res) > newest - n]
        assert w.query(float(query_at), length) == Counts(
            sum(g for _, g, _ in kept), sum(g + x for _, g, x in kept))
        assert c.query(float(query_at), length) == sum(x for _, _, x in kept)
    # the largest count any bucket of any tier can have held (events it dropped as too
    # old included): uint8 if that fits, carry bits only if some bucket could pass 255,
    # uint16 only if some bucket could pass 1,023
    widest = max((sum(g + x for t2, g, x in events if math.floor(t2 / tier.resolution) == b)
                  for tier in SMALL_TIERS
                  for b in {math.floor(t / tier.resolution) for t, _, _ in events}), default=0)
    size = sum(t.buckets for t in SMALL_TIERS)
    narrow = size * 2
    if widest <= 255:
        assert w.nbytes() == narrow
    elif widest <= 1023:
        assert [a.typecode for a in w._counters] == ["B", "B"]
        assert narrow < w.nbytes() <= 2 * (size + (size + 3) // 4)
    assert w.nbytes() == 2 * narrow or [a.typecode for a in w._counters] == ["B", "B"]
    assert w.nbytes() == narrow or widest > 255
    assert w.nbytes() != 2 * narrow or widest > 1023
    for ring in (w, c):
        back = type(ring).from_bytes(ring.to_bytes(), SMALL_TIERS)
        # carry bits start where the counts held then need them: no earlier than in a
        # ring that needed them in a slot a lap has cleared since
        assert back.nbytes() <= ring.nbytes()
        assert ring._counters[0].typecode == "H" or back._counters[0].typecode == "B"
        for length in (0.0, 8.0, 30.0):
            assert back.query(float(query_at), length) == ring.query(float(query_at), length)


def test_rolling_counter_counts_one_by_default_and_accepts_zero() -> None:
    c = RollingCounter(SMALL_TIERS)
    c.add(3.0)
    c.add(3.5)
    c.add(4.0, 0)  # nothing to count is not an error
    assert c.query(4.0, 4.0) == 2
    with pytest.raises(ValueError):
        c.add(4.0, -1)


def test_default_tiers_are_the_documented_ones() -> None:
    """10 min at 10 s, 6 h at 1 min, 3 d at 10 min, 92 d at 2 h; each divides a day
    (the status page's per-day bars) and together they take 3,920 bytes, 7,840 once a
    bucket has passed 255."""
    assert [(t.resolution, t.retention) for t in DEFAULT_TIERS] == [
        (10.0, 600.0),
        (60.0, 6 * 3600.0),
        (600.0, 3 * 86400.0),
        (7200.0, 92 * 86400.0),
    ]
    assert all(86400 % t.resolution == 0 for t in DEFAULT_TIERS)
    assert RollingWindow().nbytes() == 3_920
    carried = RollingWindow()
    for minute in range(720):  # every 10 s for 2 h: 720 in the 2 h bucket, 60 in a 10 min one
        carried.add(minute * 10.0, 1, 1)
    assert carried.nbytes() == 3_920 + 2 * 1_105 // 4 + 2, "carry bits for the 2 h tier only"
    assert carried.query(7190.0, 86400.0) == Counts(720, 720)
    wide = RollingWindow()
    wide.add(0.0, 1024, 1024)
    assert wide.nbytes() == 7_840


def test_tier_shapes() -> None:
    assert Tier(1.0, 2).retention == 1.0  # two buckets is the smallest ring
    with pytest.raises(ValueError):
        RollingWindow((Tier(1.0, 5), Tier(1.0, 6)))  # equal resolutions
    assert RollingWindow(SMALL_TIERS).tiers == SMALL_TIERS


@settings(max_examples=200, deadline=None)
@given(st.floats(-500, 500, allow_nan=False), st.floats(0, 64, allow_nan=False))
def test_span_is_the_aligned_range_of_the_tier_used(now: float, length: float) -> None:
    w = RollingWindow(SMALL_TIERS)
    r = w.tier_for(length).resolution
    start, end = w.span(now, length)
    assert start == math.floor((now - length) / r) * r
    assert end == math.floor(now / r) * r + r
    assert end - start >= length


def test_nbytes_per_window() -> None:
    w = RollingWindow()
    buckets = sum(t.buckets for t in DEFAULT_TIERS)
    assert w.nbytes() == buckets * 2  # two uint8 counters until one passes 255
    assert w.nbytes() < 16 * 1024
    overhead = (
        sys.getsizeof(w)
        + sum(sys.getsizeof(c) - len(c) * c.itemsize for c in w._counters)
        + sys.getsizeof(w._heads)
    )
    print(
        f"\nRollingWindow DEFAULT_TIERS: {buckets} buckets, counters {w.nbytes()} bytes, "
        f"object overhead ~{overhead} bytes; RollingCounter {RollingCounter().nbytes()} bytes"
    )


def test_microbenchmark() -> None:
    """Not an assertion on speed (shared CI cores): prints the cost for the report."""
    w = RollingWindow()
    base = 1_700_000_000.0
    n = 50_000
    t0 = time.perf_counter()
    for i in range(n):
        w.add(base + i, 1, 1)
    add_us = (time.perf_counter() - t0) / n * 1e6
    end = base + n
    results = []
    for length in (300.0, 3600.0, 6 * 3600.0, 3 * 86400.0, 30 * 86400.0, 90 * 86400.0):
        reps = 2000
        t0 = time.perf_counter()
        for _ in range(reps):
            w.query(end, length)
        results.append(f"{length / 3600:g}h={(time.perf_counter() - t0) / reps * 1e6:.1f}us")
    print(f"\nadd: {add_us:.2f} us/event; query: {', '.join(results)}")


def test_a_migrated_ring_has_the_width_its_counts_need() -> None:
    small, big = RollingWindow(SMALL_TIERS), RollingWindow(SMALL_TIERS)
    small.add(50.0, 1, 1)
    big.add(50.0, 300, 300)
    big.add(51.0, 256, 512)  # low bytes zero: only the high ones tell it needs more
    carried = RollingWindow.from_bytes(big.to_bytes(), SMALL_TIERS)
    big.add(52.0, 1024, 1024)
    new_tiers = (Tier(1.0, 8), Tier(4.0, 3), Tier(16.0, 5))
    narrow = RollingWindow.from_bytes(small.to_bytes(), new_tiers)
    wide = RollingWindow.from_bytes(big.to_bytes(), new_tiers)
    assert [c.typecode for c in narrow._counters] == ["B", "B"]
    assert [c.typecode for c in carried._counters] == ["B", "B"]
    assert [c.typecode for c in wide._counters] == ["H", "H"]
    assert narrow.query(50.0, 0.0) == Counts(1, 1)
    assert carried.query(51.0, 0.0) == Counts(256, 512)
    # 300 in slot 0 (bucket 50 of the 1 s tier): carry bits for all 16 slots, four bytes
    assert carried.nbytes() == 2 * (16 + 4)
    assert carried.query(51.0, 60.0) == Counts(556, 812)
    assert wide.query(50.0, 0.0) == Counts(300, 300)
    assert wide.query(51.0, 0.0) == Counts(256, 512)


@settings(max_examples=300, deadline=None)
@given(st.lists(events_st, max_size=30), st.lists(events_st, max_size=30))
def test_absorb_equals_adding_the_other_rings_events(a: list[Event], b: list[Event]) -> None:
    # small tiers: laps, clearing and what both rings retain are all exercised
    mine, theirs, both = (RollingWindow(SMALL_TIERS) for _ in range(3))
    for t, g, v in a:
        mine.add(t, g, v)
        both.add(t, g, v)
    for t, g, v in b:
        theirs.add(t, g, v)
        both.add(t, g, v)
    mine.absorb(theirs)
    now = max([t for t, _, _ in a + b] + [0.0])
    for length in (0.0, 1.0, 3.0, 4.0, 8.0, 20.0, 40.0, 64.0):
        assert mine.query(now, length) == both.query(now, length), length
    with pytest.raises(ValueError, match="same tiers"):
        mine.absorb(RollingWindow((Tier(1.0, 5), Tier(4.0, 6), Tier(16.0, 6))))
