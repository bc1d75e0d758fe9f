"""The result of a closed SLA period, as a pure function of its evidence leaves.

Anyone holding the leaves (plus the SLA's policy and the maintenance
intervals) can recompute the verdict with `compute_period_result`; nothing
else (probe logs, clocks, state) goes into it. Rules, also in docs/evidence.md:

- No-data policy, per leaf: "exclude" counts (good, valid); "bad" counts
  (good, valid + no_data); "good" counts (good + no_data, valid + no_data).
- Maintenance (only when the policy says "exclude"): a bucket
  [b, b + resolution) is excluded if *any* part of it overlaps a maintenance
  interval; its valid events go to `maintenance_excluded` and nothing else.
- Single target or aggregate: counts are summed over buckets and targets.
- Composite: counts are *buckets*. A bucket is valid iff every part has
  valid > 0 in it (after the no-data policy), good iff valid and every part has
  good == valid; a bucket with data for some but not all parts is no_data; a
  bucket in maintenance for any part is excluded. Per-part results come from
  each part's own leaves.
- sli_ppm = floor(good * 1e6 / valid): the provider is never rounded up.
  None (verdict "insufficient data", breached None) when valid == 0 or
  valid < min_valid_samples. breached = sli_ppm < objective_ppm, which equals
  the exact comparison good / valid < objective.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from slamon.config.sla import Sla
from slamon.sla.evidence import Leaf, hex0x, merkle_root
from slamon.sla.maintenance import Interval, merge, overlap_seconds
from slamon.sla.periods import period_index
from slamon.util.units import PPM


class PartResult(NamedTuple):
    good: int
    valid: int
    no_data: int
    sli_ppm: int | None
    maintenance_excluded: int = 0


@dataclass(frozen=True)
class PeriodResult:
    sla_id: str
    period_id: int
    start: int
    end: int
    good: int
    valid: int
    no_data: int
    #: valid events (composite: buckets) excluded because of maintenance
    maintenance_excluded: int
    #: seconds of the period covered by maintenance (shown even when counted)
    maintenance_seconds: int
    sli_ppm: int | None
    objective_ppm: int
    breached: bool | None
    evidence_root: bytes
    composite: bool = False
    parts: dict[str, PartResult] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.breached is None:
            return "insufficient data"
        return "breached" if self.breached else "met"

    def to_json(self) -> dict[str, Any]:
        return {
            "sla": self.sla_id,
            "period": self.period_id,
            "start": self.start,
            "end": self.end,
            "good": self.good,
            "valid": self.valid,
            "no_data": self.no_data,
            "maintenance_excluded": self.maintenance_excluded,
            "maintenance_seconds": self.maintenance_seconds,
            "sli_ppm": self.sli_ppm,
            "objective_ppm": self.objective_ppm,
            "breached": self.breached,
            "verdict": self.verdict,
            "composite": self.composite,
            "evidence_root": hex0x(self.evidence_root),
            "parts": {t: p._asdict() for t, p in sorted(self.parts.items())},
        }


def sli_ppm(good: int, valid: int, min_valid: int = 0) -> int | None:
    """floor(good * 1e6 / valid), or None without enough valid events."""
    if valid <= 0 or valid < min_valid:
        return None
    return good * PPM // valid


def apply_no_data(leaf: Leaf, policy: str) -> tuple[int, int]:
    """(good, valid) of a leaf after the no-data policy."""
    if policy == "exclude":
        return leaf.good, leaf.valid
    if policy == "bad":
        return leaf.good, leaf.valid + leaf.no_data
    return leaf.good + leaf.no_data, leaf.valid + leaf.no_data


class _Maint:
    """Fast 'does [b, b + res) overlap maintenance' over merged intervals."""

    def __init__(self, ivs: Sequence[Interval]) -> None:
        self.ivs = merge(ivs)
        self.starts = [a for a, _ in self.ivs]

    def overlaps(self, b: int, res: int) -> bool:
        i = bisect_left(self.starts, b + res)  # intervals starting before the bucket end
        return i > 0 and self.ivs[i - 1][1] > b


def compute_period_result(
    sla: Sla,
    period_bounds: tuple[int, int],
    leaves_by_target: Mapping[str, Sequence[Leaf]],
    maintenance_intervals: Sequence[Interval] | Mapping[str, Sequence[Interval]],
    composite: bool,
    *,
    slo_objective: float | None = None,
) -> PeriodResult:
    """Result of one closed period from its leaves (one key per part, even if empty).

    `maintenance_intervals` is either one list for all parts or a mapping per
    target (slamon.maintenance.intervals_by_target); a target missing from the
    mapping has no maintenance.
    """
    start, end = period_bounds
    res = sla.resolution_s
    exclude = sla.exclude_maintenance
    policy = sla.policy.no_data
    all_leaves: list[Leaf] = []
    for target, leaves in leaves_by_target.items():
        for leaf in leaves:
            if leaf.target != target:
                raise ValueError(f"leaf for {leaf.target!r} filed under {target!r}")
            if not start <= leaf.bucket_start < end or leaf.bucket_start % res:
                raise ValueError(
                    f"leaf {leaf.target!r}@{leaf.bucket_start} is outside the period "
                    f"[{start}, {end}) or not aligned to {res}s"
                )
            all_leaves.append(leaf)
    seen = {(x.target, x.bucket_start) for x in all_leaves}
    if len(seen) != len(all_leaves):
        raise ValueError("duplicate (target, bucket_start) leaves")

    if isinstance(maintenance_intervals, Mapping):
        # most parts have no window: they share one empty lookup
        none = _Maint(())
        maint = {t: _Maint(ivs) if (ivs := maintenance_intervals.get(t)) else none
                 for t in leaves_by_target}
        union = [iv for ivs in maintenance_intervals.values() for iv in ivs]
    else:
        shared = _Maint(maintenance_intervals)
        maint = {t: shared for t in leaves_by_target}
        union = list(maintenance_intervals)

    def excluded(target: str, b: int) -> bool:
        return exclude and maint[target].overlaps(b, res)

    parts: dict[str, PartResult] = {}
    for target, leaves in leaves_by_target.items():
        g = v = nd = mx = 0
        for leaf in leaves:
            pg, pv = apply_no_data(leaf, policy)
            if excluded(target, leaf.bucket_start):
                mx += pv
            else:
                g, v, nd = g + pg, v + pv, nd + leaf.no_data
        parts[target] = PartResult(g, v, nd, sli_ppm(g, v), mx)

    if composite:
        by_bucket: dict[int, dict[str, tuple[int, int]]] = {}
        for target, leaves in leaves_by_target.items():
            for leaf in leaves:
                by_bucket.setdefault(leaf.bucket_start, {})[target] = apply_no_data(leaf, policy)
        good = valid = no_data = mx = 0
        for b, counts in by_bucket.items():
            full = len(counts) == len(leaves_by_target) and all(pv > 0 for _, pv in counts.values())
            if any(excluded(t, b) for t in leaves_by_target):
                mx += int(full)
            elif full:
                valid += 1
                good += int(all(pg == pv for pg, pv in counts.values()))
            else:
                no_data += 1
    else:
        good = sum(p.good for p in parts.values())
        valid = sum(p.valid for p in parts.values())
        no_data = sum(p.no_data for p in parts.values())
        mx = sum(p.maintenance_excluded for p in parts.values())

    objective = sla.objective_ppm(slo_objective)
    sli = sli_ppm(good, valid, sla.min_valid_samples)
    return PeriodResult(
        sla_id=sla.id,
        period_id=period_index(sla.period, start),
        start=start,
        end=end,
        good=good,
        valid=valid,
        no_data=no_data,
        maintenance_excluded=mx,
        maintenance_seconds=int(overlap_seconds(union, start, end)),
        sli_ppm=sli,
        objective_ppm=objective,
        breached=None if sli is None else sli < objective,
        evidence_root=merkle_root(all_leaves),
        composite=composite,
        parts=parts,
    )
