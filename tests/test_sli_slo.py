"""SloState: SLI per part, combined time-slice SLI, error budget and burn rate."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slamon.config.slo import Slo
from slamon.sli import DEFAULT_TIERS, Counts, RollingWindow, SloState, Tier, is_good

BASE = 1_699_999_200.0  # a multiple of 1 h: slices and buckets start here
WINDOW_BYTES = RollingWindow().nbytes()


def make(
    targets: list[str],
    objective: float = 0.99,
    intervals: dict[str, float] | None = None,
    timeouts: dict[str, float] | None = None,
    **kw: object,
) -> SloState:
    slo = Slo(id="svc", targets=targets, objective=objective, **kw)
    intervals = intervals or dict.fromkeys(targets, 30.0)
    timeouts = timeouts or dict.fromkeys(targets, 10.0)
    return SloState(slo, intervals, timeouts)


def test_budget_and_burn_rate_example() -> None:
    s = make(["web"])
    for i in range(1000):
        s.record("web", BASE + 30 * i, ok=i % 200 != 0, duration=0.1)  # 5 bad
    now = BASE + 30 * 1000
    assert s.counts(now, 86400 * 30) == Counts(995, 1000)
    assert s.error_budget_remaining(now) == pytest.approx(0.5)
    assert s.burn_rate(now, 30 * 86400) == pytest.approx(0.5)
    assert s.sli(now, 30 * 86400) == pytest.approx(0.995)
    assert s.sli(now, 30 * 86400, part="web") == pytest.approx(0.995)


def test_budget_goes_negative_and_none_without_data() -> None:
    s = make(["web"])
    assert s.error_budget_remaining(BASE) is None
    assert s.burn_rate(BASE, 3600) is None
    assert s.sli(BASE, 3600) is None
    for i in range(1000):
        s.record("web", BASE + 30 * i, ok=i % 50 != 0, duration=0.1)  # 20 bad
    now = BASE + 30 * 1000
    assert s.error_budget_remaining(now) == pytest.approx(-1.0)
    assert s.burn_rate(now, 30 * 86400) == pytest.approx(2.0)


def test_burn_rate_uses_its_own_window() -> None:
    s = make(["web"])
    for i in range(120):  # one hour at 30 s, the last 10 minutes all failing
        s.record("web", BASE + 30 * i, ok=i < 100, duration=0.1)
    now = BASE + 30 * 119
    # 5 min window at 10 s resolution: buckets from align(now - 300) to align(now)
    assert s.counts(now, 300) == Counts(0, 11)
    assert s.burn_rate(now, 300) == pytest.approx(100.0)
    assert s.burn_rate(now, 3600) == pytest.approx((20 / 120) / 0.01)


def test_latency_sli() -> None:
    s = make(["api"], sli="latency", latency_threshold=0.5)
    s.record("api", BASE, ok=True, duration=0.2)  # good
    s.record("api", BASE + 1, ok=True, duration=0.5)  # at the threshold: good
    s.record("api", BASE + 2, ok=True, duration=0.7)  # too slow: bad
    s.record("api", BASE + 3, ok=False, duration=0.01)  # failed fast: valid and bad
    assert s.counts(BASE + 3, 60) == Counts(2, 4)


def test_no_data_is_neither_good_nor_bad() -> None:
    s = make(["web", "api"])
    s.record("web", BASE, ok=True, duration=0.1)
    before = s.nbytes()
    s.record_no_data("api", BASE)
    s.record_no_data("api", BASE + 30)
    assert s.counts(BASE + 30, 600, part="api") == Counts(0, 0)
    assert s.counts(BASE + 30, 600, part="web") == Counts(1, 1)
    assert s.no_data(BASE + 30, 600, part="api") == 2
    assert s.no_data(BASE + 30, 600, part="web") == 0
    assert s.no_data(BASE + 30, 600) == 2
    # the slice where api had no data is not valid: the combined SLI ignores it
    s.advance(BASE + 1000)
    assert s.counts(BASE + 1000, 3600) == Counts(0, 0)
    assert s.nbytes() == before + WINDOW_BYTES // 2  # no-data ring allocated lazily


def test_non_composite_reads_its_targets_events() -> None:
    s = make(["web"])
    assert not s.composite and s.parts == ("web",)
    assert s.slice_length == 0.0  # no slices: the part's window is the combined one
    assert s.nbytes() == 0  # a ring is allocated by its first event
    s.record("web", BASE, ok=False, duration=1)
    s.advance(BASE + 10**6)  # no-op
    assert s.counts(BASE, 60) == s.counts(BASE, 60, part="web") == Counts(0, 1)
    s.record("web", BASE + 10, ok=True, duration=1)
    assert (s.good_total, s.valid_total) == (1, 2)
    # failed, and succeeded within one latency cell: two rings, as a (good, valid) window
    assert s.nbytes() == WINDOW_BYTES
    s.record("web", BASE + 20, ok=True, duration=0.05)  # another cell: one more ring
    assert s.nbytes() == WINDOW_BYTES * 3 // 2
    c = make(["web", "api", "login"])
    assert c.composite and c.parts == ("web", "api", "login")
    assert c.nbytes() == WINDOW_BYTES  # the combined window of slices
    print(
        f"\nnbytes: single SLO {s.nbytes()} B, 3-part composite {c.nbytes()} B before its "
        f"first event, +{WINDOW_BYTES // 2} B per ring a part's events allocate"
    )


def test_unknown_part_and_missing_interval() -> None:
    s = make(["web"])
    with pytest.raises(KeyError):
        s.record("nope", BASE, ok=True, duration=0)
    with pytest.raises(KeyError):
        s.counts(BASE, 60, part="nope")
    with pytest.raises(ValueError):
        SloState(Slo(id="x", targets=["a", "b"], objective=0.9), {"a": 30}, {"a": 5, "b": 5})


def test_composite_slices_and_late_results() -> None:
    s = make(["web", "api"], intervals={"web": 10, "api": 30}, timeouts={"web": 5, "api": 20})
    assert s.slice_length == 30
    t0 = BASE  # slice [t0, t0 + 30)
    for i in range(3):
        s.record("web", t0 + 10 * i, ok=True, duration=0.1)
    s.record("api", t0 + 5, ok=True, duration=0.1)
    # slice 2: web bad once
    s.record("web", t0 + 30, ok=True, duration=0.1)
    s.record("web", t0 + 40, ok=False, duration=0.1)
    s.record("api", t0 + 35, ok=True, duration=0.1)
    assert s.counts(t0 + 45, 3600) == Counts(0, 0)  # nothing closed yet
    s.advance(t0 + 30 + 20 - 0.001)  # slice 1 closes at end + max timeout = t0 + 50
    assert s.counts(t0 + 50, 3600) == Counts(0, 0)
    s.advance(t0 + 50)
    assert s.counts(t0 + 50, 3600) == Counts(1, 1)
    # slice 3: api missing -> invalid
    s.record("web", t0 + 60, ok=True, duration=0.1)
    s.advance(t0 + 110)
    assert s.counts(t0 + 110, 3600) == Counts(1, 3 - 1)
    assert s.open_slices == 0
    # a result for a closed slice still counts for its part, not for the combined SLI
    s.record("api", t0 + 65, ok=True, duration=0.1)
    assert s.late == 1
    assert s.counts(t0 + 110, 3600) == Counts(1, 2)
    assert s.counts(t0 + 110, 3600, part="api") == Counts(3, 3)


def test_explicit_slice_and_bounded_open_slices() -> None:
    s = make(["a", "b"], intervals={"a": 10, "b": 10}, timeouts={"a": 5, "b": 5}, slice=60)
    assert s.slice_length == 60
    for i in range(10_000):  # nobody calls advance: record keeps the open slices bounded
        s.record("a" if i % 2 else "b", BASE + 5 * i, ok=True, duration=0.1)
        assert s.open_slices <= 2
    good, valid = s.counts(BASE + 5 * 10_000, 86400)
    # closed: the slices ending a timeout before the last scheduled time (BASE + 49995)
    assert good == valid == (49_995 - 5) // 60


# -- composite against a naive recomputation ------------------------------------

TIERS = (Tier(5.0, 300), Tier(60.0, 100))
PARTS = ("a", "b", "c")
INTERVALS = {"a": 10.0, "b": 20.0, "c": 25.0}
TIMEOUTS = {"a": 4.0, "b": 19.0, "c": 7.0}

event_st = st.tuples(
    st.sampled_from(PARTS),
    st.one_of(st.integers(0, 150).map(float), st.floats(0, 600, allow_nan=False)),
    st.booleans(),
    st.sampled_from([0.1, 0.5, 0.9]),
    st.floats(0, 1, allow_nan=False),  # fraction of the part timeout the result takes
)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(event_st, max_size=80),
    latency=st.booleans(),
    slice_len=st.sampled_from([None, 25.0, 40.0, 90.0]),
    length=st.floats(0, 1200, allow_nan=False),
    # time is only a number: slices before the epoch are slices like any other
    origin=st.sampled_from([0.0, -3000.0]),
)
def test_composite_matches_naive(
    events: list[tuple[str, float, bool, float, float]],
    latency: bool,
    slice_len: float | None,
    length: float,
    origin: float,
) -> None:
    kw: dict[str, object] = {"sli": "latency", "latency_threshold": 0.5} if latency else {}
    slo = Slo(id="svc", targets=list(PARTS), objective=0.999, slice=slice_len, **kw)
    state = SloState(slo, INTERVALS, TIMEOUTS, TIERS)
    L = slice_len or 25.0
    events = [(p, origin + t, ok, d, f) for p, t, ok, d, f in events]
    # results arrive within their timeout; feed them in arrival order, as the daemon would
    arrivals = sorted(events, key=lambda e: e[1] + e[4] * TIMEOUTS[e[0]])
    for part, t, ok, duration, frac in arrivals:
        state.advance(t + frac * TIMEOUTS[part])
        state.record(part, t, ok, duration)
    now = origin + 700.0
    state.advance(now + 1000)  # close everything
    assert state.late == 0 and state.open_slices == 0

    def good(ok: bool, duration: float) -> bool:
        return ok and (not latency or duration <= 0.5)

    # burn checks skip an SLO whose latest bad event is older than their window
    bad_times = [t for _, t, ok, d, _ in events if not good(ok, d)]
    assert state.last_bad == max(bad_times, default=-math.inf)

    r = 5.0  # length <= 1200 <= TIERS[0].retention; events span < 300 buckets: none dropped
    first, last = math.floor((now - length) / r), math.floor(now / r)

    def in_window(t: float) -> bool:
        return first <= math.floor(t / r) <= last

    slices: dict[int, dict[str, list[bool]]] = {}
    for part, t, ok, duration, _ in events:
        slices.setdefault(math.floor(t / L), {}).setdefault(part, []).append(good(ok, duration))
    want_good = want_valid = 0
    for k, by_part in slices.items():
        if len(by_part) == len(PARTS) and in_window(k * L):
            want_valid += 1
            want_good += all(all(v) for v in by_part.values())
    assert state.counts(now, length) == Counts(want_good, want_valid)
    # the exported counters: every closed complete slice, whatever the window
    complete = [by_part for by_part in slices.values() if len(by_part) == len(PARTS)]
    assert (state.good_total, state.valid_total) == (
        sum(all(all(v) for v in by_part.values()) for by_part in complete), len(complete))
    for p in PARTS:
        mine = [good(ok, d) for part, t, ok, d, _ in events if part == p and in_window(t)]
        assert state.counts(now, length, part=p) == Counts(sum(mine), len(mine))


def test_last_bad_is_the_latest_bad_scheduled_time() -> None:
    s = make(["web"])
    assert s.last_bad == -math.inf  # clean: burn checks may skip it
    s.record("web", BASE + 60, ok=False, duration=0.1)
    s.record("web", BASE + 30, ok=False, duration=0.1)  # an older bad one arriving late
    s.record("web", BASE + 90, ok=True, duration=0.1)
    assert s.last_bad == BASE + 60
    s.record("web", BASE + 60, ok=False, duration=0.1)
    assert s.last_bad == BASE + 60


def test_late_results_never_reopen_a_closed_slice() -> None:
    s = make(["a", "b"], intervals={"a": 10, "b": 10}, timeouts={"a": 5, "b": 5})
    s.record("a", BASE, ok=True, duration=0.1)
    s.record("b", BASE + 1, ok=True, duration=0.1)
    s.advance(BASE + 100)  # slices up to [BASE + 80, BASE + 90) are closed
    assert s.counts(BASE + 100, 600) == Counts(1, 1)
    # both parts of slice [BASE + 40, BASE + 50) report only now: too late for it
    s.record("a", BASE + 40, ok=True, duration=0.1)
    s.record("b", BASE + 41, ok=True, duration=0.1)
    assert s.late == 2 and s.open_slices == 0
    s.advance(BASE + 1000)
    assert s.counts(BASE + 1000, 1200) == Counts(1, 1)
    assert s.counts(BASE + 1000, 1200, part="a") == Counts(2, 2)


def test_closed_slices_stay_closed_when_time_steps_back() -> None:
    s = make(["a", "b"], intervals={"a": 10, "b": 10}, timeouts={"a": 20, "b": 20})
    s.advance(BASE + 100)  # closes the slices before BASE + 80
    s.record("a", BASE + 85, ok=True, duration=0.1)  # open slice; now seen as BASE + 85
    s.record("b", BASE + 75, ok=True, duration=0.1)  # its slice closed at BASE + 100
    assert s.late == 1 and s.open_slices == 1


def test_slice_length_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        make(["a", "b"], intervals={"a": 0.0, "b": 0.0})
    s = make(["a", "b"], intervals={"a": 0.5, "b": 0.25})  # sub-second slices are fine
    assert s.slice_length == 0.5


def _snap(*parts: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)


def test_restores_a_version_1_snapshot_built_from_the_documented_layout() -> None:
    """Header "SLS", "<BH" (version 1, part count), then per part its name, window and
    no-data counter as "<I"-length-prefixed blobs (an empty blob: no counter)."""
    window = RollingWindow()
    window.add(BASE, 1, 1)
    window.add(BASE + 30, 0, 1)
    blob = b"SLS" + struct.pack("<BH", 1, 1) + _snap(b"web", window.to_bytes(), b"")
    s = make(["web"])
    s.restore(blob)
    assert s.counts(BASE + 30, 600) == Counts(1, 2)
    assert s.no_data(BASE + 30, 600) == 0
    again = make(["web"])
    again.restore(s.to_bytes())  # written as version 2, with the part's events
    assert s.to_bytes()[3] == 2 and again.counts(BASE + 30, 600) == Counts(1, 2)


@pytest.mark.parametrize("n", [7, 8, 9, 17])
def test_snapshot_round_trip_with_many_parts(n: int) -> None:
    parts = [f"p{i}" for i in range(n)]
    intervals = dict.fromkeys(parts, 10.0)
    original = make(parts, intervals=intervals, timeouts=dict.fromkeys(parts, 30.0))
    for k in range(5):  # the last slices stay open (30 s timeout)
        for i, part in enumerate(parts):
            original.record(part, BASE + 10 * k + i % 10, ok=(i + k) % 4 != 0, duration=0.1)
    assert original.open_slices > 0
    copy = make(parts, intervals=intervals, timeouts=dict.fromkeys(parts, 30.0))
    copy.restore(original.to_bytes())
    assert copy.to_bytes() == original.to_bytes()
    for s in (original, copy):
        s.advance(BASE + 1000)
    assert copy.counts(BASE + 1000, 3600) == original.counts(BASE + 1000, 3600)
    assert original.counts(BASE + 1000, 3600).valid == 5


def test_snapshot_rejects_impossible_slice_masks() -> None:
    s = make(["web", "api"], intervals={"web": 10, "api": 10}, timeouts={"web": 30, "api": 30})
    s.record("web", BASE, ok=True, duration=0.1)
    blob = s.to_bytes()
    assert s.open_slices == 1 and blob[-2:] == bytes([0b01, 0b00])  # valid, bad of the slice
    for valid, bad in ((0b100, 0b000), (0b01, 0b10)):  # a third part; bad without valid
        with pytest.raises(ValueError, match="mask"):
            make(["web", "api"]).restore(blob[:-2] + bytes([valid, bad]))
    make(["web", "api"]).restore(blob[:-2] + bytes([0b11, 0b10]))  # a real one


def test_default_tiers_used() -> None:
    s = make(["web"])
    assert s._tiers == DEFAULT_TIERS


def test_is_good() -> None:
    avail = Slo(id="a", targets=["x"], objective=0.9)
    lat = Slo(id="l", targets=["x"], objective=0.9, sli="latency", latency_threshold=0.5)
    assert is_good(avail, True, 99.0) is True and is_good(avail, False, 0.0) is False
    assert is_good(lat, True, 0.5) is True and is_good(lat, True, 0.51) is False
    assert is_good(lat, False, 0.01) is False


def _busy_composite() -> SloState:
    s = make(["web", "api"], intervals={"web": 10, "api": 30}, timeouts={"web": 5, "api": 20})
    for i in range(40):
        s.record("web", BASE + 10 * i, ok=i % 7 != 0, duration=0.1)
        if i % 3 == 0:
            s.record("api", BASE + 10 * i, ok=True, duration=0.1)
    s.record_no_data("api", BASE + 20)
    s.record("api", BASE, ok=True, duration=0.1)  # late: slice already closed
    return s


def test_snapshot_round_trip() -> None:
    for original in (_busy_composite(), make(["web"])):
        if not original.composite:
            for i in range(50):
                original.record("web", BASE + 30 * i, ok=i % 4 != 0, duration=0.1)
            original.record_no_data("web", BASE + 10)
        blob = original.to_bytes()
        copy = SloState(original.slo, {"web": 10, "api": 30}, {"web": 5, "api": 20})
        copy.restore(blob)
        now = BASE + 500
        for part in (None, *original.parts):
            assert copy.counts(now, 3600, part) == original.counts(now, 3600, part)
            assert copy.no_data(now, 3600, part) == original.no_data(now, 3600, part)
        assert (copy.late, copy.open_slices, copy.nbytes()) == (
            original.late,
            original.open_slices,
            original.nbytes(),
        )
        for s in (original, copy):  # both carry on identically
            s.record(original.parts[0], BASE + 400, ok=False, duration=0.1)
            s.advance(BASE + 1000)
        assert copy.to_bytes() == original.to_bytes()
    print(f"\nsnapshot sizes: composite {len(_busy_composite().to_bytes())} B")


def test_snapshot_rejects_other_shapes_and_garbage() -> None:
    blob = _busy_composite().to_bytes()
    other = make(["web", "login"])
    before = other.to_bytes()
    for bad in (b"", b"SLS", blob[:-1], blob + b"\0", b"XYZ" + blob[3:], make(["web"]).to_bytes()):
        with pytest.raises(ValueError):
            other.restore(bad)
    with pytest.raises(ValueError):
        other.restore(blob)  # same size, other part names
    assert other.to_bytes() == before  # untouched on failure
