"""Deterministic target behaviour and exact ground truth (pure: no I/O, no clock).

A target's behaviour at unix time t is a pure function of (seed, scenario,
target index, t). Time is cut into blocks of ``BLOCK`` seconds (absolute:
block k is [k*BLOCK, (k+1)*BLOCK)); the outages of block k are drawn from
``random.Random(f"{seed}/{scenario}/{target}/{k}")`` alone, so any process
(the farm, the runner) rebuilds the same schedule for any time range.

Behaviours (``Kind``): ``up`` (200 "OK"), and the bad ones ``503``, ``hang``
(no answer until past the timeout), ``body`` (200 "maintenance"), ``slow`` (200
"OK" after a delay above the latency threshold, under the timeout), ``reset``
(TCP RST after the request) and ``refused`` (the target's own port is closed).
Every non-``up`` behaviour is bad for an availability SLI with status 2xx,
body contains "OK" and ``max_response_time`` = the slow threshold.

Scenarios (one per target, ``scenario_of``):

* ``mixed``: in each block, with p = 0.35, one outage of 5-50 s inside the block,
  any kind (targets with their own port may be ``refused``);
* ``flapping``: each block alternates up 3-15 s / down 3-15 s (any kind);
* ``straddle``: with p = 0.6, an outage across the block start (2-25 s either
  side), so it straddles an SLA period boundary when periods are ``BLOCK`` long;
* ``up``: never down.

Ground truth over [a, b) is exact: the schedule is piecewise constant, so the
good fraction is 1 - (measure of outage segments inside [a, b)) / (b - a).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BLOCK = 60  # seconds; also the SLA period length the runner uses
SCENARIOS = ("mixed", "flapping", "straddle", "up")
BAD_KINDS = ("503", "hang", "body", "slow", "reset")
OWN_PORT_EVERY = 10  # every 10th "mixed" target gets its own port (can be refused)


@dataclass(frozen=True, slots=True)
class Outage:
    start: float
    end: float
    kind: str


def scenario_of(i: int) -> str:
    """Scenarios interleave (i mod 4) so each port and each phase sees all of them."""
    return SCENARIOS[i % len(SCENARIOS)]


def has_own_port(i: int) -> bool:
    return scenario_of(i) == "mixed" and (i // len(SCENARIOS)) % OWN_PORT_EVERY == 0


def _block(seed: int, i: int, k: int) -> list[Outage]:
    scen = scenario_of(i)
    if scen == "up":
        return []
    rng = random.Random(f"{seed}/{scen}/{i}/{k}")
    base = k * BLOCK
    kinds = BAD_KINDS + ("refused",) * 3 if has_own_port(i) else BAD_KINDS
    out: list[Outage] = []
    if scen == "mixed":
        if rng.random() < 0.35:
            dur = rng.uniform(5, 50)
            start = base + rng.uniform(0, BLOCK - dur)
            out.append(Outage(start, start + dur, rng.choice(kinds)))
    elif scen == "flapping":
        pos = base + rng.uniform(0, 15)
        while pos < base + BLOCK:
            end = min(pos + rng.uniform(3, 15), base + BLOCK)
            out.append(Outage(pos, end, rng.choice(kinds)))
            pos = end + rng.uniform(3, 15)
    elif scen == "straddle" and rng.random() < 0.6:
        out.append(Outage(base - rng.uniform(2, 25), base + rng.uniform(2, 25), rng.choice(kinds)))
    return out


def outages(seed: int, i: int, t0: float, t1: float) -> list[Outage]:
    """Outages of target i that overlap [t0, t1), sorted by start, non-overlapping."""
    ks = range(math.floor(t0 / BLOCK) - 1, math.floor(t1 / BLOCK) + 2)
    segs = [o for k in ks for o in _block(seed, i, k) if o.end > t0 and o.start < t1]
    segs.sort(key=lambda o: o.start)
    return segs


class TargetSchedule:
    """Outages of one target over a time range, with O(log n) lookups."""

    def __init__(self, segs: Sequence[Outage]) -> None:
        self.segs = list(segs)
        self.starts = [o.start for o in self.segs]

    def kind_at(self, t: float) -> str:
        j = bisect.bisect_right(self.starts, t) - 1
        if j >= 0 and t < self.segs[j].end:
            return self.segs[j].kind
        return "up"

    def good_at(self, t: float) -> bool:
        return self.kind_at(t) == "up"

    def good_fraction(self, a: float, b: float) -> float:
        """Exact fraction of [a, b) during which the target was good."""
        bad = sum(max(0.0, min(o.end, b) - max(o.start, a)) for o in self.segs)
        return 1.0 - bad / (b - a)

    def sampled_fraction(self, instants: Iterable[float]) -> float | None:
        """Fraction of the given instants at which the target was good (None if none)."""
        ts = list(instants)
        if not ts:
            return None
        return sum(self.good_at(t) for t in ts) / len(ts)


def build(seed: int, n: int, t0: float, t1: float) -> list[TargetSchedule]:
    return [TargetSchedule(outages(seed, i, t0, t1)) for i in range(n)]
