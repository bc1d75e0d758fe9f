"""Liveness on the real bytecode (py-evm): a period without a quorum by its deadline is
stalled, keeps its worst payout reserved and settles from late reports; a quorum of the
current signers rotates the signer set, voiding the old set's unsettled reports. Every
deadline is checked at its exact second."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from slamon.chain.artefacts import sla_compensation
from slamon.chain.eip712 import sign_rotation
from slamon.chain.tx import send_tx
from tests.chain_helpers import AnvilNode, SLAHarness, anvil_harness, pyevm_harness
from tests.test_contract import OBJECTIVE, SIGNER_KEYS, SIGNERS, SLA, events, new_sla
from tests.test_reload import slamon_env

NEW_KEY = keccak(text="slamon-test-signer-new")
NEW = Account.from_key(NEW_KEY).address
WINDOW = 500
CAP = 10**18


@pytest.fixture(scope="module")
def h() -> Iterator[SLAHarness]:
    yield pyevm_harness(sla_compensation())


def report_from(sla: SLA, pid: int, idx: int, sli: int, key: bytes) -> tuple[Any, bytes]:
    r = sla.report(pid=pid, sli=sli, idx=idx)
    return r, sla.sign(r, key)


def submit_one(sla: SLA, pid: int, idx: int, sli: int, key: bytes | None = None) -> Any:
    r, sig = report_from(sla, pid, idx, sli, key or SIGNER_KEYS[idx])
    return sla.submit([r], [sig])


def at(h: SLAHarness, ts: int) -> None:
    """The next transaction is mined in a block with this timestamp (calls see ts - 1)."""
    h.travel(ts)


def view_at(h: SLAHarness, ts: int) -> None:
    """Calls see this timestamp (the next transaction is mined at ts + 1)."""
    h.travel(ts + 1)


def mined_reverts(h: SLAHarness, fn: Any) -> None:
    """A transaction mined at the time set by `at` reverts (a call would run a second
    earlier); which check fired is shown by the state the test reads afterwards."""
    with pytest.raises(RuntimeError, match="reverted"):
        h.send(fn, sender=1)


def test_stalled_period_keeps_its_reserve_and_settles_late(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=3, periodCount=3, fund=4 * CAP)  # n = 4, f = 1
    c = h.contract.functions
    sla.end_period(0)
    submit_one(sla, 0, 0, 990_000)  # one report: below the quorum of 3
    end = sla.bounds(0)[1]
    view_at(h, end + WINDOW)  # the deadline, exclusive: the window is closed
    h.expect_revert("NoQuorum", c.settle(sla.sla_id, 0))
    view = sla.period(0)
    assert view[-1] is True and view[2] == end + WINDOW  # stalled
    # not handed back: the stalled period's cap and the running period's stay in the pool
    assert c.withdrawable(sla.sla_id).call() == 2 * CAP
    assert c.needsReport(sla.sla_id, 0, SIGNERS[1]).call()
    assert not c.needsReport(sla.sla_id, 0, SIGNERS[0]).call()  # its report still counts
    # a late report opens a late window of settlementWindow seconds from its block
    late_at = end + WINDOW + 100
    at(h, late_at)
    rc = submit_one(sla, 0, 1, 995_000)
    (opened,) = events(h, rc, "LateWindowOpened")
    late = late_at + WINDOW
    assert opened.args.deadline == late and sla.period(0)[2] == late
    assert sla.period(0)[-1] is False  # waiting again, not stalled
    rc = submit_one(sla, 0, 2, 999_500)  # quorum reached inside the late window
    assert events(h, rc, "LateWindowOpened") == [] and events(h, rc, "PeriodSettled") == []
    at(h, late - 1)
    h.expect_revert("ReportWindowOpen", c.settle(sla.sla_id, 0))  # runs at late - 2
    # still inside the late window: a fourth report counts (no subset is chosen by whoever
    # relays first) and, being the n-th, settles the period over all four
    rc = submit_one(sla, 0, 3, 999_900)
    (ev,) = events(h, rc, "PeriodSettled")
    assert ev.args.reportCount == 4 and ev.args.sliPpm == 995_000  # lower median of 4
    assert ev.args.compensation == (OBJECTIVE - 995_000) * 10**12


def test_late_deadline_is_exclusive_and_rearms_without_quorum(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=3, periodCount=3)
    c = h.contract.functions
    sla.end_period(0)
    end = sla.bounds(0)[1]
    at(h, end + WINDOW - 1)  # the last second of the regular window
    rc = submit_one(sla, 0, 0, 990_000)
    assert events(h, rc, "LateWindowOpened") == []
    at(h, end + WINDOW + 10)
    rc = submit_one(sla, 0, 1, 991_000)
    late = end + WINDOW + 10 + WINDOW
    assert events(h, rc, "LateWindowOpened")[0].args.deadline == late
    view_at(h, late)  # the late window is over with two reports: stalled again
    assert sla.period(0)[-1] is True
    h.expect_revert("NoQuorum", c.settle(sla.sla_id, 0))
    # mined at late + 1: re-opens it; the two earlier reports still count
    rc = submit_one(sla, 0, 2, 992_000)
    late2 = late + 1 + WINDOW
    assert events(h, rc, "LateWindowOpened")[0].args.deadline == late2
    at(h, late2 - 1)
    h.expect_revert("ReportWindowOpen", c.settle(sla.sla_id, 0))
    at(h, late2)
    # quorum and at the late deadline: closed for reports, open for settle
    r, sig = report_from(sla, 0, 3, 999_999, SIGNER_KEYS[3])
    mined_reverts(h, sla.submit_fn([r], [sig]))
    assert not c.hasReported(sla.sla_id, 0, SIGNERS[3]).call()
    rc = h.send(c.settle(sla.sla_id, 0))
    (ev,) = events(h, rc, "PeriodSettled")
    assert ev.args.reportCount == 3 and ev.args.sliPpm == 991_000


def test_quorum_reached_in_the_regular_window_closes_at_its_deadline(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=3, periodCount=3)
    c = h.contract.functions
    sla.end_period(0)
    for i in range(3):
        submit_one(sla, 0, i, 990_000 + i)
    end = sla.bounds(0)[1]
    at(h, end + WINDOW)
    r, sig = report_from(sla, 0, 3, 999_999, SIGNER_KEYS[3])
    mined_reverts(h, sla.submit_fn([r], [sig]))
    assert not c.hasReported(sla.sla_id, 0, SIGNERS[3]).call()
    assert sla.period(0)[-1] is False and not c.needsReport(sla.sla_id, 0, SIGNERS[3]).call()
    h.send(c.settle(sla.sla_id, 0))


def _rotate(h: SLAHarness, sla: SLA, signers: list[str], quorum: int, keys: list[bytes],
            version: int = 1) -> Any:
    sigs = [sign_rotation(sla.sla_id, version, signers, quorum, k, h.chain_id,
                          h.contract.address) for k in keys]
    return h.contract.functions.rotateSigners(sla.sla_id, signers, quorum, sigs)


def test_rotation_needs_a_quorum_of_the_current_set(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=3, periodCount=3, tiers=[(999_000, 10**15), (990_000, 10**16)])
    c = h.contract.functions
    before = c.getSLA(sla.sla_id).call()
    new_set = [*SIGNERS[:3], NEW]
    # the provider alone (no approvals), too few, an outsider, a repeated approval
    h.expect_revert("NoRotationQuorum", c.rotateSigners(sla.sla_id, new_set, 3, []), sender=1)
    h.expect_revert("NoRotationQuorum", _rotate(h, sla, new_set, 3, SIGNER_KEYS[:2]))
    h.expect_revert("NotSigner", _rotate(h, sla, new_set, 3, [*SIGNER_KEYS[:2], NEW_KEY]))
    h.expect_revert("DuplicateSigner", _rotate(h, sla, new_set, 3, [SIGNER_KEYS[0]] * 3))
    # approvals of another set or version recover to someone else
    h.expect_revert("NotSigner", _rotate(h, sla, new_set, 3, SIGNER_KEYS[:3], version=2))
    sigs = [sign_rotation(sla.sla_id, 1, SIGNERS, 3, k, h.chain_id, h.contract.address)
            for k in SIGNER_KEYS[:3]]
    h.expect_revert("NotSigner", c.rotateSigners(sla.sla_id, new_set, 3, sigs))
    # the registration rules hold for the new set
    h.expect_revert("InvalidParams", _rotate(h, sla, new_set, 2, SIGNER_KEYS[:3]))
    h.expect_revert("InvalidParams", _rotate(h, sla, new_set[:3], 3, SIGNER_KEYS[:3]))
    h.expect_revert("InvalidParams", _rotate(h, sla, [NEW, NEW, *SIGNERS[:2]], 3,
                                             SIGNER_KEYS[:3]))
    rc = h.send(_rotate(h, sla, new_set, 3, SIGNER_KEYS[1:4]), sender=7)  # anyone relays
    (ev,) = events(h, rc, "SignersRotated")
    assert ev.args.version == 1 and list(ev.args.signers) == new_set and ev.args.quorum == 3
    after = c.getSLA(sla.sla_id).call()
    assert list(after[9]) == new_set and after[20] == 1
    # everything but the signer set (and version) is what was registered
    assert [v for i, v in enumerate(after) if i not in (9, 20)] == \
        [v for i, v in enumerate(before) if i not in (9, 20)]
    # an approval replayed for the next version is worth nothing
    h.expect_revert("NotSigner", _rotate(h, sla, new_set, 3, SIGNER_KEYS[1:4]))


def test_rotation_voids_the_old_sets_unsettled_reports(h: SLAHarness) -> None:
    sla = new_sla(h, quorum=3, periodCount=3)
    c = h.contract.functions
    sla.end_period(0)
    submit_one(sla, 0, 0, 990_000)
    submit_one(sla, 0, 3, 991_000)  # the signer about to be replaced
    assert sla.period(0)[7] == 2
    new_set = [*SIGNERS[:3], NEW]
    h.send(_rotate(h, sla, new_set, 3, SIGNER_KEYS[:3]))
    assert sla.period(0)[7] == 0 and sla.period(0)[6] == 0
    assert not c.hasReported(sla.sla_id, 0, SIGNERS[0]).call()
    assert c.needsReport(sla.sla_id, 0, SIGNERS[0]).call()
    assert not c.needsReport(sla.sla_id, 0, SIGNERS[3]).call()  # not a signer any more
    # the replaced signer's report is refused, the old set's report of signer 0 must be redone
    r, sig = report_from(sla, 0, 3, 991_000, SIGNER_KEYS[3])
    h.expect_revert("NotSigner", sla.submit_fn([r], [sig]))
    submit_one(sla, 0, 0, 990_000)
    submit_one(sla, 0, 1, 999_000)
    submit_one(sla, 0, 2, 999_500)
    rc = submit_one(sla, 0, 3, 999_900, key=NEW_KEY)  # slot 3 is the new signer now
    (ev,) = events(h, rc, "PeriodSettled")
    assert ev.args.reportCount == 4 and ev.args.sliPpm == 999_000


def test_rotation_voids_a_quorum_not_yet_settled(h: SLAHarness) -> None:
    """Three reports of the old set (a quorum) wait for the deadline; a rotation voids them,
    so `settle` finds no quorum and the period stalls until the new set reports."""
    sla = new_sla(h, quorum=3, periodCount=3)
    c = h.contract.functions
    sla.end_period(0)
    for i in range(3):
        submit_one(sla, 0, i, 990_000 + i)
    h.send(_rotate(h, sla, [*SIGNERS[:3], NEW], 3, SIGNER_KEYS[:3]))
    view_at(h, sla.bounds(0)[1] + WINDOW)
    h.expect_revert("NoQuorum", c.settle(sla.sla_id, 0))
    assert sla.period(0)[-1] is True


def test_rotation_recovers_a_stalled_period(h: SLAHarness) -> None:
    """Signers 2 and 3 stop reporting: period 0 stalls with two reports. Signers 0, 1 and 2
    (a quorum of the old set) rotate 3 out; the new set reports late and the period settles;
    the reserve held for it is then released."""
    sla = new_sla(h, quorum=3, periodCount=2, fund=3 * CAP)
    c = h.contract.functions
    sla.end_period(0)
    submit_one(sla, 0, 0, 980_000)
    submit_one(sla, 0, 1, 985_000)
    at(h, sla.bounds(0)[1] + WINDOW + 1)
    assert sla.period(0)[-1] is True
    assert c.withdrawable(sla.sla_id).call() == CAP  # stalled period 0 + running period 1
    h.send(_rotate(h, sla, [*SIGNERS[:3], NEW], 3, SIGNER_KEYS[:3]))
    submit_one(sla, 0, 0, 980_000)
    submit_one(sla, 0, 1, 985_000)
    rc = submit_one(sla, 0, 3, 990_000, key=NEW_KEY)
    late = events(h, rc, "LateWindowOpened")
    assert late == []  # the late window opened with the first report after the rotation
    at(h, sla.period(0)[2])
    rc = h.send(c.settle(sla.sla_id, 0))
    (ev,) = events(h, rc, "PeriodSettled")
    assert ev.args.sliPpm == 985_000 and ev.args.breached
    comp = ev.args.compensation
    assert c.withdrawable(sla.sla_id).call() == 3 * CAP - comp - CAP


def test_reserve_is_the_larger_of_cap_and_met_reward(h: SLAHarness) -> None:
    """A met period may owe the team more than a breach owes the customers: the reserve per
    unsettled or running period is whichever is larger."""
    sla = new_sla(h, periodCount=3, fund=5 * CAP, maxPayoutPerPeriod=CAP, metReward=2 * CAP)
    c = h.contract.functions
    assert c.withdrawable(sla.sla_id).call() == 5 * CAP - 2 * CAP  # the running period
    sla.end_period(0)
    assert c.withdrawable(sla.sla_id).call() == 5 * CAP - 4 * CAP  # + unsettled period 0
    r = sla.report(pid=0, sli=OBJECTIVE)
    rc = sla.submit([r], [sla.sign(r)])
    assert events(h, rc, "TeamRewarded")[0].args.amount == 2 * CAP
    assert c.withdrawable(sla.sla_id).call() == 3 * CAP - 2 * CAP


def test_cli_rotation_on_anvil(tmp_path: Path) -> None:
    """`slamon contract approve-rotation` by three of four signers, `rotate-signers` by
    anyone: the new set is on chain; too few approvals is a clear error, exit 1."""
    with AnvilNode.start() as node:
        h = anvil_harness(node, sla_compensation())
        w3, contract = h.w3, h.contract
        address = contract.address
        keys = [node.keys[i] for i in (4, 5, 6, 7)]
        signers = [Account.from_key(k).address for k in keys]
        name = keccak(text="cli-rotation")
        send_tx(w3, node.keys[1], contract.functions.registerSLA(
            h.sla_params(name, h.now() + 100, signers, quorum=3)))
        sla_id = "0x" + contract.functions.slaIdOf(Account.from_key(node.keys[1]).address,
                                                   name).call().hex()
        new_set = [*signers[:3], Account.from_key(node.keys[8]).address]
        common = ["--rpc-url", node.url, "--contract", address, "--sla-id", sla_id,
                  "--quorum", "3", *(a for s in new_set for a in ("--signer", s))]

        def slamon(*argv: str, key: str) -> subprocess.CompletedProcess[str]:
            env = {**slamon_env(None), "SLAMON_ROT_KEY": key}
            return subprocess.run([sys.executable, "-m", "slamon", "contract", *argv,
                                   "--key-env", "SLAMON_ROT_KEY"], capture_output=True,
                                  text=True, env=env, timeout=120, check=False)

        approvals = []
        for key in keys[:3]:
            res = slamon("approve-rotation", *common, key=key)
            assert res.returncode == 0, res.stderr
            approvals.append(res.stdout.strip())
        res = slamon("rotate-signers", *common, "--approval", approvals[0], key=node.keys[2])
        assert res.returncode == 1 and "NoRotationQuorum" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
        res = slamon("rotate-signers", *common,
                     *(a for ap in approvals for a in ("--approval", ap)), key=node.keys[2])
        assert res.returncode == 0, res.stderr
        assert "signer set version 1" in res.stdout
        view = contract.functions.getSLA(bytes.fromhex(sla_id[2:])).call()
        assert list(view[9]) == new_set and view[20] == 1
        res = slamon("approve-rotation", *common[:4], "--sla-id", "0x12", "--quorum", "3",
                     "--signer", new_set[0], key=keys[0])
        assert res.returncode == 2 and "--sla-id" in res.stderr


def test_periods_are_named_from_first_period_id(h: SLAHarness) -> None:
    """The contract names periods by the registrant's ids (slamon's), from firstPeriodId."""
    first = 29_939_266
    sla = new_sla(h, periodCount=3, firstPeriodId=first)
    c = h.contract.functions
    assert c.getSLA(sla.sla_id).call()[21] == first
    start = sla.start
    assert c.periodBounds(sla.sla_id, first).call() == [start, start + 1000]
    assert c.periodBounds(sla.sla_id, first + 2).call() == [start + 2000, start + 3000]
    h.expect_revert("UnknownPeriod", c.periodBounds(sla.sla_id, first - 1))
    h.expect_revert("UnknownPeriod", c.periodBounds(sla.sla_id, first + 3))
    h.travel(start + 1000 + 10)
    r = sla.report(pid=0, sli=990_000).replace(period_id=first)
    rc = sla.submit([r], [sla.sign(r)])
    assert events(h, rc, "PeriodSettled")[0].args.periodId == first
    assert c.getPeriod(sla.sla_id, first).call()[3] is True
    late = sla.report(pid=0).replace(period_id=first - 1)
    h.expect_revert("UnknownPeriod", sla.submit_fn([late], [sla.sign(late)]))


def _mask_of(sla: SLA, pid: int) -> int:
    return int(sla.period(pid)[6])


def _roots_of(h: SLAHarness, sla: SLA, pid: int) -> list[bytes]:
    return [bytes(h.contract.functions.reportRoot(sla.sla_id, pid, s).call()) for s in SIGNERS[:4]]


def test_stalled_period_keeps_its_record_while_later_periods_overflow_and_reuse_slots(
    h: SLAHarness,
) -> None:
    """Reports wait in one of two slots reused period after period (by parity); a stalled
    period keeps its slot, so the next period of its parity waits in an overflow slot. No
    period sees another's reports, before or after settling, and settled ones stay as they
    settled once their slot is reused."""
    sla = new_sla(h, quorum=3, periodCount=8, fund=10 * CAP)
    c = h.contract.functions
    zero = bytes(32)
    root = sla.report  # evidence roots are keccak("root-{pid}-{idx}")

    def own_root(pid: int, idx: int) -> bytes:
        return bytes(root(pid=pid, idx=idx).evidence_root)

    sla.end_period(0)
    submit_one(sla, 0, 0, 990_000)  # period 0 stalls with one report
    sla.end_period(1)
    for i in range(4):
        submit_one(sla, 1, i, 999_100 + i)  # period 1 settles over all four (other slot)
    assert sla.period(1)[3] and sla.period(1)[5] == 999_101
    sla.end_period(2)
    # period 2 has period 0's parity while period 0 is unsettled: it must not see its report
    assert _mask_of(sla, 0) == 0b1 and _mask_of(sla, 2) == 0
    assert c.needsReport(sla.sla_id, 2, SIGNERS[0]).call()
    submit_one(sla, 2, 1, 980_000)
    submit_one(sla, 2, 2, 981_000)
    assert _mask_of(sla, 2) == 0b110 and _mask_of(sla, 0) == 0b1
    assert _roots_of(h, sla, 2) == [zero, own_root(2, 1), own_root(2, 2), zero]
    assert _roots_of(h, sla, 0) == [own_root(0, 0), zero, zero, zero]
    assert c.hasReported(sla.sla_id, 2, SIGNERS[1]).call()
    assert not c.hasReported(sla.sla_id, 0, SIGNERS[1]).call()
    # period 0 takes late reports (its own record), period 2 settles from its overflow slot
    submit_one(sla, 0, 1, 991_000)
    assert _mask_of(sla, 0) == 0b11 and _mask_of(sla, 2) == 0b110
    submit_one(sla, 2, 0, 982_000)
    rc = submit_one(sla, 2, 3, 983_000)
    (ev,) = events(h, rc, "PeriodSettled")
    assert (ev.args.periodId, ev.args.sliPpm, ev.args.reportCount) == (2, 981_000, 4)
    assert ev.args.evidenceRoot == own_root(2, 2)
    submit_one(sla, 0, 2, 992_000)
    rc = submit_one(sla, 0, 3, 993_000)
    (ev,) = events(h, rc, "PeriodSettled")
    assert (ev.args.periodId, ev.args.sliPpm, ev.args.reportCount) == (0, 991_000, 4)
    assert ev.args.evidenceRoot == own_root(0, 1)
    # periods 4 and 5 reuse both slots; what settled before stays as it settled
    before = {pid: sla.period(pid) for pid in (0, 1, 2)}
    for pid in (4, 5):
        sla.end_period(pid)
        for i in range(4):
            submit_one(sla, pid, i, 999_500 + 10 * i)
        assert sla.period(pid)[3] and sla.period(pid)[5] == 999_510
    for pid, view in before.items():
        assert sla.period(pid) == view
        assert _mask_of(sla, pid) == 0b1111
    # only the median's root is kept once settled
    assert _roots_of(h, sla, 0) == [zero, own_root(0, 1), zero, zero]
    assert _roots_of(h, sla, 2) == [zero, zero, own_root(2, 2), zero]
    # a late report for a settled period changes nothing, whether its slot was reused or not
    for pid in (0, 4):
        rc = submit_one(sla, pid, 0, 0)
        assert events(h, rc, "LateReportsIgnored")[0].args.count == 1
        assert events(h, rc, "ReportAccepted") == []
    assert sla.period(0) == before[0]


def test_rotation_frees_the_slot_of_a_stalled_period(h: SLAHarness) -> None:
    """A stalled period whose reports were voided by a rotation no longer holds its slot:
    the next period of its parity takes it, and the stalled one, reported again by the new
    set while that period is open, settles from an overflow slot over the new reports only."""
    sla = new_sla(h, quorum=3, periodCount=8, fund=10 * CAP)
    c = h.contract.functions
    sla.end_period(0)
    submit_one(sla, 0, 0, 500_000)
    submit_one(sla, 0, 1, 600_000)  # two reports: stalls
    sla.end_period(1)
    new_set = [*SIGNERS[:3], NEW]
    approvals = [sign_rotation(sla.sla_id, 1, new_set, 3, SIGNER_KEYS[i], h.chain_id,
                               h.contract.address) for i in range(3)]
    h.send(c.rotateSigners(sla.sla_id, new_set, 3, approvals), sender=1)
    assert _mask_of(sla, 0) == 0  # void
    sla.end_period(2)
    keys = [*SIGNER_KEYS[:3], NEW_KEY]
    for i in range(3):
        submit_one(sla, 2, i, 999_100 + i, keys[i])  # takes period 0's old slot
    assert _mask_of(sla, 2) == 0b111 and not sla.period(2)[3]
    for i in (3, 2):
        submit_one(sla, 0, i, 990_000 + i, keys[i])
    assert _mask_of(sla, 0) == 0b1100
    rc = submit_one(sla, 0, 0, 990_000, keys[0])
    assert _mask_of(sla, 0) == 0b1101
    assert _mask_of(sla, 2) == 0b111
    h.travel(sla.bounds(2)[1] + 10 * WINDOW)
    rc = h.send(c.settle(sla.sla_id, 0), sender=1)
    (ev,) = events(h, rc, "PeriodSettled")
    # the voided 500 000 and 600 000 are not among them
    assert (ev.args.sliPpm, ev.args.reportCount) == (990_002, 3)
    rc = h.send(c.settle(sla.sla_id, 2), sender=1)
    (ev,) = events(h, rc, "PeriodSettled")
    assert (ev.args.sliPpm, ev.args.reportCount) == (999_101, 3)
    assert [_mask_of(sla, pid) for pid in (0, 2)] == [0b1101, 0b111]


def test_a_period_reported_whole_in_one_call_stays_settled(h: SLAHarness) -> None:
    """A period whose n reports arrive in one call settles without its record being written;
    one whose slot still holds its voided reports (rotation) is marked settled there. Either
    way a later report changes nothing."""
    sla = new_sla(h, quorum=3, periodCount=8, fund=10 * CAP)
    c = h.contract.functions
    sla.end_period(0)
    submit_one(sla, 0, 0, 500_000)
    submit_one(sla, 0, 1, 600_000)
    new_set = [*SIGNERS[:3], NEW]
    keys = [*SIGNER_KEYS[:3], NEW_KEY]
    approvals = [sign_rotation(sla.sla_id, 1, new_set, 3, SIGNER_KEYS[i], h.chain_id,
                               h.contract.address) for i in range(3)]
    h.send(c.rotateSigners(sla.sla_id, new_set, 3, approvals), sender=1)

    def whole(pid: int, base: int) -> Any:
        reps = [report_from(sla, pid, i, base + i, keys[i]) for i in range(4)]
        return sla.submit([r for r, _ in reps], [s for _, s in reps])

    h.travel(sla.bounds(0)[1] + WINDOW + 10)  # period 0 is stalled with void reports
    (ev,) = events(h, whole(0, 990_000), "PeriodSettled")
    assert (ev.args.sliPpm, ev.args.reportCount) == (990_001, 4)
    sla.end_period(2)
    (ev,) = events(h, whole(2, 999_100), "PeriodSettled")
    assert (ev.args.sliPpm, ev.args.reportCount) == (999_101, 4)
    settled = {pid: sla.period(pid) for pid in (0, 2)}
    for pid in (0, 2):
        rc = submit_one(sla, pid, 0, 0, keys[0])
        assert events(h, rc, "LateReportsIgnored")[0].args.count == 1
        assert not c.needsReport(sla.sla_id, pid, NEW).call()
    sla.end_period(4)
    submit_one(sla, 4, 3, 999_999, keys[3])  # takes the slot
    assert _mask_of(sla, 4) == 0b1000
    assert {pid: sla.period(pid) for pid in (0, 2)} == settled
