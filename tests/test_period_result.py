"""Closed-period results: policy, rounding, maintenance straddling, composites, digest."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from slamon.config.sla import Sla
from slamon.config.slo import Slo
from slamon.sla.evidence import Leaf, hex0x, leaves_from_samples, merkle_root
from slamon.sla.periods import period_bounds, period_index
from slamon.sla.policy import canonical_json, policy_digest, policy_digest_for, policy_document
from slamon.sla.result import PartResult, PeriodResult, compute_period_result, sli_ppm


def make_sla(**kw: Any) -> Sla:
    data: dict[str, Any] = {
        "id": "gold",
        "slo": "web",
        "period": {"kind": "fixed", "length": "1h"},
        "objective": 0.999,
    }
    data.update(kw)
    return Sla.model_validate(data)


P = (3600, 7200)  # period 1 of a fixed hourly SLA


def test_simple_and_floor_rounding() -> None:
    sla = make_sla(objective=0.6)
    leaves = {"api": [Leaf("api", 3600, 1, 2, 0), Leaf("api", 3660, 1, 1, 5)]}
    r = compute_period_result(sla, P, leaves, [], composite=False)
    assert (r.good, r.valid, r.no_data) == (2, 3, 5)
    assert r.sli_ppm == 666_666  # floor, never rounded up
    assert r.period_id == 1 and r.verdict == "met" and r.breached is False
    assert r.evidence_root == merkle_root(leaves["api"])
    assert r.parts["api"] == (2, 3, 5, 666_666, 0)
    assert r.to_json()["evidence_root"] == hex0x(r.evidence_root)


@pytest.mark.parametrize(("good", "breached"), [(999, False), (998, True), (1000, False)])
def test_breach_is_exact_comparison(good: int, breached: bool) -> None:
    sla = make_sla(objective=0.999)
    r = compute_period_result(sla, P, {"api": [Leaf("api", 3600, good, 1000, 0)]}, [], False)
    assert r.objective_ppm == 999_000 and r.breached is breached


def test_insufficient_data() -> None:
    sla = make_sla(min_valid_samples=10)
    r = compute_period_result(sla, P, {"api": [Leaf("api", 3600, 9, 9, 0)]}, [], False)
    assert r.sli_ppm is None and r.breached is None and r.verdict == "insufficient data"
    r = compute_period_result(make_sla(), P, {"api": []}, [], False)
    assert r.valid == 0 and r.breached is None and r.evidence_root == b"\x00" * 32


@pytest.mark.parametrize(
    ("policy", "expected"), [("exclude", (5, 6)), ("bad", (5, 10)), ("good", (9, 10))]
)
def test_no_data_policy(policy: str, expected: tuple[int, int]) -> None:
    sla = make_sla(policy={"no_data": policy})
    r = compute_period_result(sla, P, {"api": [Leaf("api", 3600, 5, 6, 4)]}, [], False)
    assert (r.good, r.valid) == expected and r.no_data == 4


def test_maintenance_straddling_buckets() -> None:
    sla = make_sla(policy={"maintenance": "exclude"})
    leaves = {"api": [Leaf("api", 3600 + 60 * i, 0, 2, 0) for i in range(5)]}
    # overlaps bucket 1 by one second and bucket 2 fully; ends exactly where bucket 3 starts
    maint = [(3600 + 119.0, 3600 + 180.0)]
    r = compute_period_result(sla, P, leaves, maint, False)
    assert (r.valid, r.maintenance_excluded, r.maintenance_seconds) == (6, 4, 61)
    counted = compute_period_result(make_sla(), P, leaves, maint, False)
    assert (counted.valid, counted.maintenance_excluded, counted.maintenance_seconds) == (10, 0, 61)


def test_maintenance_per_target_mapping() -> None:
    sla = make_sla(policy={"maintenance": "exclude"})
    leaves = {"api": [Leaf("api", 3600, 1, 1, 0)], "web": [Leaf("web", 3600, 0, 1, 0)]}
    r = compute_period_result(sla, P, leaves, {"web": [(3600.0, 3660.0)]}, False)
    assert (r.good, r.valid, r.maintenance_excluded) == (1, 1, 1)
    assert r.parts["web"].maintenance_excluded == 1 and r.parts["api"].valid == 1


def test_composite_buckets() -> None:
    sla = make_sla(objective=0.5)
    leaves = {
        "web": [Leaf("web", 3600, 2, 2, 0), Leaf("web", 3660, 2, 2, 0), Leaf("web", 3720, 1, 2, 0)],
        "api": [Leaf("api", 3600, 2, 2, 0), Leaf("api", 3660, 1, 2, 0), Leaf("api", 3720, 2, 2, 0)],
        "login": [Leaf("login", 3600, 1, 1, 0), Leaf("login", 3660, 1, 1, 0)],
    }
    r = compute_period_result(sla, P, leaves, [], composite=True)
    # bucket 3600: all good; 3660: api bad; 3720: login missing -> no data
    assert (r.good, r.valid, r.no_data) == (1, 2, 1)
    assert r.sli_ppm == 500_000 and r.breached is False
    assert r.parts["api"] == (5, 6, 0, 833_333, 0)
    assert r.parts["login"].sli_ppm == 1_000_000
    m = compute_period_result(
        make_sla(policy={"maintenance": "exclude"}), P, leaves, {"login": [(3600.0, 3601.0)]}, True
    )
    assert (m.good, m.valid, m.no_data, m.maintenance_excluded) == (0, 1, 1, 1)


def test_sli_ppm_edges() -> None:
    assert sli_ppm(1, 1) == 1_000_000  # one valid event is enough without a minimum
    assert sli_ppm(0, 1) == 0
    assert sli_ppm(2, 3) == 666_666
    assert sli_ppm(0, 0) is None
    assert sli_ppm(5, 10, min_valid=10) == 500_000  # exactly the minimum counts
    assert sli_ppm(9, 9, min_valid=10) is None
    sla = make_sla(min_valid_samples=10)
    r = compute_period_result(sla, P, {"api": [Leaf("api", 3600, 10, 10, 0)]}, [], False)
    assert r.sli_ppm == 1_000_000 and r.breached is False


def test_composite_bucket_where_a_part_only_had_no_data() -> None:
    # with no_data "exclude" a part whose probes could not run has no valid event in
    # the bucket: the bucket is no data, not a good bucket
    leaves = {
        "web": [Leaf("web", 3600, 2, 2, 0), Leaf("web", 3660, 2, 2, 0)],
        "api": [Leaf("api", 3600, 0, 0, 3), Leaf("api", 3660, 1, 1, 0)],
    }
    r = compute_period_result(make_sla(objective=0.5), P, leaves, [], composite=True)
    assert (r.good, r.valid, r.no_data) == (1, 1, 1)
    # under "good" the missing probes count as good ones: the bucket is valid and good
    g = compute_period_result(
        make_sla(objective=0.5, policy={"no_data": "good"}), P, leaves, [], composite=True
    )
    assert (g.good, g.valid, g.no_data) == (2, 2, 0)


def test_rejects_foreign_leaves() -> None:
    sla = make_sla()
    with pytest.raises(ValueError, match="outside"):
        compute_period_result(sla, P, {"api": [Leaf("api", 7200, 1, 1, 0)]}, [], False)
    with pytest.raises(ValueError, match="aligned"):
        compute_period_result(sla, P, {"api": [Leaf("api", 3630, 1, 1, 0)]}, [], False)
    with pytest.raises(ValueError, match="filed under"):
        compute_period_result(sla, P, {"api": [Leaf("web", 3600, 1, 1, 0)]}, [], False)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(10, 120),  # probe interval (s)
    st.integers(0, 3600),  # probe phase
    st.integers(-3 * 3600, 3 * 3600),  # outage start relative to the boundary
    st.integers(1, 4 * 3600),  # outage length
    st.sampled_from([60, 300, 900]),
)
def test_boundary_straddling_outage_is_split(
    interval: int, phase: int, rel: int, length: int, res: int
) -> None:
    sla = make_sla(period={"kind": "daily", "timezone": "Europe/Berlin"}, evidence_resolution=res)
    spec = sla.period
    boundary = period_bounds(spec, period_index(spec, 1_711_850_000))[1]  # DST day's end
    t0 = boundary - 4 * 3600 + phase
    down = (boundary + rel, boundary + rel + length)
    samples = [
        (float(t), "bad" if down[0] <= t < down[1] else "good")
        for t in range(t0, boundary + 4 * 3600, interval)
    ]
    by_period: dict[int, list[tuple[float, Any]]] = {}
    for s in samples:
        by_period.setdefault(period_index(spec, s[0]), []).append(s)
    total_bad = sum(1 for _, o in samples if o == "bad")
    got_bad = got_valid = 0
    for n, ss in by_period.items():
        bounds = period_bounds(spec, n)
        leaves = {"api": leaves_from_samples("api", ss, res)}
        r = compute_period_result(sla, bounds, leaves, [], False)
        assert r.valid == len(ss)
        in_outage = sum(1 for t, _ in ss if down[0] <= t < down[1])
        assert r.valid - r.good == in_outage  # each period gets its own share
        got_bad += r.valid - r.good
        got_valid += r.valid
    assert got_bad == total_bad and got_valid == len(samples)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 59), st.integers(0, 5), st.integers(0, 5), st.integers(0, 3)),
        unique_by=lambda x: x[0],
        max_size=40,
    ),
    st.lists(st.tuples(st.integers(0, 3600 * 1000), st.integers(1, 600 * 1000)), max_size=4),
    st.sampled_from(["exclude", "bad", "good"]),
)
def test_maintenance_exclusion_arithmetic(
    raw: list[tuple[int, int, int, int]], maint_ms: list[tuple[int, int]], no_data: str
) -> None:
    sla = make_sla(policy={"maintenance": "exclude", "no_data": no_data})
    leaves = [Leaf("api", 3600 + 60 * b, g, g + bad, nd) for b, g, bad, nd in raw]
    maint = [(3600 + a / 1000, 3600 + (a + d) / 1000) for a, d in maint_ms]
    r = compute_period_result(sla, P, {"api": leaves}, maint, False)
    plain = compute_period_result(
        make_sla(policy={"no_data": no_data}), P, {"api": leaves}, [], False
    )
    assert r.valid + r.maintenance_excluded == plain.valid
    # naive: a bucket is excluded iff any instant of it lies in maintenance
    kept = [
        x
        for x in leaves
        if not any(a < x.bucket_start + 60 and b > x.bucket_start for a, b in maint)
    ]
    expect = compute_period_result(
        make_sla(policy={"no_data": no_data}), P, {"api": kept}, [], False
    )
    assert (r.good, r.valid) == (expect.good, expect.valid)
    assert r.evidence_root == plain.evidence_root  # exclusion never changes the evidence


def test_sla_validation() -> None:
    # keccak256(utf8("gold"))
    assert make_sla().onchain_id_bytes.hex() == (
        "a827b848d338b362a9edc3f5d9143a504828207dd0d1d6515b2b3968154d59b0"
    )
    explicit = make_sla(onchain_id="0x" + "AB" * 32)
    assert explicit.onchain_id_bytes == bytes([0xAB]) * 32
    errors = [
        ({"objective": 0.9999999}, "6 decimals"),
        ({"onchain_id": "0x1234"}, "bytes32"),
        ({"evidence_resolution": "7s", "period": {"kind": "fixed", "length": "1h"}}, "divide"),
        (
            {"evidence_resolution": "1h", "period": {"kind": "daily", "timezone": "Asia/Kolkata"}},
            "divide",
        ),
        (
            {"evidence_resolution": 60, "period": {"kind": "fixed", "length": "1h", "anchor": 30}},
            "anchor",
        ),
        ({"policy": {"version": 2}}, "version"),
        ({"policy": {"no_data": "maybe"}}, "no_data"),
    ]
    for kw, message in errors:
        with pytest.raises(ValidationError, match=message):
            make_sla(**kw)
    assert make_sla(evidence_resolution="1h", period={"kind": "monthly"}).resolution_s == 3600
    with pytest.raises(ValueError, match="no objective"):
        make_sla(objective=None).objective_ppm()
    assert make_sla(objective=None).objective_ppm(0.995) == 995_000


def test_policy_digest() -> None:
    sla = make_sla(
        period={"kind": "monthly", "timezone": "Europe/Berlin"}, evidence_resolution=60
    )
    doc = policy_document(sla, targets=["web", "api"], composite=True)
    assert canonical_json(doc).startswith(b'{"accounting":{"maintenance":"count"')
    assert doc["targets"] == ["api", "web"] and doc["period"] == {
        "kind": "monthly",
        "timezone": "Europe/Berlin",
    }
    base = policy_digest(sla, targets=["web", "api"], composite=True)
    # cross-checked with a hand-written canonicaliser + keccak256 in node (docs/evidence.md)
    assert base.hex() == "690c166c67d4cb48fe944cc08207ef5f4a36c116a0266049a407b16647cd1577"
    # operational settings do not move the digest; verdict-relevant ones do
    assert (
        policy_digest(
            sla.model_copy(update={"grace": 60.0}), targets=["api", "web"], composite=True
        )
        == base
    )
    for changed in [
        make_sla(period={"kind": "monthly", "timezone": "UTC"}),
        make_sla(
            period={"kind": "monthly", "timezone": "Europe/Berlin"}, policy={"no_data": "bad"}
        ),
        make_sla(period={"kind": "monthly", "timezone": "Europe/Berlin"}, objective=0.99),
        make_sla(period={"kind": "monthly", "timezone": "Europe/Berlin"}, min_valid_samples=5),
    ]:
        assert policy_digest(changed, targets=["web", "api"], composite=True) != base
    assert policy_digest(sla, targets=["web", "api"], composite=False) != base
    slo = Slo(id="web", targets=["web", "api"], objective=0.99)
    assert policy_digest_for(
        make_sla(objective=None, period=sla.period.model_dump(exclude_unset=True)), slo
    ) == (
        policy_digest(
            make_sla(objective=0.99, period={"kind": "monthly", "timezone": "Europe/Berlin"}),
            targets=["api", "web"],
            composite=True,
        )
    )


def test_hand_built_result_and_its_json() -> None:
    """A result built field by field (as a store or a tool would) is single-part unless
    told, and a part without a maintenance count excluded nothing."""
    part = PartResult(good=7, valid=8, no_data=1, sli_ppm=875_000)
    # sla, period, start, end, good, valid, no_data, maintenance excluded and seconds,
    # sli, objective, breached, evidence root; composite not given
    r = PeriodResult("gold", 1, 3600, 7200, 7, 8, 1, 0, 30, 875_000, 999_000, True, b"\x01" * 32,
                     parts={"web": part, "api": part._replace(maintenance_excluded=2)})
    assert r.to_json() == {
        "sla": "gold",
        "period": 1,
        "start": 3600,
        "end": 7200,
        "good": 7,
        "valid": 8,
        "no_data": 1,
        "maintenance_excluded": 0,
        "maintenance_seconds": 30,
        "sli_ppm": 875_000,
        "objective_ppm": 999_000,
        "breached": True,
        "verdict": "breached",
        "composite": False,
        "evidence_root": "0x" + "01" * 32,
        "parts": {  # sorted by target
            "api": {"good": 7, "valid": 8, "no_data": 1, "sli_ppm": 875_000,
                    "maintenance_excluded": 2},
            "web": {"good": 7, "valid": 8, "no_data": 1, "sli_ppm": 875_000,
                    "maintenance_excluded": 0},
        },
    }
    assert list(r.to_json()["parts"]) == ["api", "web"]
