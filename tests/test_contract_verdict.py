"""The settled SLI is decided by all the reports received, not by who relays which.

Real bytecode on py-evm: n = 4 signers (f = 1, quorum 3), or 5 signers with quorum 3
for the issue's five-report example.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slamon.chain.artefacts import sla_compensation
from tests.chain_helpers import SLAHarness, pyevm_harness
from tests.test_contract import SIGNER_KEYS, SLA, events

FIVE_KEYS = [*SIGNER_KEYS, keccak(text="slamon-test-signer-4")]
FIVE = [Account.from_key(k).address for k in FIVE_KEYS]
FIVE_SLIS = [990_000, 998_000, 999_100, 999_500, 999_900]
_names = itertools.count()
#: one chain per module; every example registers a fresh SLA on it
_FIXTURE = [HealthCheck.function_scoped_fixture]


@pytest.fixture(scope="module")
def h() -> Iterator[SLAHarness]:
    yield pyevm_harness(sla_compensation())


def _sla(h: SLAHarness, signers: list[str], quorum: int) -> SLA:
    name = keccak(text=f"verdict-{next(_names)}")
    start = h.now() + 20
    h.send(h.contract.functions.registerSLA(
        h.sla_params(name, start, signers, quorum=quorum)), sender=1)
    sla_id = h.sla_id(name)
    h.send(h.contract.functions.fund(sla_id, 10**18), sender=1, value=10**18)
    return SLA(h, sla_id, start, signers)


def _settle_in_batches(h: SLAHarness, sla: SLA, keys: list[bytes], slis: list[int],
                       order: list[int], cuts: list[int]) -> Any:
    """Submit the reports in `order`, split at `cuts`; settle after the deadline if needed."""
    sla.end_period(0)
    reps = {i: sla.report(sli=slis[i], idx=i) for i in order}
    settled = []
    bounds = [0, *sorted(set(cuts)), len(order)]
    for a, b in itertools.pairwise(bounds):
        if a == b:
            continue
        chunk = order[a:b]
        rc = sla.submit([reps[i] for i in chunk], [sla.sign(reps[i], keys[i]) for i in chunk])
        settled += events(h, rc, "PeriodSettled")
    if not settled:
        h.travel(sla.bounds(0)[1] + 500)
        rc = h.send(h.contract.functions.settle(sla.sla_id, 0))
        settled = events(h, rc, "PeriodSettled")
    (ev,) = settled
    return ev.args


@settings(max_examples=15, deadline=None, suppress_health_check=_FIXTURE)
@given(order=st.permutations(range(5)), cuts=st.lists(st.integers(0, 5), max_size=3))
def test_five_reports_settle_the_same_whatever_order_and_batching(
    h: SLAHarness, order: list[int], cuts: list[int]
) -> None:
    # n = 5 (f = 1, quorum 3): every arrival order and batching gives the median of all five
    sla = _sla(h, FIVE, 3)
    ev = _settle_in_batches(h, sla, FIVE_KEYS, FIVE_SLIS, list(order), cuts)
    assert ev.sliPpm == 999_100 and ev.breached is False and ev.reportCount == 5


def test_a_batch_of_chosen_lows_decides_nothing(h: SLAHarness) -> None:
    sla = _sla(h, FIVE, 3)
    sla.end_period(0)
    lows = [0, 1, 2]
    reps = [sla.report(sli=FIVE_SLIS[i], idx=i) for i in lows]
    rc = sla.submit(reps, [sla.sign(r, FIVE_KEYS[i]) for i, r in zip(lows, reps, strict=True)])
    assert events(h, rc, "PeriodSettled") == []  # a quorum of lows settles nothing
    highs = [3, 4]
    reps = [sla.report(sli=FIVE_SLIS[i], idx=i) for i in highs]
    rc = sla.submit(reps, [sla.sign(r, FIVE_KEYS[i]) for i, r in zip(highs, reps, strict=True)])
    (ev,) = events(h, rc, "PeriodSettled")
    assert ev.args.sliPpm == 999_100 and not ev.args.breached


@settings(max_examples=20, deadline=None, suppress_health_check=_FIXTURE)
@given(
    honest=st.lists(st.integers(0, 1_000_000), min_size=3, max_size=3),
    liar=st.integers(0, 1_000_000),
    liar_idx=st.integers(0, 3),
    liar_reports=st.booleans(),
    missing_honest=st.booleans(),
)
def test_one_liar_of_four_stays_within_the_honest_range(
    h: SLAHarness, honest: list[int], liar: int, liar_idx: int, liar_reports: bool,
    missing_honest: bool,
) -> None:
    # n = 4, f = 1: whatever the liar reports (or withholds), the SLI is between honest values
    sla = _sla(h, FIVE[:4], 3)
    slis = list(honest)
    slis.insert(liar_idx, liar)
    present = [i for i in range(4) if i != liar_idx or liar_reports]
    honest_present = [i for i in present if i != liar_idx]
    if missing_honest and liar_reports:
        present.remove(honest_present[-1])  # one honest daemon down: still a quorum of 3
        honest_present = honest_present[:-1]
    ev = _settle_in_batches(h, sla, FIVE_KEYS, slis, present, [])
    lo = min(slis[i] for i in honest_present)
    hi = max(slis[i] for i in honest_present)
    assert lo <= ev.sliPpm <= hi
