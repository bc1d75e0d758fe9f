"""The publisher against a real anvil: happy path and faults.

Every test starts its own anvil (about 0.3 s) and deploys SLACompensation from the committed
artefact. SLA schedules are placed in the past relative to the chain's clock (period 0 ended a
few seconds ago, its settlement window has an hour left), so most tests need no time travel and
survive an anvil restart, whose clock restarts from wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from eth_account import Account
from eth_utils.crypto import keccak
from structlog.testing import capture_logs

from slamon.chain import Report, SignedReport, sla_compensation
from slamon.config.oracle import KeyConfig, OracleConfig
from slamon.oracle.journal import (
    CONFIRMED,
    FAILED,
    SENT,
    SIGNED,
    JournalEntry,
    key_of,
)
from slamon.oracle.publisher import Publisher
from slamon.store.sqlite import StateStore

from . import chain_helpers
from .chain_helpers import (
    POLICY,
    REPO_ROOT,
    AnvilNode,
    SLAHarness,
    anvil_harness,
    anvil_path,
)

pytestmark = pytest.mark.timeout(60)

SIGNER_KEY = chain_helpers.ANVIL_KEYS[7]  # funded by anvil, signs reports and transactions
SIGNER = Account.from_key(SIGNER_KEY).address
#: three more signers, for an SLA with n = 4, f = 1 (their reports are sent by the test)
OTHER_KEYS = [chain_helpers.ANVIL_KEYS[i] for i in (4, 5, 6)]
OTHERS = [Account.from_key(k).address for k in OTHER_KEYS]
LENGTH = 3600
OBJECTIVE = 999_000
_ids = iter(range(10**6))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@dataclass
class Env:
    node: AnvilNode
    h: SLAHarness
    tmp: Path

    @property
    def w3(self) -> Any:
        return self.h.w3

    def rpc(self, method: str, *params: Any) -> Any:
        resp = self.w3.provider.make_request(method, list(params))
        assert "error" not in resp, resp
        return resp.get("result")

    def automine(self, on: bool) -> None:
        self.rpc("evm_setAutomine", on)

    def mine(self) -> None:
        self.rpc("evm_mine")

    def nonce(self, block: str = "latest") -> int:
        return int(self.w3.eth.get_transaction_count(SIGNER, block))

    def new_sla(self, window: int = LENGTH - 1, signers: list[str] | None = None,
                **kw: Any) -> bytes:
        """Register an SLA whose period 0 ended 10 s ago (window: one hour by default)."""
        name = keccak(text=f"publisher-sla-{next(_ids)}")
        start = self.h.now() - LENGTH - 10
        params = self.h.sla_params(
            name, start, signers or [SIGNER], periodLength=LENGTH, settlementWindow=window, **kw
        )
        self.h.send(self.h.contract.functions.registerSLA(params), sender=1)
        return self.h.sla_id(name)

    def report(self, sla_id: bytes, pid: int = 0, key: str = SIGNER_KEY,
               **kw: Any) -> SignedReport:
        start, end = self.h.contract.functions.periodBounds(sla_id, pid).call()
        fields: dict[str, Any] = {
            "sla_id": sla_id,
            "period_id": pid,
            "period_start": start,
            "period_end": end,
            "sli_ppm": 999_500,
            "slo_ppm": OBJECTIVE,
            "good": 9995,
            "valid": 10_000,
            "no_data": 0,
            "breached": False,
            "evidence_root": keccak(text=f"root-{pid}"),
            "policy_digest": POLICY,
            "issued_at": end + 1,
        }
        fields.update(kw)
        return SignedReport.sign(
            Report(**fields), key, chain_helpers.ANVIL_CHAIN_ID, self.h.contract.address
        )

    def has_reported(self, sla_id: bytes, pid: int = 0) -> bool:
        return bool(self.h.contract.functions.hasReported(sla_id, pid, SIGNER).call())

    def config(self, **kw: Any) -> OracleConfig:
        values: dict[str, Any] = {
            "key": KeyConfig(dev_key_env="SLAMON_TEST_KEY"),
            "chain_id": chain_helpers.ANVIL_CHAIN_ID,
            "contract": self.h.contract.address,
            "rpc_url": self.node.url,
            "confirmations": 1,
            "replace_after": 600.0,
            "retry_min": 0.05,
            "retry_max": 0.5,
        }
        values.update(kw)
        return OracleConfig(**values)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from anvil_env(tmp_path)


def anvil_env(tmp_path: Path) -> Iterator[Env]:
    """A fresh anvil with the contract deployed (the body of the `env` fixture)."""
    node = AnvilNode.launch("--state", str(tmp_path / "anvil-state.json"), binary=anvil_path())
    env = Env(node, anvil_harness(node, sla_compensation()), tmp_path)
    try:
        yield env
    finally:
        env.node.stop()  # a test may have restarted anvil: stop the one running now
        node.stop()
        # and any anvil on this test's state file that a failed restart left behind
        subprocess.run(["pkill", "-f", "--", f"--state {tmp_path}/"], check=False)


async def wait_for(pred: Callable[[], Awaitable[bool] | bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


class Running:
    """A publisher task in this event loop; what is logged while it runs is in `logs`."""

    def __init__(self, env: Env, store: StateStore, **cfg: Any) -> None:
        self.logs: list[dict[str, Any]] = []
        self._capture = contextlib.ExitStack()
        self.pub = Publisher(
            env.config(**cfg), Account.from_key(SIGNER_KEY), store, structlog.get_logger(),
            poll_interval=0.05,
        )
        self.journal = self.pub.journal  # scoped to the configured chain id and contract
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.logs = self._capture.enter_context(capture_logs())
        self.task = asyncio.create_task(self.pub.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            assert self.task is not None
            self.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.task
        finally:
            self._capture.close()

    def events(self, name: str) -> list[dict[str, Any]]:
        return [entry for entry in self.logs if entry["event"] == name]

    async def entry(self, signed: SignedReport) -> JournalEntry:
        found = await self.journal.get(key_of(signed))
        assert found is not None
        return found

    async def state(self, signed: SignedReport) -> str:
        return (await self.entry(signed)).state

    async def until(
        self, signed: SignedReport, state: str, timeout: float = 20.0
    ) -> JournalEntry:
        async def ok() -> bool:
            return (await self.state(signed)) == state

        await wait_for(ok, timeout)
        return await self.entry(signed)


# ---------------------------------------------------------------------------------------------
# happy path
# ---------------------------------------------------------------------------------------------


async def test_happy_path_waits_for_period_end_and_confirmations(
    env: Env, store: StateStore
) -> None:
    sla = env.new_sla()
    early = env.report(sla, pid=1)  # period 1 ends in an hour: PeriodNotFinished -> wait
    async with Running(env, store, confirmations=2) as run:
        assert await run.pub.submit(early)
        await wait_for(lambda: bool(run.events("report_waiting")))
        assert run.events("report_waiting")[0]["reason"] == "PeriodNotFinished"
        assert await run.state(early) == SIGNED and env.nonce() == 0

        env.h.travel(int(early.report.period_end) + 5)  # the period ends
        entry = await run.until(early, SENT)
        await asyncio.sleep(0.5)  # mined (automine) but only 1 of 2 confirmations
        assert await run.state(early) == SENT
        env.mine()
        entry = await run.until(early, CONFIRMED)
        receipt = env.w3.eth.get_transaction_receipt(entry.tx_hash)
        assert entry.block == receipt["blockNumber"] and receipt["status"] == 1
        assert env.has_reported(sla, 1)
        assert env.nonce() == 1  # exactly one transaction from the signer
        tx = env.w3.eth.get_transaction(entry.tx_hash)
        assert tx["to"] == env.h.contract.address and tx["type"] == 2
        assert tx["maxPriorityFeePerGas"] == 10**9  # configured 1 gwei
        assert tx["gas"] > receipt["gasUsed"]  # estimate x 1.25

        # submitting it again is a no-op; metrics show the state
        assert not await run.pub.submit(early)
        m = run.pub.metrics()
        assert m.backlog == 0 and m.states[CONFIRMED] == 1 and m.last_success is not None
        assert m.balance_wei is not None and m.balance_wei > 0 and m.consecutive_failures == 0
    sent = run.events("report_sent")
    assert len(sent) == 1 and sent[0]["nonce"] == 0 and sent[0]["tx"] == entry.tx_hash
    assert SIGNER_KEY.removeprefix("0x") not in repr(run.logs)


# ---------------------------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------------------------


async def test_stuck_sla_does_not_block_another_and_stops_at_its_deadline(
    env: Env, store: StateStore
) -> None:
    """Two SLAs: A's transaction is not mined before A's settlement deadline (and then
    reverts: A's period has its quorum from the three other signers), B's settles
    meanwhile. While A's transaction waits, B's is sent; at A's deadline A stops with the
    reason recorded instead of being retried."""
    a = env.new_sla(window=60, signers=[SIGNER, *OTHERS], quorum=3)  # deadline in ~50 s
    for key in OTHER_KEYS:
        other = env.report(a, key=key)
        env.h.send(env.h.contract.functions.submitReports(
            [other.report.as_tuple()], [other.signature]), sender=1)
    b = env.new_sla()
    ra, rb = env.report(a), env.report(b)
    deadline = int(env.h.contract.functions.getPeriod(a, 0).call()[2])
    env.automine(False)
    run = Running(env, store)
    run.pub.follow_slice = 0.2
    async with run:
        assert await run.pub.submit(ra, "a")
        await wait_for(lambda: bool(run.events("report_sent")))
        assert await run.pub.submit(rb, "b")
        # A's transaction is pending (nothing is mined): B is sent all the same
        await wait_for(lambda: len(run.events("report_sent")) == 2)
        assert (await run.pub.journal.get(key_of(ra, "a"))).state == SENT  # type: ignore[union-attr]
        # the next block is past A's deadline: it carries both; A's reverts
        env.rpc("evm_setNextBlockTimestamp", deadline)
        env.mine()
        env.automine(True)

        async def settled() -> bool:
            ea = await run.pub.journal.get(key_of(ra, "a"))
            eb = await run.pub.journal.get(key_of(rb, "b"))
            return (ea is not None and ea.state == FAILED
                    and eb is not None and eb.state == CONFIRMED)

        await wait_for(settled, 30)
    ea = await run.pub.journal.get(key_of(ra, "a"))
    assert ea is not None and ea.reason == f"settlement deadline {deadline} passed"
    assert env.has_reported(b) and not env.has_reported(a)
    # A was not retried after its deadline: two report transactions in all
    assert len(run.events("report_sent")) == 2
    assert [e["sla"] for e in run.events("report_failed")] == ["a"]



async def test_stalled_period_takes_the_report_after_its_deadline(
    env: Env, store: StateStore
) -> None:
    """A period without a quorum by its deadline is stalled, not closed: a daemon that
    comes back after the deadline still sends its report, which opens a late window and
    counts (here it settles the period)."""
    a = env.new_sla(window=60)
    ra = env.report(a)
    deadline = int(env.h.contract.functions.getPeriod(a, 0).call()[2])
    env.rpc("evm_setNextBlockTimestamp", deadline + 5)
    env.mine()
    assert env.h.contract.functions.getPeriod(a, 0).call()[9] is True  # stalled
    async with Running(env, store) as run:
        assert await run.pub.submit(ra)
        entry = await run.until(ra, CONFIRMED)
    assert entry.block is not None and env.has_reported(a)
    period = env.h.contract.functions.getPeriod(a, 0).call()
    assert period[3] is True and period[2] > deadline  # settled; the late deadline
    assert run.events("report_failed") == []


@pytest.mark.parametrize("headroom", [True, False], ids=["headroom", "no-headroom"])
async def test_report_that_becomes_the_settling_one(
    env: Env, store: StateStore, headroom: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our report's gas is estimated while it would not settle the period, but another
    signer's report is mined first in the same block, so ours is the n-th and settles. With
    the settlement headroom it has the gas; without it (forced here) it runs out, reverts,
    and the publisher sends it again once, with a new nonce, instead of following the
    reverted transaction over and over."""
    if not headroom:
        monkeypatch.setattr("slamon.oracle.publisher.SETTLE_HEADROOM", 0)
    a = env.new_sla(signers=[SIGNER, OTHERS[0]], quorum=1)
    # funded, so that settling a met period credits the team's reward (a fresh slot)
    env.h.send(env.h.contract.functions.fund(a, 10**18), sender=1, value=10**18)
    ra, other = env.report(a), env.report(a, key=OTHER_KEYS[0])
    relayer = Account.from_key(chain_helpers.ANVIL_KEYS[1])
    env.automine(False)
    async with Running(env, store, gas_margin=1.25 if headroom else 1.0) as run:
        assert await run.pub.submit(ra)
        await wait_for(lambda: bool(run.events("report_sent")))
        tx = env.h.contract.functions.submitReports(
            [other.report.as_tuple()], [other.signature]).build_transaction({
                "from": relayer.address, "gas": 600_000, "maxFeePerGas": 200 * 10**9,
                "maxPriorityFeePerGas": 100 * 10**9,
                "nonce": env.w3.eth.get_transaction_count(relayer.address, "pending")})
        env.w3.eth.send_raw_transaction(relayer.sign_transaction(tx).raw_transaction)
        env.mine()  # the relayer's higher tip puts the other report first
        env.rpc("evm_setIntervalMining", 1)  # from now on a block a second, as on a chain
        try:
            entry = await run.until(ra, CONFIRMED)
        finally:
            env.rpc("evm_setIntervalMining", 0)
            env.automine(True)
    period = env.h.contract.functions.getPeriod(a, 0).call()
    assert period[3] is True and period[7] == 2  # settled over both reports
    reverted = run.events("report_tx_reverted")
    if headroom:
        assert reverted == [] and [t.nonce for t in entry.txs] == [0]
    else:
        assert len(reverted) == 1 and reverted[0]["gas_used"] == entry.txs[0].gas
        assert [t.nonce for t in entry.txs] == [0, 1]
    assert run.events("report_failed") == []


async def test_daemon_settles_a_period_a_silent_signer_left_open(
    env: Env, store: StateStore
) -> None:
    """n = 4, quorum 3, one signer silent: the 4th report never comes, so after the
    deadline the publisher (first in the signer set) calls settle itself, once."""
    a = env.new_sla(window=30, signers=[SIGNER, *OTHERS], quorum=3)
    for key in OTHER_KEYS[:2]:
        other = env.report(a, key=key)
        env.h.send(env.h.contract.functions.submitReports(
            [other.report.as_tuple()], [other.signature]), sender=1)
    ra = env.report(a)
    deadline = int(env.h.contract.functions.getPeriod(a, 0).call()[2])
    async with Running(env, store) as run:
        run.pub.idle_interval = 0.1
        assert await run.pub.submit(ra)
        await run.until(ra, CONFIRMED)
        assert env.h.contract.functions.getPeriod(a, 0).call()[3] is False  # 3 of 4
        assert run.events("settle_sent") == []  # before the deadline: nothing to do
        env.rpc("evm_setNextBlockTimestamp", deadline)
        env.mine()
        await wait_for(lambda: bool(run.events("settle_confirmed")), 20)
        await asyncio.sleep(0.5)  # more passes: the period is known settled now
    period = env.h.contract.functions.getPeriod(a, 0).call()
    assert period[3] is True and period[7] == 3
    assert len(run.events("settle_sent")) == 1


async def test_anvil_down_then_restarted_with_same_state(env: Env, store: StateStore) -> None:
    sla, sla2 = env.new_sla(), env.new_sla()
    signed, signed2 = env.report(sla), env.report(sla2)
    port = env.node.port
    state_file = str(env.tmp / "anvil-state.json")

    def restart() -> None:  # same port, same state: the publisher finds it again by itself
        env.node = AnvilNode.launch("--state", state_file, port=port, binary=anvil_path())

    # 1) down after signing, before sending: retries back off, the report waits in the journal
    env.node.stop()  # SIGTERM: anvil dumps its state to --state
    async with Running(env, store) as run:
        await run.pub.submit(signed)
        await wait_for(lambda: run.pub.metrics().consecutive_failures >= 3)
        m = run.pub.metrics()
        assert m.backlog == 1 and not m.chain_up and "Connect" in (m.last_error or "")
        assert await run.state(signed) == SIGNED
        restart()
        entry = await run.until(signed, CONFIRMED)
        assert run.pub.metrics().consecutive_failures == 0 and entry.block is not None
        assert env.nonce() == 1

        # 2) down between send and receipt: the pending transaction dies with the node
        env.automine(False)
        await run.pub.submit(signed2)
        await run.until(signed2, SENT)
        await wait_for(lambda: env.nonce("pending") == 2)
        env.node.stop()
        await wait_for(lambda: run.pub.metrics().consecutive_failures >= 2)
        restart()  # automine is on again; the pool may have lost our transaction
        entry2 = await run.until(signed2, CONFIRMED)
        assert entry2.nonce == 1 and {t.nonce for t in entry2.txs} == {1}
    assert env.has_reported(sla) and env.has_reported(sla2)
    assert env.nonce() == 2  # each report landed exactly once
    assert len(run.events("report_sent")) == 2
    # the restarted node had lost the pending transaction: the very same one was re-broadcast
    assert [e["tx"] for e in run.events("report_rebroadcast")][:1] == [entry2.txs[0].tx_hash]


CHILD = r"""
import asyncio, os, sys
sys.path.insert(0, sys.argv[1])
from eth_account import Account
from slamon.chain import SignedReport
from slamon.config.oracle import OracleConfig
from slamon.oracle.publisher import Publisher
from slamon.store.sqlite import StateStore
from slamon.util.log import configure_logging, get_logger

async def main():
    configure_logging("debug", "json")
    cfg = OracleConfig.model_validate_json(open(sys.argv[2]).read())
    store = StateStore(sys.argv[3])
    await store.open()
    pub = Publisher(cfg, Account.from_key(os.environ["SLAMON_TEST_KEY"]), store, get_logger(),
                    poll_interval=0.05)
    if len(sys.argv) > 4:
        await pub.submit(SignedReport.from_json(open(sys.argv[4]).read()))
    await pub.run()

asyncio.run(main())
"""


def spawn_child(env: Env, out: Path, *args: str) -> subprocess.Popen[bytes]:
    script = env.tmp / "child.py"
    script.write_text(CHILD)
    cfg = env.tmp / "oracle.json"
    cfg.write_text(env.config().model_dump_json())
    with out.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, str(script), str(REPO_ROOT), str(cfg), str(env.tmp / "child.sqlite3"),
             *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SLAMON_TEST_KEY": SIGNER_KEY},
            start_new_session=True,
        )


def journal_rows(path: Path) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        try:
            return conn.execute("SELECT state, tx_hash, nonce, block FROM reports").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []


def events(out: Path, name: str) -> list[dict[str, Any]]:
    found = []
    for line in out.read_text().splitlines() if out.exists() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == name:
            found.append(record)
    return found


async def test_sigkill_between_send_and_receipt_does_not_send_twice(env: Env) -> None:
    sla = env.new_sla()
    signed = env.report(sla)
    report_file = env.tmp / "report.json"
    report_file.write_text(signed.to_json())
    db = env.tmp / "child.sqlite3"
    out1, out2 = env.tmp / "child1.log", env.tmp / "child2.log"
    env.automine(False)  # the transaction stays pending
    first = spawn_child(env, out1, str(report_file))
    second: subprocess.Popen[bytes] | None = None
    try:
        await wait_for(lambda: any(r[0] == SENT for r in journal_rows(db)), 30)
        await wait_for(lambda: env.nonce("pending") == 1)  # broadcast, not mined
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(5)
        ((state, tx_hash, nonce, _),) = journal_rows(db)
        assert (state, nonce) == (SENT, 0)

        # restart while the transaction is still pending: it is followed, not sent again
        second = spawn_child(env, out2)
        await wait_for(lambda: bool(events(out2, "report_following")), 30)
        assert events(out2, "publisher_started")[0]["sent"] == 1  # resumed from the journal
        await asyncio.sleep(1.0)
        assert env.nonce("pending") == 1 and env.nonce() == 0
        status = env.rpc("txpool_status")
        assert int(status["pending"], 16) == 1
        env.mine()
        await wait_for(lambda: journal_rows(db)[0][0] == CONFIRMED)
        ((state, final_hash, _, block),) = journal_rows(db)
        assert final_hash == tx_hash and block == env.w3.eth.block_number
        assert env.has_reported(sla) and env.nonce() == 1
        assert len(events(out1, "report_sent")) == 1  # only the first process ever sent
        assert events(out2, "report_sent") == [] and events(out2, "report_rebroadcast") == []
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


async def test_nonce_taken_behind_our_back_is_resynced(env: Env, store: StateStore) -> None:
    sla_a, sla_b, sla_c = env.new_sla(), env.new_sla(), env.new_sla()
    a, b, c = env.report(sla_a), env.report(sla_b), env.report(sla_c)
    acct = Account.from_key(SIGNER_KEY)

    def foreign_tx(nonce: int, tip: int) -> bytes:
        tx = {"type": 2, "chainId": chain_helpers.ANVIL_CHAIN_ID, "nonce": nonce, "to": SIGNER,
              "value": 1, "gas": 21_000, "maxFeePerGas": 50 * 10**9, "maxPriorityFeePerGas": tip}
        return bytes(acct.sign_transaction(tx).raw_transaction)

    async with Running(env, store) as run:
        await run.pub.submit(a)
        await run.until(a, CONFIRMED)
        assert run.pub.metrics().next_nonce == 1
        # 1) a mined transaction takes the tracker's next nonce: "nonce too low" -> resync
        env.w3.eth.send_raw_transaction(foreign_tx(1, 10**9))
        assert env.nonce() == 2
        await run.pub.submit(b)
        entry_b = await run.until(b, CONFIRMED)
        assert env.w3.eth.get_transaction(entry_b.tx_hash)["nonce"] == 2
        assert run.events("nonce_resync")

        # 2) our pending transaction is pushed out of the pool by another one, same nonce
        env.automine(False)
        await run.pub.submit(c)
        entry_c = await run.until(c, SENT)
        assert entry_c.nonce == 3
        env.w3.eth.send_raw_transaction(foreign_tx(3, 20 * 10**9))
        env.mine()
        env.automine(True)
        entry_c = await run.until(c, CONFIRMED)
        assert run.events("nonce_taken")
        assert env.w3.eth.get_transaction(entry_c.tx_hash)["nonce"] == 4
        assert [t.nonce for t in entry_c.txs] == [3, 4]
    assert env.has_reported(sla_a) and env.has_reported(sla_b) and env.has_reported(sla_c)
    assert env.nonce() == 5  # a, foreign, b, foreign, c: each report exactly once


async def test_stuck_transaction_is_replaced_with_same_nonce(env: Env, store: StateStore) -> None:
    sla = env.new_sla()
    signed = env.report(sla)
    env.automine(False)
    async with Running(env, store, replace_after=0.3) as run:
        await run.pub.submit(signed)
        await wait_for(lambda: bool(run.events("report_replaced")))
        entry = await run.entry(signed)
        assert len(entry.txs) >= 2 and {t.nonce for t in entry.txs} == {0}
        first, second = entry.txs[0], entry.txs[1]
        assert second.max_fee * 8 >= first.max_fee * 9
        assert second.priority_fee * 8 >= first.priority_fee * 9
        env.mine()
        entry = await run.until(signed, CONFIRMED)
    mined = [t.tx_hash for t in entry.txs if _receipt(env, t.tx_hash) is not None]
    assert mined == [entry.tx_hash]  # exactly one lands
    assert entry.tx_hash != first.tx_hash
    assert env.nonce() == 1 and env.has_reported(sla)
    assert run.pub.metrics().replaced_total >= 1


def _receipt(env: Env, tx_hash: str) -> Any:
    try:
        return env.w3.eth.get_transaction_receipt(tx_hash)
    except Exception:
        return None


async def test_base_fee_above_cap_waits_instead_of_overpaying(
    env: Env, store: StateStore
) -> None:
    sla = env.new_sla()
    signed = env.report(sla)
    cap_wei = 1000
    base = int(env.w3.eth.get_block("latest")["baseFeePerGas"])
    assert base > cap_wei
    async with Running(env, store, max_fee_gwei=cap_wei / 1e9, priority_fee_gwei=0.0) as run:
        await run.pub.submit(signed)
        await wait_for(lambda: len(run.events("fee_above_cap")) >= 2)
        assert run.pub.metrics().fee_capped and run.pub.metrics().backlog == 1
        entry = await run.entry(signed)
        assert entry.state == SIGNED and "above the cap" in (entry.reason or "")
        assert env.nonce("pending") == 0  # nothing sent

        # the base fee falls below the cap: now it is sent, within the cap
        env.rpc("anvil_setNextBlockBaseFeePerGas", hex(100))
        env.mine()
        entry = await run.until(signed, CONFIRMED)
        assert not run.pub.metrics().fee_capped
    tx = env.w3.eth.get_transaction(entry.tx_hash)
    assert tx["maxFeePerGas"] <= cap_wei
    assert env.nonce() == 1


async def test_final_contract_error_fails_without_retrying(env: Env, store: StateStore) -> None:
    sla = env.new_sla()
    bad = env.report(sla, policy_digest=b"\xbb" * 32)  # signed, but the wrong policy digest
    async with Running(env, store) as run:
        await run.pub.submit(bad)
        entry = await run.until(bad, FAILED)
        assert entry.reason == "PolicyMismatch"
        await asyncio.sleep(0.5)
        assert len(run.events("report_failed")) == 1  # not retried
        m = run.pub.metrics()
        assert m.backlog == 0 and m.states[FAILED] == 1 and "PolicyMismatch" in (m.last_error or "")
    assert env.nonce("pending") == 0  # never sent: the estimate decoded the error
    assert not env.has_reported(sla)


async def test_already_recorded_is_confirmed_without_sending(env: Env, store: StateStore) -> None:
    sla = env.new_sla()
    signed = env.report(sla)
    # someone (a relayer) already sent our signed report
    fn = env.h.contract.functions.submitReports([signed.report.as_tuple()], [signed.signature])
    env.h.send(fn, sender=1)
    async with Running(env, store) as run:
        await run.pub.submit(signed)
        entry = await run.until(signed, CONFIRMED)
    assert entry.reason == "already recorded" and entry.txs == ()
    assert env.nonce("pending") == 0


async def test_cancelled_rpc_call_leaves_later_calls_working(env: Env) -> None:
    """web3's AsyncHTTPProvider takes one process-wide threading.Lock through an
    executor on every request (ethereum/web3.py#3867): a call cancelled while that
    acquire is pending must not leave the lock held, or every later RPC call of the
    daemon hangs. The lock is held here the way a concurrent request holds it."""
    from web3._utils.http_session_manager import HTTPSessionManager

    from slamon.oracle.rpc import ChainClient

    client = ChainClient(env.node.url, env.h.contract.address, timeout=5.0)
    lock = HTTPSessionManager._lock
    try:
        assert await client.chain_id() == chain_helpers.ANVIL_CHAIN_ID
        lock.acquire()
        try:
            call = asyncio.ensure_future(client.block_number())
            await asyncio.sleep(0.2)  # the request now waits for the lock in a thread
            assert not call.done()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        finally:
            lock.release()
        async with asyncio.timeout(10):
            assert await client.chain_id() == chain_helpers.ANVIL_CHAIN_ID
    finally:
        await client.close()
    assert not lock.locked()
