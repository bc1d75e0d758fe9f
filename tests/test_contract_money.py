"""Every wei is accounted for: a hypothesis state machine against the real bytecode on py-evm.

Per SLA (one asset each, ETH or an ERC-20), after any sequence of fund, withdraw, report
(settle), a period left without reports (stalled) and reported late, claim and claimTeam:

    sum(claimable) + sum(claimed) + pool + team owed + team claimed + withdrawn == deposits

to the wei, and the contract holds exactly what it owes across all SLAs. Payouts are whole
units per weight, so the remainder of a compensation stays in the pool. What the provider may
withdraw is recomputed naively: the pool minus max(cap, met reward) for every finished period
not settled yet (stalled ones included) and for the period running, if any.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from slamon.chain.artefacts import erc20_test_token, sla_compensation
from tests.chain_helpers import SLAHarness, deploy, pyevm_harness
from tests.test_contract import LENGTH, SIGNER_KEYS, SIGNERS, SLA

_names = itertools.count()
_H: dict[str, Any] = {}
BENEFICIARIES = (3, 4, 5)


def _harness() -> tuple[SLAHarness, Any]:
    if "h" not in _H:
        h = pyevm_harness(sla_compensation())
        token = deploy(h.w3, erc20_test_token(), h.keys[0], "Test", "TST")
        h.send(token.functions.mint(h.addr(1), 10**30))
        h.send(token.functions.approve(h.contract.address, 10**30), sender=1)
        _H["h"], _H["token"] = h, token
    return _H["h"], _H["token"]


class Money(RuleBasedStateMachine):
    @initialize(
        erc20=st.booleans(),
        weights=st.lists(st.sampled_from([1, 2, 3, 7, 10**18, 3 * 10**18, 999_983]),
                         min_size=1, max_size=3),
        rate=st.sampled_from([1, 3, 10**6 + 1, 10**12, 99_999]),
        cap=st.sampled_from([9000, 99_999_000, 10**18, 10**18 + 7]),
        reward=st.sampled_from([0, 1, 10**15 + 3]),
    )
    def register(self, erc20: bool, weights: list[int], rate: int, cap: int,
                 reward: int) -> None:
        self.h, self.token = _harness()
        self.c = self.h.contract.functions
        self.bens = [self.h.addr(i) for i in BENEFICIARIES[: len(weights)]]
        name = keccak(text=f"money-{next(_names)}")
        start = self.h.now() + 20
        asset = self.token.address if erc20 else "0x" + "00" * 20
        self.erc20 = erc20
        self.h.send(self.c.registerSLA(self.h.sla_params(
            name, start, SIGNERS[:1], asset=asset, beneficiaries=self.bens, weights=weights,
            ratePerPpm=rate, maxPayoutPerPeriod=cap, metReward=reward,
            periodCount=6)), sender=1)
        self.sla = SLA(self.h, self.h.sla_id(name), start, SIGNERS[:1])
        self.deposits = 0
        self.withdrawn = 0
        self.team_claimed = 0
        self.claimed = dict.fromkeys(self.bens, 0)
        self.period = 0
        self.each = max(cap, reward)
        self.settled = 0
        self.stalled: list[int] = []

    def _balance(self, who: str) -> int:
        if self.erc20:
            return int(self.token.functions.balanceOf(who).call())
        return int(self.h.w3.eth.get_balance(who))

    @rule(amount=st.integers(1, 3 * 10**18))
    def fund(self, amount: int) -> None:
        value = 0 if self.erc20 else amount
        self.h.send(self.c.fund(self.sla.sla_id, amount), sender=1, value=value)
        self.deposits += amount

    @rule(frac=st.integers(1, 100))
    def withdraw(self, frac: int) -> None:
        available = int(self.c.withdrawable(self.sla.sla_id).call())
        now = int(self.h.w3.eth.get_block("latest")["timestamp"])  # what calls see
        finished = min(6, max(0, (now - self.sla.start) // LENGTH))
        unsettled = finished - self.settled + (1 if finished < 6 else 0)
        pool = int(self.c.getSLA(self.sla.sla_id).call()[17])
        assert available == max(0, pool - unsettled * self.each)
        amount = available * frac // 100
        if amount == 0:
            return
        self.h.send(self.c.withdraw(self.sla.sla_id, amount, self.h.addr(6)), sender=1)
        self.withdrawn += amount

    @precondition(lambda self: self.period < 6)
    @rule(sli=st.integers(0, 1_000_000))
    def report(self, sli: int) -> None:
        pid = self.period
        self.sla.end_period(pid)
        r = self.sla.report(pid=pid, sli=sli)
        self.sla.submit([r], [self.sla.sign(r, SIGNER_KEYS[0])])
        self.period += 1
        self.settled += 1
        self.every_wei_accounted()

    @precondition(lambda self: self.period < 6)
    @rule()
    def stall(self) -> None:
        """No report by the deadline: the period stalls and keeps its reserve."""
        self.h.travel(self.sla.bounds(self.period)[1] + 600)
        self.stalled.append(self.period)
        self.period += 1

    @precondition(lambda self: bool(self.stalled))
    @rule(sli=st.integers(0, 1_000_000), which=st.integers(0, 5))
    def report_late(self, sli: int, which: int) -> None:
        pid = self.stalled.pop(which % len(self.stalled))
        r = self.sla.report(pid=pid, sli=sli)
        self.sla.submit([r], [self.sla.sign(r, SIGNER_KEYS[0])])
        self.settled += 1
        self.every_wei_accounted()

    @rule(i=st.integers(0, 2))
    def claim(self, i: int) -> None:
        who = self.bens[i % len(self.bens)]
        owed = int(self.c.claimable(self.sla.sla_id, who).call())
        if owed == 0:
            return
        before = self._balance(who) if self.erc20 else None
        self.h.send(self.c.claim(self.sla.sla_id), sender=BENEFICIARIES[self.bens.index(who)])
        if before is not None:
            assert self._balance(who) - before == owed
        self.claimed[who] += owed

    @rule()
    def claim_team(self) -> None:
        owed = int(self.c.getSLA(self.sla.sla_id).call()[18])
        if owed == 0:
            return
        self.h.send(self.c.claimTeam(self.sla.sla_id), sender=2)
        self.team_claimed += owed

    def teardown(self) -> None:
        # checked once per sequence (and after every settlement): each check is 7 eth_calls,
        # and 200 sequences must stay under a minute
        if hasattr(self, "sla"):
            self.every_wei_accounted()

    def every_wei_accounted(self) -> None:
        view = self.c.getSLA(self.sla.sla_id).call()
        pool, team_owed = int(view[17]), int(view[18])
        claimable = sum(int(self.c.claimable(self.sla.sla_id, b).call()) for b in self.bens)
        claimed = [int(self.c.beneficiary(self.sla.sla_id, b).call()[1]) for b in self.bens]
        assert claimed == [self.claimed[b] for b in self.bens]
        total = claimable + sum(claimed) + pool + team_owed + self.team_claimed + self.withdrawn
        assert total == self.deposits


def _settings(examples: int) -> settings:
    # the mutation script only needs a failure, not a minimal one: shrinking on a chain is slow
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    return settings(max_examples=examples, stateful_step_count=5, deadline=None,
                    suppress_health_check=list(HealthCheck),
                    phases=phases if os.environ.get("SLAMON_NO_SHRINK") else list(Phase))


#: >= 200 sequences per CI run; SLAMON_MONEY_EXAMPLES raises it for the slow run
TestMoney = Money.TestCase
TestMoney.settings = _settings(int(os.environ.get("SLAMON_MONEY_EXAMPLES", "200")))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SLAMON_SLOW_TESTS"),
                    reason="2,000 sequences take ~8 min on py-evm; set SLAMON_SLOW_TESTS=1")
@pytest.mark.timeout(3600)
def test_money_many_sequences() -> None:
    run_state_machine_as_test(Money, settings=_settings(2000))
