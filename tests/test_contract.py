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
    sla_id = keccak(text=f"sla-{next(_counter)}")
    start = h.now() + 20
    signers = signers or SIGNERS[:3]
    h.send(h.contract.functions.registerSLA(h.sla_params(sla_id, start, signers, **kw)), sender=1)
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
    r = sla.report(sli=999_500)
    receipt = sla.submit([r], [sla.sign(r)])
    (ev,) = events(h, receipt, "PeriodSettled")
    assert not ev.args.breached and ev.args.compensation == 0
    assert events(h, receipt, "TeamRewarded")[0].args.amount == 10**15
    c = h.contract.functions
    assert c.claimable(sla.sla_id, h.addr(3)).call() == 0
    h.expect_revert("NotTeam", c.claimTeam(sla.sla_id), sender=3)
    rc = h.send(c.claimTeam(sla.sla_id), sender=2)
    assert events(h, rc, "TeamClaimed")[0].args.amount == 10**15


def test_compensation_capped_by_pool(h: SLAHarness) -> None:
    sla = new_sla(h, fund=10**15)
    sla.end_period(0)
    r = sla.report(sli=0, good=0)
    receipt = sla.submit([r], [sla.sign(r)])
    assert events(h, receipt, "PeriodSettled")[0].args.compensation == 10**15


def test_quorum_two_of_three_accumulated_median(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=2)
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
    r2 = sla.report(sli=990_000, idx=2)
    rc = sla.submit([r2], [sla.sign(r2, SIGNER_KEYS[2])])
    (ev,) = events(h, rc, "PeriodSettled")
    # lower median of {990000, 999900}
    assert ev.args.sliPpm == 990_000 and ev.args.breached
    assert ev.args.evidenceRoot == r2.evidence_root
    assert sla.period(0)[6] == 0b101
    # late third report: harmless
    r1 = sla.report(sli=995_000, idx=1)
    rc = sla.submit([r1], [sla.sign(r1, SIGNER_KEYS[1])])
    assert events(h, rc, "LateReportsIgnored")[0].args.count == 1
    assert sla.period(0)[5] == 990_000


def test_quorum_three_batched_median_and_evidence_root(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=3, signers=SIGNERS[:4])
    sla.end_period(0)
    slis = [999_500, 980_000, 995_000]
    reps = [sla.report(sli=s, idx=i) for i, s in enumerate(slis)]
    sigs = [sla.sign(r, SIGNER_KEYS[i]) for i, r in enumerate(reps)]
    rc = sla.submit(reps, sigs)
    (ev,) = events(h, rc, "PeriodSettled")
    assert ev.args.sliPpm == 995_000 and ev.args.evidenceRoot == reps[2].evidence_root
    assert len(events(h, rc, "ReportAccepted")) == 3
    roots = h.contract.functions.reportRoot
    assert roots(sla.sla_id, 0, SIGNERS[2]).call() == reps[2].evidence_root


def test_relayer_batch_mixed_with_pending(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=3, signers=SIGNERS[:4])
    sla.end_period(0)
    reps = [sla.report(sli=990_000 + 1000 * i, idx=i) for i in range(4)]
    sigs = [sla.sign(r, SIGNER_KEYS[i]) for i, r in enumerate(reps)]
    sla.submit([reps[3]], [sigs[3]])  # 993000 pending
    rc = sla.submit(reps[:2], sigs[:2])  # 990000, 991000 -> median of 3 = 991000
    (ev,) = events(h, rc, "PeriodSettled")
    assert ev.args.sliPpm == 991_000 and ev.args.evidenceRoot == reps[1].evidence_root
    rc = sla.submit(reps[3:], sigs[3:])
    assert events(h, rc, "LateReportsIgnored")


# ---------------------------------------------------------------------------------------------
# Adversarial reports
# ---------------------------------------------------------------------------------------------


def test_rejects_bad_signatures(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=2)
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
    # past the settlement window
    h.travel(sla.bounds(0)[1] + 501 + 5)
    h.expect_revert("SettlementWindowClosed", fn([r], [sla.sign(r)]))


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
    sla_id = keccak(text=f"sla-reentrant-{next(_counter)}")
    start = h.now() + 20
    params = h.sla_params(sla_id, start, SIGNERS[:1], beneficiaries=[attacker.address], weights=[1])
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
    # period 0 finished and awaiting settlement: nothing can leave
    h.expect_revert("SettlementPending", c.withdraw(sla.sla_id, 1, h.addr(1)), sender=1)
    r = sla.report(sli=0, good=0)
    sla.submit([r], [sla.sign(r)])  # breach takes the cap (1e18)
    assert c.withdrawable(sla.sla_id).call() == 0  # remaining 1e18 is the reserve for period 1
    sla.end_period(1)
    h.expect_revert("SettlementPending", c.withdraw(sla.sla_id, 1, h.addr(1)), sender=1)
    h.travel(sla.bounds(1)[1] + 600)  # window closed, SLA over
    assert c.withdrawable(sla.sla_id).call() == 10**18
    h.send(c.withdraw(sla.sla_id, 10**18, h.addr(1)), sender=1)
    # what the beneficiaries are owed is untouched
    h.send(c.claim(sla.sla_id), sender=4)
    h.send(c.claim(sla.sla_id), sender=3)
    assert h.w3.eth.get_balance(h.contract.address) >= 0


def test_explicit_boundaries(h: SLAHarness) -> None:
    now = h.now()
    bounds = [now + 20, now + 20 + 2678400, now + 20 + 2678400 + 2419200]  # 31 d, 28 d
    sla_id = keccak(text=f"sla-cal-{next(_counter)}")
    params = h.sla_params(
        sla_id,
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
    # both periods over (period 0 never reported, its window long closed): the pool is free
    h.send(c.fund(sla_id, 5), sender=1, value=5)
    assert c.withdrawable(sla_id).call() == 5


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
    assert not c.verifyEvidence(sla.sla_id, 0, leaves[0], oz_proof(tree, leaves[0])).call()
    sla.end_period(0)
    r = sla.report(evidence_root=root)
    sla.submit([r], [sla.sign(r)])
    for leaf in leaves:
        assert c.verifyEvidence(sla.sla_id, 0, leaf, oz_proof(tree, leaf)).call()
    bad = oz_leaf((target, 1_700_000_000, 60, 60, 0))
    assert not c.verifyEvidence(sla.sla_id, 0, bad, oz_proof(tree, leaves[0])).call()


# ---------------------------------------------------------------------------------------------
# Registration validation
# ---------------------------------------------------------------------------------------------


def test_registration_validation(h: SLAHarness) -> None:
    sla_id = keccak(text="dup")
    start = h.now() + 20
    c = h.contract.functions
    h.send(c.registerSLA(h.sla_params(sla_id, start, SIGNERS[:1])), sender=1)
    h.expect_revert("SLAExists", c.registerSLA(h.sla_params(sla_id, start, SIGNERS[:1])))
    other = keccak(text="other-sla")
    for kw in [
        {"quorum": 2},
        {"signers": [SIGNERS[0], SIGNERS[0]]},
        {"objectivePpm": 1_000_001},
        {"settlementWindow": 1001},
        {"maxPayoutPerPeriod": 0},
        {"tiers": [(999_500, 1)]},
        {"weights": [1]},
    ]:
        params = h.sla_params(other, start, kw.pop("signers", SIGNERS[:1]), **kw)
        h.expect_revert("InvalidParams", c.registerSLA(params))


# ---------------------------------------------------------------------------------------------
# Real node
# ---------------------------------------------------------------------------------------------


def test_anvil_deploy_settle_claim() -> None:
    with AnvilNode.start() as node:
        ah = anvil_harness(node, sla_compensation())
        assert ah.chain_id == 31337
        sla = new_sla(ah, quorum=2)
        sla.end_period(0)
        reps = [sla.report(sli=990_000, idx=0), sla.report(sli=995_000, idx=1)]
        sla.submit([reps[0]], [sla.sign(reps[0], SIGNER_KEYS[0])])
        # anvil reverts with a decodable custom error too
        ah.expect_revert(
            "AlreadyReported", sla.submit_fn([reps[0]], [sla.sign(reps[0], SIGNER_KEYS[0])])
        )
        rc = sla.submit([reps[1]], [sla.sign(reps[1], SIGNER_KEYS[1])])
        (ev,) = events(ah, rc, "PeriodSettled")
        assert ev.args.sliPpm == 990_000
        comp = (OBJECTIVE - 990_000) * 10**12
        before = ah.w3.eth.get_balance(ah.addr(4))
        rc = ah.send(ah.contract.functions.claim(sla.sla_id), sender=4)
        fee = rc["gasUsed"] * rc["effectiveGasPrice"]
        assert ah.w3.eth.get_balance(ah.addr(4)) == before + comp * 3 // 4 - fee
