"""Report builder: a report built from a real period result settles on the contract (py-evm)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_utils.crypto import keccak
from structlog.testing import capture_logs
from web3.logs import DISCARD

from slamon.chain import sla_compensation
from slamon.config.oracle import KeyConfig
from slamon.config.sla import Sla
from slamon.config.slo import Slo
from slamon.oracle.builder import ReportBuildError, build_report, period_base_for
from slamon.oracle.keys import Signer, load_signer
from slamon.sla.evidence import Leaf
from slamon.sla.periods import period_bounds
from slamon.sla.policy import policy_digest_for
from slamon.sla.result import PeriodResult, compute_period_result
from slamon.store.sqlite import ClosedPeriod

from .chain_helpers import SLAHarness, pyevm_harness

LENGTH = 1000
KEY = "0x" + keccak(text="slamon-builder-test-signer").hex()


@pytest.fixture(scope="module")
def h() -> Iterator[SLAHarness]:
    yield pyevm_harness(sla_compensation())


@pytest.fixture(scope="module")
def signer() -> Signer:
    with capture_logs():  # the dev-key warning is expected here, not under test
        return load_signer(KeyConfig(dev_key_env="K"), environ={"K": KEY})


def sla_and_slo(sla_id: str = "gold", **kw: Any) -> tuple[Sla, Slo]:
    slo = Slo(id="api-slo", targets=["api"], objective=0.999)
    sla = Sla(
        id=sla_id,
        slo="api-slo",
        period={"kind": "fixed", "length": LENGTH},
        min_valid_samples=10,
        **kw,
    )
    return sla, slo


def result_for(sla: Sla, slo: Slo, n: int, good: int, valid: int, no_data: int = 0) -> PeriodResult:
    """Period n: one probe per 20 s bucket, the first ``valid - good`` failed, ``no_data``
    missed probes in the first buckets."""
    start, end = period_bounds(sla.period, n)
    res = sla.resolution_s
    leaves = [
        Leaf(
            "api",
            start + i * res,
            int(valid - good <= i < valid),
            int(i < valid),
            int(i < no_data),
        )
        for i in range(max(valid, no_data))
    ]
    return compute_period_result(
        sla, (start, end), {"api": leaves}, [], False, slo_objective=slo.objective
    )


def closed_of(result: PeriodResult, digest: bytes) -> ClosedPeriod:
    return ClosedPeriod(
        sla=result.sla_id,
        period=result.period_id,
        start=result.start,
        end=result.end,
        closed_at=float(result.end + 300),
        result=result.to_json(),
        root=result.evidence_root,
        policy_digest=digest,
    )


def register(h: SLAHarness, sla: Sla, slo: Slo, signer: Signer) -> int:
    start = (h.now() // LENGTH + 2) * LENGTH
    params = h.sla_params(
        sla.onchain_id_bytes,
        start,
        [signer.address],
        objectivePpm=sla.objective_ppm(slo.objective),
        periodLength=LENGTH,
        minSamples=sla.min_valid_samples,
        policyDigest=policy_digest_for(sla, slo),
        firstPeriodId=period_base_for(sla, start),
    )
    h.send(h.contract.functions.registerSLA(params), sender=1)
    sla_id = h.sla_id(sla.onchain_id_bytes)
    h.send(h.contract.functions.fund(sla_id, 10**18), sender=1, value=10**18)
    return start


def settle(h: SLAHarness, signer: Signer, report: Any) -> Any:
    h.travel(report.period_end + 10)
    # the contract's id of the SLA is derived from the provider (account 1) and the name
    report = report.replace(sla_id=h.sla_id(report.sla_id))
    signed = signer.sign_report(report, h.chain_id, h.contract.address)
    fn = h.contract.functions.submitReports([report.as_tuple()], [signed.signature])
    receipt = h.send(fn, sender=1)
    (ev,) = h.contract.events.PeriodSettled().process_receipt(receipt, errors=DISCARD)
    return ev.args


def test_reports_from_real_results_settle(h: SLAHarness, signer: Signer) -> None:
    sla, slo = sla_and_slo()
    digest = policy_digest_for(sla, slo)
    start = register(h, sla, slo, signer)
    base = period_base_for(sla, start)
    assert period_bounds(sla.period, base) == (start, start + LENGTH)

    # the contract's first period, named by slamon's id: 48 of 50 good -> 960 000 ppm, breached
    breached = result_for(sla, slo, base, good=48, valid=50, no_data=3)
    assert (breached.sli_ppm, breached.breached, breached.no_data) == (960_000, True, 3)
    report = build_report(sla, slo, breached, period_base=base, policy_digest=digest,
                          issued_at=0)
    assert report is not None
    assert (report.period_id, report.period_start, report.period_end) == (
        base, start, start + LENGTH)
    assert (report.sli_ppm, report.slo_ppm, report.breached) == (960_000, 999_000, True)
    assert (report.good, report.valid, report.no_data) == (48, 50, 3)
    assert report.issued_at == report.period_end  # raised to the period end
    assert report.evidence_root == breached.evidence_root and report.policy_digest == digest
    # the stored form of the same period gives the same report
    assert build_report(sla, slo, closed_of(breached, digest), period_base=base,
                        policy_digest=digest, issued_at=0) == report
    ev = settle(h, signer, report)
    # one period id everywhere: the on-chain event names the period as slamon does
    assert ev.periodId == base == breached.period_id and ev.sliPpm == 960_000 and ev.breached
    assert ev.evidenceRoot == breached.evidence_root
    assert ev.compensation == (999_000 - 960_000) * 10**12

    # the next period, from a ClosedPeriod: all good -> met
    met = result_for(sla, slo, base + 1, good=50, valid=50)
    report = build_report(sla, slo, closed_of(met, digest), period_base=base,
                          policy_digest=digest, issued_at=start + 2 * LENGTH + 7)
    assert report is not None and report.period_id == base + 1
    assert report.issued_at == start + 2007
    ev = settle(h, signer, report)
    assert ev.periodId == base + 1 and ev.sliPpm == 1_000_000 and ev.breached is False


def test_insufficient_data_is_not_reportable() -> None:
    sla, slo = sla_and_slo()
    digest = policy_digest_for(sla, slo)
    few = result_for(sla, slo, 5, good=9, valid=9)  # min_valid_samples is 10
    assert few.sli_ppm is None and few.verdict == "insufficient data"
    assert build_report(sla, slo, few, period_base=0, policy_digest=digest, issued_at=0) is None
    assert build_report(sla, slo, closed_of(few, digest), period_base=0, policy_digest=digest,
                        issued_at=0) is None
    empty = result_for(sla, slo, 5, good=0, valid=0, no_data=4)
    assert build_report(sla, slo, empty, period_base=0, policy_digest=digest, issued_at=0) is None


def test_refusals() -> None:
    sla, slo = sla_and_slo()
    digest = policy_digest_for(sla, slo)
    result = result_for(sla, slo, 5, good=10, valid=10)
    with pytest.raises(ReportBuildError, match="before the contract's first period 6"):
        build_report(sla, slo, result, period_base=6, policy_digest=digest, issued_at=0)
    other = keccak(text="another policy")
    with pytest.raises(ReportBuildError, match="policy digest"):
        build_report(sla, slo, closed_of(result, other), period_base=0, policy_digest=digest,
                     issued_at=0)
    with pytest.raises(ReportBuildError, match="not 'silver'"):
        build_report(sla_and_slo("silver")[0], slo, result, period_base=0, policy_digest=digest,
                     issued_at=0)
    with pytest.raises(ReportBuildError, match="not a period boundary"):
        period_base_for(sla, 5 * LENGTH + 1)
    assert period_base_for(sla, 5 * LENGTH) == 5
    broken = closed_of(result, digest)
    broken.result = {**broken.result, "good": 11}
    with pytest.raises(ReportBuildError, match="inconsistent counts"):
        build_report(sla, slo, broken, period_base=0, policy_digest=digest, issued_at=0)
    del broken.result["valid"]
    with pytest.raises(ReportBuildError, match="malformed"):
        build_report(sla, slo, broken, period_base=0, policy_digest=digest, issued_at=0)


def test_sla_objective_overrides_slo_and_calendar_base() -> None:
    sla, slo = sla_and_slo(objective=0.95, onchain_id="0x" + "11" * 32)
    digest = policy_digest_for(sla, slo)
    result = result_for(sla, slo, 7, good=48, valid=50)  # 960 000 >= 950 000: met
    report = build_report(sla, slo, result, period_base=7, policy_digest=digest, issued_at=1)
    assert report is not None
    assert (report.slo_ppm, report.breached, report.sla_id) == (950_000, False, b"\x11" * 32)
    monthly = Sla(id="m", slo="api-slo", period={"kind": "monthly"})
    assert period_base_for(monthly, 1704067200) == (2024 - 1970) * 12  # 2024-01-01T00:00Z
