"""SLACompensation behaviour: py-evm in process (EthereumTesterProvider) and one anvil run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils.crypto import keccak
from web3.logs import DISCARD

from slamon.chain import (
    InvalidSignature,
    Report,
    SignedReport,
    domain_separator,
    erc20_test_token,
    recover_signer,
    report_digest,
    sign_report,
    sla_compensation,
)
from slamon.chain.eip712 import SECP256K1_N

from .chain_helpers import (
    POLICY,
    AnvilNode,
    SLAHarness,
    anvil_harness,
    compile_sources,
    deploy,
    error_selector,
    pyevm_harness,
)

SIGNER_KEYS = [keccak(text=f"slamon-test-signer-{i}") for i in range(4)]
SIGNERS = [Account.from_key(k).address for k in SIGNER_KEYS]
OUTSIDER_KEY = keccak(text="not-a-signer")
LENGTH = 1000
OBJECTIVE = 999_000
_counter = iter(range(10**6))


@pytest.fixture(scope="module")
def h() -> Iterator[SLAHarness]:
    yield pyevm_harness(sla_compensation())


@dataclass
class SLA:
    h: SLAHarness
    sla_id: bytes
    start: int
    signers: list[str]

    def bounds(self, pid: int) -> tuple[int, int]:
        s = self.start + pid * LENGTH
        return s, s + LENGTH

    def report(self, pid: int = 0, sli: int = 990_000, idx: int = 0, **kw: Any) -> Report:
        s, e = self.bounds(pid)
        fields: dict[str, Any] = {
            "sla_id": self.sla_id,
            "period_id": pid,
            "period_start": s,
            "period_end": e,
            "sli_ppm": sli,
            "slo_ppm": OBJECTIVE,
            "good": sli // 100,
            "valid": 10_000,
            "no_data": 3,
            "breached": sli < OBJECTIVE,
            "evidence_root": keccak(text=f"root-{pid}-{idx}"),
            "policy_digest": POLICY,
            "issued_at": e + 5,
        }
        fields.update(kw)
        return Report(**fields)

    def sign(self, report: Report, key: bytes | str = SIGNER_KEYS[0], **kw: Any) -> bytes:
        chain_id = kw.get("chain_id", self.h.chain_id)
        contract = kw.get("contract", self.h.contract.address)
        return sign_report(report, key, chain_id, contract)

    def submit_fn(self, reports: list[Report], sigs: list[bytes]) -> Any:
        return self.h.contract.functions.submitReports([r.as_tuple() for r in reports], sigs)

    def submit(self, reports: list[Report], sigs: list[bytes]) -> Any:
        return self.h.send(self.submit_fn(reports, sigs), sender=1)

    def end_period(self, pid: int) -> None:
        self.h.travel(self.bounds(pid)[1] + 10)

    def period(self, pid: int) -> Any:
        return self.h.contract.functions.getPeriod(self.sla_id, pid).call()


def new_sla(
    h: SLAHarness, *, fund: int = 10**18, signers: list[str] | None = None, **kw: Any
) -> SLA:
    name = keccak(text=f"sla-{next(_counter)}")
    sla_id = h.sla_id(name)
    start = h.now() + 20
    # quorum 1 is a single-oracle SLA off the dev chain; otherwise n = 4, f = 1 by default
    signers = signers or (SIGNERS[:1] if kw.get("quorum", 1) == 1 else SIGNERS[:4])
    h.send(h.contract.functions.registerSLA(h.sla_params(name, start, signers, **kw)), sender=1)
    asset = kw.get("asset")
    if fund and asset is None:
        h.send(h.contract.functions.fund(sla_id, fund), sender=1, value=fund)
    return SLA(h, sla_id, start, signers)


def events(h: SLAHarness, receipt: Any, name: str) -> list[Any]:
    return list(getattr(h.contract.events, name)().process_receipt(receipt, errors=DISCARD))


# ---------------------------------------------------------------------------------------------
# EIP-712 (pure Python) against the contract
# ---------------------------------------------------------------------------------------------


def test_digest_matches_contract(h: SLAHarness) -> None:
    sla = new_sla(h, fund=0)
    r = sla.report()
    c = h.contract.functions
    assert c.domainSeparator().call() == domain_separator(h.chain_id, h.contract.address)
    assert c.reportDigest(r.as_tuple()).call() == report_digest(r, h.chain_id, h.contract.address)
    _fields, name, version, chain_id, verifying, _, _ = c.eip712Domain().call()
    assert (name, version, chain_id, verifying) == ("slamon", "1", h.chain_id, h.contract.address)


def test_sign_recover_and_json_roundtrip(h: SLAHarness) -> None:
    sla = new_sla(h, fund=0)
    r = sla.report()
    signed = SignedReport.sign(r, SIGNER_KEYS[0], h.chain_id, h.contract.address)
    assert len(signed.signature) == 65 and signed.signature[64] in (27, 28)
    assert recover_signer(r, signed.signature, h.chain_id, h.contract.address) == SIGNERS[0]
    again = SignedReport.from_json(signed.to_json())
    assert again == signed
    # high-s twin is refused by Python too
    with pytest.raises(InvalidSignature):
        recover_signer(r, high_s_twin(signed.signature), h.chain_id, h.contract.address)
    tampered = signed.to_json_dict()
    tampered["report"]["sliPpm"] = 1
    with pytest.raises(InvalidSignature):
        SignedReport.from_json_dict(tampered)


def high_s_twin(sig: bytes) -> bytes:
    s = int.from_bytes(sig[32:64], "big")
    v = 28 if sig[64] == 27 else 27
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([v])


# ---------------------------------------------------------------------------------------------
# Settlement and payouts
# ---------------------------------------------------------------------------------------------


def test_breached_period_eth_payout(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=1)
    sla.end_period(0)
    r = sla.report(sli=990_000)
    receipt = sla.submit([r], [sla.sign(r)])
    (ev,) = events(h, receipt, "PeriodSettled")
    comp = (OBJECTIVE - 990_000) * 10**12
    assert ev.args.breached and ev.args.sliPpm == 990_000 and ev.args.compensation == comp
    assert ev.args.evidenceRoot == r.evidence_root
    p = sla.period(0)
    assert p[3] is True and p[4] is True and p[5] == 990_000 and p[8] == r.evidence_root
    c = h.contract.functions
    assert c.hasReported(sla.sla_id, 0, SIGNERS[0]).call()
    assert not c.hasReported(sla.sla_id, 0, SIGNERS[1]).call()
    assert not c.needsReport(sla.sla_id, 0, SIGNERS[1]).call()  # settled: nothing to send
    b3, b4 = h.addr(3), h.addr(4)
    assert c.claimable(sla.sla_id, b3).call() == comp // 4
    assert c.claimable(sla.sla_id, b4).call() == comp * 3 // 4
    before = h.w3.eth.get_balance(b4)
    rc = h.send(c.claim(sla.sla_id), sender=4)
    fee = rc["gasUsed"] * rc["effectiveGasPrice"]
    assert h.w3.eth.get_balance(b4) == before + comp * 3 // 4 - fee
    h.expect_revert("NothingToClaim", c.claim(sla.sla_id), sender=4)
    h.send(c.claim(sla.sla_id), sender=3)
    assert c.getSLA(sla.sla_id).call()[17] == 10**18 - comp  # pool


def test_breached_period_erc20_payout(h: SLAHarness) -> None:
    token = deploy(h.w3, erc20_test_token(), h.keys[0], "Test", "TST")
    h.send(token.functions.mint(h.addr(1), 10**21))
    sla = new_sla(h, asset=token.address, fund=0, tiers=[(998_000, 10**17), (990_000, 5 * 10**17)])
    h.send(token.functions.approve(h.contract.address, 10**21), sender=1)
    c = h.contract.functions
    h.expect_revert("BadValue", c.fund(sla.sla_id, 10**18), sender=1, value=1)
    h.send(c.fund(sla.sla_id, 10**18), sender=1)
    sla.end_period(0)
    r = sla.report(sli=985_000)  # below both tiers: deepest tier pays 5e17
    receipt = sla.submit([r], [sla.sign(r)])
    assert events(h, receipt, "PeriodSettled")[0].args.compensation == 5 * 10**17
    h.send(c.claim(sla.sla_id), sender=3)
    h.send(c.claim(sla.sla_id), sender=4)
    assert token.functions.balanceOf(h.addr(3)).call() == 5 * 10**17 // 4
    assert token.functions.balanceOf(h.addr(4)).call() == 5 * 10**17 * 3 // 4


def test_met_period_rewards_team(h: SLAHarness) -> None:
    sla = new_sla(h)
    sla.end_period(0)
    r = sla.report(sli=OBJECTIVE)  # exactly the objective: met (breach iff SLI < objective)
    receipt = sla.submit([r], [sla.sign(r)])
    (ev,) = events(h, receipt, "PeriodSettled")
    assert not ev.args.breached and ev.args.compensation == 0
    assert events(h, receipt, "TeamRewarded")[0].args.amount == 10**15
    c = h.contract.functions
    assert c.claimable(sla.sla_id, h.addr(3)).call() == 0
    h.expect_revert("NotTeam", c.claimTeam(sla.sla_id), sender=3)
    rc = h.send(c.claimTeam(sla.sla_id), sender=2)
    assert events(h, rc, "TeamClaimed")[0].args.amount == 10**15
    assert c.getSLA(sla.sla_id).call()[18] == 0  # team owed zeroed: paid once
    h.expect_revert("NothingToClaim", c.claimTeam(sla.sla_id), sender=2)


def test_rounding_remainder_stays_in_the_pool(h: SLAHarness) -> None:
    # weights 1e18 : 3e18 are stored as 1 : 3; a compensation of 9001 wei is credited as 9000
    # (2250 + 6750) and the odd wei stays in the pool
    sla = new_sla(h, weights=[10**18, 3 * 10**18], ratePerPpm=1, fund=10**6)
    c = h.contract.functions
    assert c.beneficiary(sla.sla_id, h.addr(4)).call()[0] == 3
    sla.end_period(0)
    r = sla.report(sli=OBJECTIVE - 9001)
    rc = sla.submit([r], [sla.sign(r)])
    assert events(h, rc, "PeriodSettled")[0].args.compensation == 9000
    assert c.claimable(sla.sla_id, h.addr(3)).call() == 2250
    assert c.claimable(sla.sla_id, h.addr(4)).call() == 6750
    assert c.getSLA(sla.sla_id).call()[17] == 10**6 - 9000


def test_compensation_capped_by_pool(h: SLAHarness) -> None:
    sla = new_sla(h, fund=10**15)
    sla.end_period(0)
    r = sla.report(sli=0, good=0)
    receipt = sla.submit([r], [sla.sign(r)])
    assert events(h, receipt, "PeriodSettled")[0].args.compensation == 10**15


def test_reports_accumulate_then_settle_over_all_after_deadline(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=3)  # n = 4, f = 1
    sla.end_period(0)
    c = h.contract.functions
    r0 = sla.report(sli=999_900, idx=0)
    assert c.needsReport(sla.sla_id, 0, SIGNERS[0]).call()
    rc = sla.submit([r0], [sla.sign(r0, SIGNER_KEYS[0])])
    assert events(h, rc, "PeriodSettled") == []
    assert c.hasReported(sla.sla_id, 0, SIGNERS[0]).call()
    assert not c.needsReport(sla.sla_id, 0, SIGNERS[0]).call()
    assert sla.period(0)[3] is False and sla.period(0)[7] == 1
    # the same report again: distinct error the daemon recognises
    h.expect_revert("AlreadyReported", sla.submit_fn([r0], [sla.sign(r0, SIGNER_KEYS[0])]))
    reps = [sla.report(sli=s, idx=i) for i, s in [(1, 990_000), (2, 995_000)]]
    rc = sla.submit(reps, [sla.sign(r, SIGNER_KEYS[i]) for i, r in zip((1, 2), reps, strict=True)])
    # a quorum is not enough while the fourth signer may still report
    assert events(h, rc, "PeriodSettled") == []
    h.expect_revert("ReportWindowOpen", c.settle(sla.sla_id, 0))
    h.send(c.fund(sla.sla_id, 5 * 10**18), sender=1, value=5 * 10**18)
    # period 0 unsettled and period 1 running: two caps (1e18 each) of the 6e18 stay
    assert c.withdrawable(sla.sla_id).call() == 4 * 10**18
    h.travel(sla.bounds(0)[1] + 501)
    # window closed, quorum reached, not settled yet: its cap still stays
    assert c.withdrawable(sla.sla_id).call() == 4 * 10**18
    h.expect_revert("InsufficientWithdrawable",
                    c.withdraw(sla.sla_id, 4 * 10**18 + 1, h.addr(1)), sender=1)
    rc = h.send(c.settle(sla.sla_id, 0))
    (ev,) = events(h, rc, "PeriodSettled")
    # lower median of {990000, 995000, 999900}
    assert ev.args.sliPpm == 995_000 and ev.args.breached and ev.args.reportCount == 3
    assert ev.args.evidenceRoot == reps[1].evidence_root
    assert sla.period(0)[6] == 0b111
    comp = (OBJECTIVE - 995_000) * 10**12
    # settled: its cap is released, what it paid has left the pool
    assert c.withdrawable(sla.sla_id).call() == 6 * 10**18 - comp - 10**18
    h.expect_revert("AlreadySettled", c.settle(sla.sla_id, 0))
    # late fourth report: harmless
    r3 = sla.report(sli=999_999, idx=3)
    rc = sla.submit([r3], [sla.sign(r3, SIGNER_KEYS[3])])
    assert events(h, rc, "LateReportsIgnored")[0].args.count == 1
    assert sla.period(0)[5] == 995_000


def test_all_n_reports_settle_at_once_with_median_root(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=3)
    sla.end_period(0)
    slis = [999_500, 980_000, 995_000, 999_999]
    reps = [sla.report(sli=s, idx=i) for i, s in enumerate(slis)]
    sigs = [sla.sign(r, SIGNER_KEYS[i]) for i, r in enumerate(reps)]
    rc = sla.submit(reps[:1], sigs[:1])
    assert events(h, rc, "PeriodSettled") == []
    rc = sla.submit(reps[1:], sigs[1:])
    (ev,) = events(h, rc, "PeriodSettled")
    # lower median of 4: second smallest
    assert ev.args.sliPpm == 995_000 and ev.args.evidenceRoot == reps[2].evidence_root
    assert len(events(h, rc, "ReportAccepted")) == 3 and ev.args.reportCount == 4
    roots = h.contract.functions.reportRoot
    assert roots(sla.sla_id, 0, SIGNERS[2]).call() == reps[2].evidence_root


def test_no_quorum_cannot_settle(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=3)
    sla.end_period(0)
    reps = [sla.report(sli=990_000, idx=i) for i in range(2)]
    sla.submit(reps, [sla.sign(r, SIGNER_KEYS[i]) for i, r in enumerate(reps)])
    h.travel(sla.bounds(0)[1] + 501)
    data = h.expect_revert("NoQuorum", h.contract.functions.settle(sla.sla_id, 0))
    assert int.from_bytes(data[36:68], "big") == 2


# ---------------------------------------------------------------------------------------------
# Adversarial reports
# ---------------------------------------------------------------------------------------------


def test_rejects_bad_signatures(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=3)
    sla.end_period(0)
    r = sla.report()
    good = sla.sign(r)
    fn = sla.submit_fn
    # tampered field: the signature recovers some other address
    h.expect_revert("NotSigner", fn([r.replace(sli_ppm=980_000)], [good]))
    h.expect_revert("NotSigner", fn([r], [sla.sign(r, chain_id=h.chain_id + 1)]))
    other = "0x" + "12" * 20
    h.expect_revert("NotSigner", fn([r], [sla.sign(r, contract=other)]))
    h.expect_revert("NotSigner", fn([r], [sla.sign(r, OUTSIDER_KEY)]))
    h.expect_revert("HighS", fn([r], [high_s_twin(good)]))
    h.expect_revert("BadSignature", fn([r], [good[:64] + b"\x01"]))
    h.expect_revert("BadSignature", fn([r], [good[:64]]))
    h.expect_revert("DuplicateSigner", fn([r, r], [good, good]))
    h.expect_revert("LengthMismatch", fn([r, r], [good]))
    h.expect_revert("EmptyBatch", fn([], []))
    assert sla.period(0)[7] == 0  # nothing was recorded


def test_rejects_bad_reports(h: SLAHarness) -> None:
    sla = new_sla(h)
    fn = sla.submit_fn
    r = sla.report()
    # period not finished
    h.expect_revert("PeriodNotFinished", fn([r], [sla.sign(r)]))
    sla.end_period(0)
    for bad, error in [
        (r.replace(policy_digest=b"\x01" * 32), "PolicyMismatch"),
        (r.replace(valid=9, good=9), "TooFewSamples"),
        (r.replace(period_start=r.period_start + 1), "PeriodMismatch"),
        (r.replace(slo_ppm=990_000, breached=False), "ObjectiveMismatch"),
        (r.replace(breached=False), "InconsistentReport"),
        (r.replace(good=r.valid + 1), "InconsistentReport"),
        (r.replace(issued_at=r.period_end - 1), "InconsistentReport"),
        (sla.report(pid=5), "PeriodNotFinished"),
        (sla.report(pid=12), "UnknownPeriod"),
    ]:
        h.expect_revert(error, fn([bad], [sla.sign(bad)]))
    other = sla.report(pid=0, sla_id=keccak(text="other"))
    h.expect_revert("MixedBatch", fn([r, other], [sla.sign(r), sla.sign(other)]))
    h.expect_revert("UnknownSLA", fn([other], [sla.sign(other)]))
    # past the settlement window without a quorum: the period is stalled, and the report
    # opens a late window (n = 1: it settles at once)
    h.travel(sla.bounds(0)[1] + 501 + 5)
    rc = sla.submit([r], [sla.sign(r)])
    assert events(h, rc, "LateWindowOpened")[0].args.periodId == 0
    assert events(h, rc, "PeriodSettled")[0].args.periodId == 0


def test_replay_after_settlement_is_harmless(h: SLAHarness) -> None:
    sla = new_sla(h)
    sla.end_period(0)
    r = sla.report()
    sig = sla.sign(r)
    sla.submit([r], [sig])
    c = h.contract.functions
    before = (sla.period(0), c.claimable(sla.sla_id, h.addr(3)).call())
    rc = sla.submit([r], [sig])
    assert events(h, rc, "LateReportsIgnored")[0].args.count == 1
    assert events(h, rc, "PeriodSettled") == []
    assert (sla.period(0), c.claimable(sla.sla_id, h.addr(3)).call()) == before


def test_reentrant_claimer_is_paid_once(h: SLAHarness) -> None:
    arts = compile_sources("contracts/test/ReentrantClaimer.sol")
    attacker = deploy(h.w3, arts["ReentrantClaimer"], h.keys[0], h.contract.address)
    name = keccak(text=f"sla-reentrant-{next(_counter)}")
    sla_id = h.sla_id(name)
    start = h.now() + 20
    params = h.sla_params(name, start, SIGNERS[:1], beneficiaries=[attacker.address], weights=[1])
    h.send(h.contract.functions.registerSLA(params), sender=1)
    h.send(h.contract.functions.fund(sla_id, 10**18), sender=1, value=10**18)
    sla = SLA(h, sla_id, start, SIGNERS[:1])
    sla.end_period(0)
    r = sla.report(sli=990_000)
    sla.submit([r], [sla.sign(r)])
    comp = (OBJECTIVE - 990_000) * 10**12
    h.send(attacker.functions.attack(sla_id))
    assert attacker.functions.attempted().call() is True
    assert attacker.functions.reentryOk().call() is False
    # stopped by the guard itself, not by the claim having been recorded already
    guard = error_selector(h.contract.abi, "ReentrancyGuardReentrantCall")
    assert bytes(attacker.functions.reentryError().call())[:4] == guard
    assert h.w3.eth.get_balance(attacker.address) == comp
    assert h.contract.functions.claimable(sla_id, attacker.address).call() == 0


def test_provider_withdrawal_limited_to_unowed(h: SLAHarness) -> None:
    sla = new_sla(h, periodCount=2, fund=3 * 10**18, ratePerPpm=2 * 10**12)
    c = h.contract.functions
    cap = 10**18
    assert c.withdrawable(sla.sla_id).call() == 3 * 10**18 - cap
    h.expect_revert("NotProvider", c.withdraw(sla.sla_id, 1, h.addr(0)), sender=0)
    h.expect_revert(
        "InsufficientWithdrawable", c.withdraw(sla.sla_id, 2 * 10**18 + 1, h.addr(1)), sender=1
    )
    rc = h.send(c.withdraw(sla.sla_id, 10**18, h.addr(1)), sender=1)
    assert events(h, rc, "PoolWithdrawn")[0].args.amount == 10**18
    sla.end_period(0)
    # period 0 finished and awaiting settlement, period 1 running: two caps stay
    assert c.withdrawable(sla.sla_id).call() == 0
    h.expect_revert("InsufficientWithdrawable", c.withdraw(sla.sla_id, 1, h.addr(1)), sender=1)
    r = sla.report(sli=0, good=0)
    sla.submit([r], [sla.sign(r)])  # breach takes the cap (1e18)
    assert c.withdrawable(sla.sla_id).call() == 0  # remaining 1e18 is the reserve for period 1
    sla.end_period(1)
    assert c.withdrawable(sla.sla_id).call() == 0  # period 1 finished, not settled
    r = sla.report(pid=1, sli=OBJECTIVE)
    sla.submit([r], [sla.sign(r)])  # met: the team's reward (1e15) leaves the pool
    assert c.withdrawable(sla.sla_id).call() == 10**18 - 10**15
    h.send(c.withdraw(sla.sla_id, 10**18 - 10**15, h.addr(1)), sender=1)
    # what the beneficiaries are owed is untouched
    h.send(c.claim(sla.sla_id), sender=4)
    h.send(c.claim(sla.sla_id), sender=3)
    assert h.w3.eth.get_balance(h.contract.address) >= 0


def test_explicit_boundaries(h: SLAHarness) -> None:
    now = h.now()
    bounds = [now + 20, now + 20 + 2678400, now + 20 + 2678400 + 2419200]  # 31 d, 28 d
    name = keccak(text=f"sla-cal-{next(_counter)}")
    sla_id = h.sla_id(name)
    params = h.sla_params(
        name,
        0,
        SIGNERS[:1],
        boundaries=bounds,
        periodLength=0,
        periodCount=0,
        settlementWindow=86400,
    )
    h.send(h.contract.functions.registerSLA(params), sender=1)
    c = h.contract.functions
    assert c.periodBounds(sla_id, 1).call() == [bounds[1], bounds[2]]
    h.travel(bounds[2] + 10)
    r = Report(
        sla_id,
        1,
        bounds[1],
        bounds[2],
        999_900,
        OBJECTIVE,
        9999,
        10_000,
        0,
        False,
        b"\x02" * 32,
        POLICY,
        bounds[2] + 1,
    )
    rc = h.send(
        c.submitReports(
            [r.as_tuple()], [sign_report(r, SIGNER_KEYS[0], h.chain_id, h.contract.address)]
        ),
        sender=1,
    )
    assert events(h, rc, "PeriodSettled")[0].args.periodId == 1
    # both periods over; period 0 was never reported: stalled, not handed back to the provider
    h.send(c.fund(sla_id, 5), sender=1, value=5)
    assert c.withdrawable(sla_id).call() == 0
    assert c.getPeriod(sla_id, 0).call()[-1] is True  # stalled


# ---------------------------------------------------------------------------------------------
# Evidence (OpenZeppelin StandardMerkleTree rules, built here independently)
# ---------------------------------------------------------------------------------------------

LEAF_TYPES = ["bytes32", "uint64", "uint32", "uint32", "uint32"]


def oz_leaf(values: tuple[Any, ...]) -> bytes:
    return bytes(keccak(keccak(abi_encode(LEAF_TYPES, list(values)))))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return bytes(keccak(a + b if a < b else b + a))


def oz_tree(leaves: list[bytes]) -> list[bytes]:
    ordered = sorted(leaves)
    n = len(ordered)
    tree = [b""] * (2 * n - 1)
    for i, leaf in enumerate(ordered):
        tree[len(tree) - 1 - i] = leaf
    for i in range(len(tree) - 1 - n, -1, -1):
        tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
    return tree


def oz_proof(tree: list[bytes], leaf: bytes) -> list[bytes]:
    i = tree.index(leaf)
    proof = []
    while i > 0:
        proof.append(tree[i + 1 if i % 2 == 1 else i - 1])
        i = (i - 1) // 2
    return proof


def test_evidence_proofs(h: SLAHarness) -> None:
    target = keccak(text="web")
    values = [(target, 1_700_000_000 + 60 * i, 58 + i % 3, 60, i % 2) for i in range(5)]
    leaves = [oz_leaf(v) for v in values]
    tree = oz_tree(leaves)
    root = tree[0]
    sla = new_sla(h)
    c = h.contract.functions
    assert c.evidenceLeaf(*values[0]).call() == leaves[0]
    assert not c.verifyEvidence(sla.sla_id, 0, *values[0], oz_proof(tree, leaves[0])).call()
    sla.end_period(0)
    r = sla.report(evidence_root=root)
    sla.submit([r], [sla.sign(r)])
    for v, leaf in zip(values, leaves, strict=True):
        assert c.verifyEvidence(sla.sla_id, 0, *v, oz_proof(tree, leaf)).call()
    bad = (target, 1_700_000_000, 60, 60, 0)
    assert not c.verifyEvidence(sla.sla_id, 0, *bad, oz_proof(tree, leaves[0])).call()
    # the leaf is hashed from its fields: an empty proof fails, even for a one-leaf "tree"
    assert not c.verifyEvidence(sla.sla_id, 0, *values[0], []).call()
    # an internal node cannot be presented: the fields would have to hash to it
    assert not c.verifyEvidence(sla.sla_id, 0, *values[0], oz_proof(tree, tree[1])).call()
    # a one-bucket tree (root == leaf): still no empty proof on-chain
    one = new_sla(h)
    one.end_period(0)
    r = one.report(evidence_root=leaves[0])
    one.submit([r], [one.sign(r)])
    assert one.period(0)[8] == leaves[0]
    assert not c.verifyEvidence(one.sla_id, 0, *values[0], []).call()


# ---------------------------------------------------------------------------------------------
# Registration validation
# ---------------------------------------------------------------------------------------------


def test_registration_validation(h: SLAHarness) -> None:
    name = keccak(text="dup")
    start = h.now() + 20
    c = h.contract.functions
    h.send(c.registerSLA(h.sla_params(name, start, SIGNERS[:1])), sender=1)
    h.expect_revert("SLAExists", c.registerSLA(h.sla_params(name, start, SIGNERS[:1])), sender=1)
    other = keccak(text="other-sla")
    for kw in [
        {"quorum": 2},
        {"signers": SIGNERS[:3], "quorum": 3},  # n = 3 < 3f + 1 with f = 1
        {"signers": SIGNERS[:4], "quorum": 4},  # even quorum
        {"signers": SIGNERS[:4], "quorum": 1, "singleOracle": False},  # f = 0 off the dev chain
        {"signers": SIGNERS[:4], "quorum": 1, "singleOracle": True},  # single means one signer
        {"settlementWindow": 1000},  # as long as a period: windows would overlap
        {"signers": [SIGNERS[0], SIGNERS[0]]},
        {"objectivePpm": 1_000_001},
        {"settlementWindow": 1001},
        {"maxPayoutPerPeriod": 0},
        {"tiers": [(999_500, 1)]},
        {"weights": [1]},
    ]:
        signers = kw.pop("signers", SIGNERS[:1])
        params = h.sla_params(other, start, signers, **kw)
        h.expect_revert("InvalidParams", c.registerSLA(params))
    # the accepted Byzantine shape: n = 4, f = 1, quorum 3; single-oracle is visible
    rc = h.send(c.registerSLA(h.sla_params(other, start, SIGNERS[:4], quorum=3)), sender=1)
    (ev,) = events(h, rc, "SLARegistered")
    assert ev.args.quorum == 3 and ev.args.singleOracle is False
    assert c.getSLA(h.sla_id(name)).call()[19] is True  # registered single-oracle


def test_ids_cannot_be_squatted(h: SLAHarness) -> None:
    """Whoever registers a name first only takes it under its own address."""
    name = keccak(text=f"squat-{next(_counter)}")
    start = h.now() + 20
    c = h.contract.functions
    # account 5 registers the provider's name first, with itself as beneficiary
    h.send(c.registerSLA(h.sla_params(name, start, SIGNERS[:4], quorum=3,
                                      beneficiaries=[h.addr(5)], weights=[1])), sender=5)
    # the real provider still gets its own SLA under the name
    rc = h.send(c.registerSLA(h.sla_params(name, start, SIGNERS[:4], quorum=3)), sender=1)
    (ev,) = events(h, rc, "SLARegistered")
    assert ev.args.slaId == h.sla_id(name, provider=1) != h.sla_id(name, provider=5)
    assert c.getSLA(h.sla_id(name)).call()[0] == h.addr(1)
    assert c.getSLA(h.sla_id(name, provider=5)).call()[0] == h.addr(5)


# ---------------------------------------------------------------------------------------------
# Real node
# ---------------------------------------------------------------------------------------------


def test_anvil_deploy_settle_claim() -> None:
    with AnvilNode.start() as node:
        ah = anvil_harness(node, sla_compensation())
        assert ah.chain_id == 31337
        sla = new_sla(ah, quorum=3)
        sla.end_period(0)
        slis = [990_000, 995_000, 980_000, 999_999]
        reps = [sla.report(sli=s, idx=i) for i, s in enumerate(slis)]
        sla.submit([reps[0]], [sla.sign(reps[0], SIGNER_KEYS[0])])
        # anvil reverts with a decodable custom error too
        ah.expect_revert(
            "AlreadyReported", sla.submit_fn([reps[0]], [sla.sign(reps[0], SIGNER_KEYS[0])])
        )
        rc = sla.submit(reps[1:], [sla.sign(r, SIGNER_KEYS[i + 1]) for i, r in enumerate(reps[1:])])
        (ev,) = events(ah, rc, "PeriodSettled")
        assert ev.args.sliPpm == 990_000
        comp = (OBJECTIVE - 990_000) * 10**12
        before = ah.w3.eth.get_balance(ah.addr(4))
        rc = ah.send(ah.contract.functions.claim(sla.sla_id), sender=4)
        fee = rc["gasUsed"] * rc["effectiveGasPrice"]
        assert ah.w3.eth.get_balance(ah.addr(4)) == before + comp * 3 // 4 - fee


def _mined_reverts(h: SLAHarness, fn: Any) -> None:
    """A transaction mined at the block time set by travel (a call would run at another time)
    reverts; which check fired is shown by the state the test reads afterwards."""
    with pytest.raises(RuntimeError, match="reverted"):
        h.send(fn, sender=1)


def test_exact_boundary_seconds_for_reports(h: SLAHarness) -> None:
    """Reports are accepted iff end <= t < end + window, at those exact seconds."""
    sla = new_sla(h, quorum=3)
    end = sla.bounds(0)[1]
    deadline = end + 500
    reps = [sla.report(sli=990_000 + i, idx=i) for i in range(4)]
    sigs = [sla.sign(r, SIGNER_KEYS[i]) for i, r in enumerate(reps)]
    h.travel(end - 1)
    _mined_reverts(h, sla.submit_fn(reps[:1], sigs[:1]))
    assert not h.contract.functions.hasReported(sla.sla_id, 0, SIGNERS[0]).call()
    h.travel(end)
    sla.submit(reps[:1], sigs[:1])
    h.travel(deadline - 1)
    rc = sla.submit(reps[1:3], sigs[1:3])  # the last second of the window
    assert h.w3.eth.get_block(rc["blockNumber"])["timestamp"] == deadline - 1
    h.travel(deadline)
    _mined_reverts(h, sla.submit_fn(reps[3:], sigs[3:]))
    assert not h.contract.functions.hasReported(sla.sla_id, 0, SIGNERS[3]).call()
    rc = h.send(h.contract.functions.settle(sla.sla_id, 0))
    (ev,) = events(h, rc, "PeriodSettled")
    assert ev.args.reportCount == 3 and ev.args.sliPpm == 990_001


def test_exact_boundary_seconds_for_settle(h: SLAHarness) -> None:
    """settle works from t = end + window on, not a second earlier."""
    sla = new_sla(h, quorum=3)
    end = sla.bounds(0)[1]
    deadline = end + 500
    reps = [sla.report(sli=990_000 + i, idx=i) for i in range(3)]
    h.travel(end)
    sla.submit(reps, [sla.sign(r, SIGNER_KEYS[i]) for i, r in enumerate(reps)])
    h.travel(deadline - 1)
    _mined_reverts(h, h.contract.functions.settle(sla.sla_id, 0))
    assert sla.period(0)[3] is False
    h.travel(deadline)
    rc = h.send(h.contract.functions.settle(sla.sla_id, 0))
    assert h.w3.eth.get_block(rc["blockNumber"])["timestamp"] == deadline
    assert events(h, rc, "PeriodSettled")[0].args.reportCount == 3


def test_fee_on_transfer_token_credits_what_arrived(h: SLAHarness) -> None:
    token = deploy(h.w3, compile_sources("contracts/test/FeeToken.sol")["FeeToken"], h.keys[0])
    h.send(token.functions.mint(h.addr(1), 10**6))
    h.send(token.functions.approve(h.contract.address, 10**6), sender=1)
    sla = new_sla(h, asset=token.address, fund=0)
    rc = h.send(h.contract.functions.fund(sla.sla_id, 10_000), sender=1)
    assert events(h, rc, "PoolFunded")[0].args.amount == 9_900
    assert h.contract.functions.getSLA(sla.sla_id).call()[17] == 9_900
    assert token.functions.balanceOf(h.contract.address).call() == 9_900
