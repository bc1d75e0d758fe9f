"""Relaying co-signers' reports (a real anvil, co-signers serving their outboxes through the
real attestation routes on loopback): the first signer in turn sends the whole period in one
transaction; refused, unreachable and contract-refused co-signer reports never hold up our
own; later signers wait for their turn and then find themselves recorded."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from eth_utils.crypto import keccak
from web3.logs import DISCARD

from slamon.chain import SignedReport
from slamon.config.oracle import KeyConfig, OracleConfig
from slamon.oracle.http import add_routes
from slamon.oracle.journal import CONFIRMED
from slamon.oracle.outbox import Outbox
from slamon.store.sqlite import StateStore

from . import chain_helpers
from .chain_helpers import free_port
from .test_publisher import (
    OTHER_KEYS,
    OTHERS,
    SIGNER,
    Env,
    Running,
    anvil_env,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from anvil_env(tmp_path)


@contextlib.asynccontextmanager
async def cosigner(env: Env, root: Path) -> AsyncIterator[tuple[str, Outbox]]:
    """A co-signer's attestation API on 127.0.0.1, serving ``root``'s outbox."""
    outbox = Outbox(root)
    cfg = OracleConfig(key=KeyConfig(dev_key_env="UNUSED"), chain_id=chain_helpers.ANVIL_CHAIN_ID,
                       contract=env.h.contract.address, mode="attest")
    app = web.Application()
    add_routes(app, outbox, cfg)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", outbox
    finally:
        await runner.cleanup()


def signed(env: Env, sla: bytes, key: str, **kw: Any) -> SignedReport:
    kw.setdefault("issued_at", int(time.time()))
    kw.setdefault("evidence_root", keccak(text=f"root-of-{key}"))
    return env.report(sla, key=key, **kw)


def period(env: Env, sla: bytes) -> Any:
    return env.h.contract.functions.getPeriod(sla, 0).call()


async def test_first_in_turn_sends_the_whole_period_in_one_transaction(
    env: Env, store: StateStore
) -> None:
    sla = env.new_sla(signers=[SIGNER, *OTHERS], quorum=3)
    label = "0x" + sla.hex()
    theirs = [signed(env, sla, k, sli_ppm=999_100 + i) for i, k in enumerate(OTHER_KEYS)]
    async with contextlib.AsyncExitStack() as stack:
        peers = [await stack.enter_async_context(cosigner(env, env.tmp / f"peer{i}"))
                 for i in range(3)]
        for (_, outbox), other in zip(peers[:2], theirs[:2], strict=True):
            outbox.write(label, other)
        ours = signed(env, sla, chain_helpers.ANVIL_KEYS[7])
        run = Running(env, store, cosigners=[url for url, _ in peers], relay_wait=30.0)
        async with run:
            assert await run.pub.submit(ours)
            # the third co-signer has not signed yet: the first in turn waits for it
            await wait_for(lambda: any("co-signers' reports" in str(e.get("reason"))
                                       for e in run.events("report_waiting")))
            assert env.nonce() == 0
            peers[2][1].write(label, theirs[2])
            entry = await run.until(ours, CONFIRMED)
    view = period(env, sla)
    assert view[3] is True and view[7] == 4  # settled over all four, in our transaction
    assert env.nonce() == 1
    (sent,) = run.events("report_sent")
    assert sent["relayed"] == OTHERS  # in signer-set order
    receipt = env.w3.eth.get_transaction_receipt(entry.tx_hash)
    accepted = env.h.contract.events.ReportAccepted().process_receipt(receipt, errors=DISCARD)
    assert sorted(e.args.signer for e in accepted) == sorted([SIGNER, *OTHERS])
    # the calldata is journaled: a rebroadcast after a restart is the same transaction
    assert entry.txs[-1].data == bytes(env.w3.eth.get_transaction(entry.tx_hash)["input"])


async def test_bad_or_missing_cosigner_reports_do_not_hold_ours(
    env: Env, store: StateStore
) -> None:
    sla = env.new_sla(signers=[SIGNER, *OTHERS], quorum=3)
    label = "0x" + sla.hex()
    async with contextlib.AsyncExitStack() as stack:
        (url_a, box_a), (url_b, box_b) = [
            await stack.enter_async_context(cosigner(env, env.tmp / f"peer{i}")) for i in range(2)]
        # a: signed under another policy (refused before sending); b: too few samples for
        # the contract (the whole batch would revert); c: nobody listening
        box_a.write(label, signed(env, sla, OTHER_KEYS[0], policy_digest=keccak(text="other")))
        box_b.write(label, signed(env, sla, OTHER_KEYS[1], valid=0, good=0))
        url_c = f"http://user:hunter2@127.0.0.1:{free_port()}"
        ours = signed(env, sla, chain_helpers.ANVIL_KEYS[7])
        async with Running(env, store, cosigners=[url_a, url_b, url_c], relay_wait=0.5) as run:
            assert await run.pub.submit(ours)
            entry = await run.until(ours, CONFIRMED)
    assert period(env, sla)[7] == 1 and env.has_reported(sla)
    (refused,) = run.events("cosigner_report_refused")
    assert refused["signer"] == OTHERS[0] and refused["reason"] == "policy_digest differs from ours"
    assert run.events("relay_refused")[0]["error"] == "TooFewSamples"
    unreachable = run.events("cosigner_unreachable")
    assert unreachable and all("hunter2" not in e["error"] for e in unreachable)
    assert "127.0.0.1" in unreachable[0]["error"]
    assert run.events("report_sent")[-1]["relayed"] == [] and entry.txs[-1].data is None


async def test_later_in_turn_waits_then_finds_itself_recorded(
    env: Env, store: StateStore
) -> None:
    # we are second in the signer set: our turn comes 2 x relay_wait after signing
    sla = env.new_sla(signers=[OTHERS[0], SIGNER, *OTHERS[1:]], quorum=3)
    label = "0x" + sla.hex()
    first = signed(env, sla, OTHER_KEYS[0])
    async with cosigner(env, env.tmp / "peer") as (url, box):
        box.write(label, first)
        ours = signed(env, sla, chain_helpers.ANVIL_KEYS[7])
        async with Running(env, store, cosigners=[url], relay_wait=1.0) as run:
            assert await run.pub.submit(ours)
            await wait_for(lambda: any("relay turn 1" in str(e.get("reason"))
                                       for e in run.events("report_waiting")))
            # the first in turn relays our report with its own
            env.h.send(env.h.contract.functions.submitReports(
                [first.report.as_tuple(), ours.report.as_tuple()],
                [first.signature, ours.signature]), sender=1)
            entry = await run.until(ours, CONFIRMED)
    assert entry.reason == "already recorded" and env.nonce() == 0
    assert run.events("report_sent") == []


async def test_later_in_turn_sends_what_the_first_did_not(env: Env, store: StateStore) -> None:
    sla = env.new_sla(signers=[OTHERS[0], SIGNER, *OTHERS[1:]], quorum=3)
    label = "0x" + sla.hex()
    async with cosigner(env, env.tmp / "peer") as (url, box):
        # the first signer is down; the third's report is served by its own API
        box.write(label, signed(env, sla, OTHER_KEYS[1]))
        ours = signed(env, sla, chain_helpers.ANVIL_KEYS[7])
        async with Running(env, store, cosigners=[url], relay_wait=0.5) as run:
            assert await run.pub.submit(ours)
            await run.until(ours, CONFIRMED)
    assert time.time() >= ours.report.issued_at + 1.0
    assert run.events("report_sent")[0]["relayed"] == [OTHERS[1]]
    assert period(env, sla)[7] == 2 and env.nonce() == 1


async def test_turns_end_by_the_middle_of_the_settlement_window(
    env: Env, store: StateStore
) -> None:
    """Second in turn with a relay_wait far longer than the window: it still sends, at the
    latest halfway between the period's end and its deadline."""
    sla = env.new_sla(window=30, signers=[OTHERS[0], SIGNER, *OTHERS[1:]], quorum=3)
    end, deadline = (int(x) for x in period(env, sla)[1:3])
    async with cosigner(env, env.tmp / "peer") as (url, _box):
        ours = signed(env, sla, chain_helpers.ANVIL_KEYS[7])
        async with Running(env, store, cosigners=[url], relay_wait=600.0, retry_max=1.0) as run:
            assert await run.pub.submit(ours)
            await run.until(ours, CONFIRMED, timeout=30)
    sent_at = env.w3.eth.get_block(
        env.w3.eth.get_transaction_receipt(run.events("report_sent")[0]["tx"])["blockNumber"]
    )["timestamp"]
    assert sent_at < (end + deadline) / 2 + 3 and time.time() >= (end + deadline) / 2


# ---------------------------------------------------------------------------------------------
# the pure checks
# ---------------------------------------------------------------------------------------------


def test_admit_names_what_is_wrong(env: Env) -> None:
    from slamon.oracle.cosigners import admit, parse

    sla = env.new_sla(signers=[SIGNER, *OTHERS], quorum=3)
    ours = signed(env, sla, chain_helpers.ANVIL_KEYS[7])
    good = signed(env, sla, OTHER_KEYS[0])
    signers = [SIGNER, *OTHERS]
    assert admit(ours, good, signers) is None
    assert admit(ours, good, [SIGNER]) == "signer not in the signer set"
    assert admit(ours, ours, signers) == "our own report"
    assert admit(ours, signed(env, sla, OTHER_KEYS[0], period_end=ours.report.period_end + 1),
                 signers) == "period_end differs from ours"
    other_chain = SignedReport.sign(good.report, OTHER_KEYS[0], 1, env.h.contract.address)
    assert admit(ours, other_chain, signers) == "another chain or contract"
    forged = SignedReport(good.report.replace(sli_ppm=0), good.signature, good.signer,
                          good.chain_id, good.contract)
    assert (admit(ours, forged, signers) or "").startswith("bad signature")
    # what a co-signer serves: a JSON list; entries that do not verify are dropped
    doc = good.to_json_dict()
    tampered = {**doc, "report": {**doc["report"], "sliPpm": 1}}
    assert parse([doc, tampered, "junk", {}]) == [good]
    with pytest.raises(ValueError):
        parse({"error": "x"})
