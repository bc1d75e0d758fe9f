"""Publishes journaled signed reports to the SLACompensation contract, exactly once.

One task, one nonce sequence, one report at a time (oldest first). Per report:

1. A ``sent`` entry (after a restart, or after an outage) is *followed* first: the receipt of
   every transaction hash recorded for it is looked up; a mined one is awaited to N
   confirmations. While the recorded nonce is still unused on-chain the transaction is left
   alone (re-broadcast unchanged if the node lost it, replaced with the *same nonce* and
   >= 12.5 % higher fees once ``replace_after`` has passed). Only when the chain's nonce moved
   past it without any of our hashes being mined (the nonce was taken by another transaction),
   or our transaction reverted, is the report sent again — after the checks below.
2. ``needsReport(slaId, periodId, signer)`` is asked before anything is sent. False: already
   reported by us or period settled -> confirmed ("already recorded"); period not finished ->
   retry later; settlement window closed (with a quorum: a period without one stays open for
   late reports) -> failed.
3. ``submitReports([report], [signature])``: gas = max(estimate x margin, estimate + settlement
   headroom) (the estimate also decodes the contract's custom errors: docs/contract.md, "What
   a daemon does"), EIP-1559 fees
   ``maxFee = min(cap, 2 x baseFee + priority)``; a base fee above the cap means wait, never
   overpay. The transaction is journaled (hash, nonce, fees) *before* it is broadcast.
   With ``cosigners`` configured the co-signers' signed reports go in the same call (see
   :mod:`slamon.oracle.cosigners`): signers take turns in signer-set order, so usually one
   transaction carries the whole period; its calldata is journaled too, so a rebroadcast after
   a restart is the very same transaction.

Connection and RPC errors back off exponentially with jitter (``retry_min`` .. ``retry_max``);
the journal keeps every report meanwhile, and :meth:`Publisher.metrics` shows the backlog.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn, Protocol

import aiohttp
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from slamon.chain.eip712 import SignedReport
from slamon.chain.tx import TxSigner
from slamon.config.oracle import OracleConfig
from slamon.oracle import cosigners
from slamon.oracle.journal import (
    CONFIRMED,
    SENT,
    SIGNED,
    Journal,
    JournalEntry,
    JournalKey,
    SentTx,
    StoreLike,
    domain_of,
)
from slamon.oracle.rpc import (
    FINAL_ERRORS,
    RETRY_ERRORS,
    SUCCESS_ERRORS,
    ChainClient,
    ChainUnavailable,
    ContractRevert,
    Head,
    Receipt,
    TxRejected,
)
from slamon.util.redact import redact_text, redact_url

GWEI = 10**9
#: gas a report may need beyond its estimate when it turns out to be the one that settles
#: the period (docs/benchmarks.md: a settling report costs ~15-40k more than a plain one)
SETTLE_HEADROOM = 100_000
#: a signer calls `settle` this long after the deadline times its place in the signer set
#: (the first at once): one transaction per period, not n racing ones
SETTLE_STAGGER = 30.0
#: how often the first signer in turn asks again for co-signers' reports it is missing
RELAY_POLL = 2.0
#: periods whose end is older than this are not looked at for settling any more, nor are
#: more than the SETTLE_RECENT reports confirmed last
SETTLE_HORIZON = 7 * 86_400
SETTLE_RECENT = 64
#: fee bump of a replacement: >= 12.5 % (geth wants 10 %, others 12.5 %)
BUMP_NUM, BUMP_DEN = 9, 8


class Log(Protocol):
    def debug(self, event: str, **kw: Any) -> Any: ...

    def info(self, event: str, **kw: Any) -> Any: ...

    def warning(self, event: str, **kw: Any) -> Any: ...

    def error(self, event: str, **kw: Any) -> Any: ...


@dataclass(slots=True)
class PublisherMetrics:
    """A snapshot for ``slamon_oracle_*`` metrics."""

    #: entries still to publish (signed + sent)
    backlog: int
    #: entries per journal state (signed, sent, confirmed, failed, skipped)
    states: dict[str, int]
    #: signer balance in wei (None until first read) and when it was read (wall clock)
    balance_wei: int | None
    balance_at: float | None
    #: wall-clock time of the last confirmed report (persisted in the journal)
    last_success: float | None
    last_error: str | None
    last_error_at: float | None
    #: RPC failures in a row (0 when the chain answers)
    consecutive_failures: int
    #: the base fee is above the configured cap: reports wait
    fee_capped: bool
    #: next nonce of the local tracker (None: will be read from the chain)
    next_nonce: int | None
    #: transactions broadcast / replacements / nonce resyncs since start
    sent_total: int
    replaced_total: int
    nonce_resyncs: int
    chain_up: bool


@dataclass(slots=True)
class _Stats:
    states: dict[str, int] = field(default_factory=dict)
    balance_wei: int | None = None
    balance_at: float | None = None
    balance_mono: float = -math.inf
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0
    fee_capped: bool = False
    sent_total: int = 0
    replaced_total: int = 0
    nonce_resyncs: int = 0
    chain_up: bool = False


class _Finished(Exception):
    """The entry reached a final state or was deferred: stop working on it for now."""


def _raw_bytes(signed: Any) -> bytes:
    if isinstance(signed, bytes | bytearray):
        return bytes(signed)
    raw = getattr(signed, "raw_transaction", None)
    if raw is None:
        raw = getattr(signed, "rawTransaction", None)
    if raw is None:
        raise TypeError("sign_transaction must return bytes or an object with raw_transaction")
    return bytes(raw)


def _bump(value: int) -> int:
    """``value`` raised by at least 12.5 % and at least 1 wei."""
    return max(value + 1, -(-value * BUMP_NUM // BUMP_DEN))


class Publisher:
    """Sends the journal's signed reports to the contract and follows them to confirmation.

    ``signer``: an object with ``.address`` and ``sign_transaction(dict)``; ``store``:
    the :class:`slamon.store.sqlite.StateStore` (opened); ``log``: a structlog-style
    logger. ``chain`` may be injected (tests); by default a :class:`ChainClient` on
    ``cfg.rpc_url`` is made.
    """

    def __init__(
        self,
        cfg: OracleConfig,
        signer: TxSigner,
        store: StoreLike,
        log: Log,
        *,
        clock: Callable[[], float] = time.time,
        chain: ChainClient | None = None,
        poll_interval: float = 1.0,
        idle_interval: float = 30.0,
        balance_interval: float = 60.0,
        max_attempts: int = 10,
        rng: Callable[[], float] = random.random,
        follow_slice: float = 5.0,
    ) -> None:
        if cfg.rpc_url is None and chain is None:
            raise ValueError("the publisher needs oracle.rpc_url")
        self.cfg = cfg
        self.signer = signer
        self.address = to_checksum_address(signer.address)
        self.log = log
        self.clock = clock
        self.journal = Journal(store, clock=clock, domain=domain_of(cfg.chain_id, cfg.contract))
        self.chain = chain if chain is not None else ChainClient(str(cfg.rpc_url), cfg.contract)
        self._own_chain = chain is None
        self.poll_interval = poll_interval
        self.idle_interval = idle_interval
        self.balance_interval = balance_interval
        self.max_attempts = max_attempts
        #: how long one entry's pending transaction is watched before the others get a turn
        self.follow_slice = follow_slice
        self._rng = rng
        self._cap = int(cfg.max_fee_gwei * GWEI)
        self._priority = int(cfg.priority_fee_gwei * GWEI)
        self._nonce: int | None = None
        self._deferred: dict[JournalKey, tuple[float, int]] = {}  # key -> (monotonic due, n)
        self._unknown_reverts: dict[JournalKey, int] = {}
        self._deadlines: dict[JournalKey, int] = {}
        #: (slaId, periodId) known settled: not asked about again
        self._settled: set[tuple[bytes, int]] = set()
        #: our pending `settle` transaction (hash, nonce, gas, max fee, priority, sent at)
        self._settle_tx: SentTx | None = None
        self._ranks: dict[bytes, int] = {}
        self._signers: dict[bytes, list[str]] = {}
        self._session: aiohttp.ClientSession | None = None
        #: co-signer problems already logged, per entry (each is logged once, not per poll)
        self._relay_noted: dict[JournalKey, set[str]] = {}
        self._settle_ctx: dict[str, Any] = {}
        self._wake: asyncio.Event | None = None
        self._chain_checked = False
        self._stats = _Stats()
        #: called (sla, period, tx hash, block) when a report transaction confirms
        self.on_confirmed: Callable[[str, int, str, int], None] | None = None

    # -- public API -----------------------------------------------------------------------------
    async def submit(self, signed: SignedReport, sla: str | None = None) -> bool:
        """Journal ``signed`` (no-op if this (sla, period, signer) is known) and wake the loop.
        ``sla``: the journal's SLA label (default: the on-chain id in hex)."""
        added = await self.journal.add_signed(signed, sla)
        await self._refresh_counts()
        if self._wake is not None:
            self._wake.set()
        return added

    def metrics(self) -> PublisherMetrics:
        s = self._stats
        states = dict(s.states)
        return PublisherMetrics(
            backlog=states.get(SIGNED, 0) + states.get(SENT, 0),
            states=states,
            balance_wei=s.balance_wei,
            balance_at=s.balance_at,
            last_success=s.last_success,
            last_error=s.last_error,
            last_error_at=s.last_error_at,
            consecutive_failures=s.failures,
            fee_capped=s.fee_capped,
            next_nonce=self._nonce,
            sent_total=s.sent_total,
            replaced_total=s.replaced_total,
            nonce_resyncs=s.nonce_resyncs,
            chain_up=s.chain_up,
        )

    async def run(self) -> None:
        """Publish until cancelled: resume the journal, then process entries as they come."""
        self._wake = asyncio.Event()
        await self.journal.ensure_schema()
        self._stats.last_success = await self.journal.last_success()
        await self._refresh_counts()
        self.log.info(
            "publisher_started",
            signer=self.address,
            contract=self.cfg.contract,
            chain_id=self.cfg.chain_id,
            rpc=redact_url(str(self.cfg.rpc_url)) if self.cfg.rpc_url else self.chain.url_for_logs,
            pending=self._stats.states.get(SIGNED, 0) + self._stats.states.get(SENT, 0),
            sent=self._stats.states.get(SENT, 0),
        )
        try:
            while True:
                self._wake.clear()  # a submit() from now on wakes the next idle wait
                try:
                    await self._check_chain()
                    await self._refresh_balance()
                    await self._pass()
                    self._chain_ok()
                    await self._settle_pass()
                except ChainUnavailable as exc:
                    await asyncio.sleep(self._on_chain_error(exc))
                    continue
                except Exception as exc:  # a bug or a store error: log it, keep the task alive
                    self.log.error("publisher_error", error=redact_text(repr(exc)),
                                   exc_info=True)
                    await asyncio.sleep(self._on_chain_error(ChainUnavailable(repr(exc))))
                    continue
                await self._idle()
        finally:
            await self.close_session()
            if self._own_chain:
                await self.chain.close()

    async def close_session(self) -> None:
        """Close the HTTP session co-signers are asked with (made again when needed)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run_once(self) -> None:
        """One pass over the pending entries (raises ChainUnavailable); for tools and tests."""
        await self.journal.ensure_schema()
        await self._check_chain()
        await self._pass()

    # -- loop -----------------------------------------------------------------------------------
    async def _idle(self) -> None:
        assert self._wake is not None
        now = time.monotonic()
        timeout = self.idle_interval
        if self._deferred:
            timeout = min(timeout, max(0.0, min(d for d, _ in self._deferred.values()) - now))
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=max(timeout, 0.01))
        finally:
            waiter.cancel()

    def _on_chain_error(self, exc: ChainUnavailable) -> float:
        s = self._stats
        s.failures += 1
        s.chain_up = False
        self._note_error(str(exc))
        self._chain_checked = False
        self._nonce = None  # the chain may have moved meanwhile: resync when back
        base = min(self.cfg.retry_max, self.cfg.retry_min * 2 ** min(s.failures - 1, 40))
        delay = float(max(self.cfg.retry_min, base * (0.5 + 0.5 * self._rng())))
        self.log.warning(
            "chain_unavailable",
            error=redact_text(str(exc)),
            consecutive_failures=s.failures,
            retry_in=round(delay, 3),
            backlog=s.states.get(SIGNED, 0) + s.states.get(SENT, 0),
        )
        return delay

    def _note_error(self, message: str) -> None:
        self._stats.last_error = redact_text(message)
        self._stats.last_error_at = self.clock()

    async def _check_chain(self) -> None:
        if self._chain_checked:
            return
        chain_id = await self.chain.chain_id()
        if chain_id != self.cfg.chain_id:
            # a wrong endpoint: nothing may be sent there; keep trying (it may be fixed)
            raise ChainUnavailable(
                f"the RPC endpoint serves chain {chain_id}, the config says {self.cfg.chain_id}"
            )
        self._chain_checked = True

    async def _refresh_counts(self) -> None:
        self._stats.states = await self.journal.counts()

    async def _refresh_balance(self) -> None:
        now = time.monotonic()
        if now - self._stats.balance_mono < self.balance_interval:
            return
        self._stats.balance_wei = await self.chain.balance(self.address)
        self._stats.balance_mono = now
        self._stats.balance_at = self.clock()

    async def _pass(self) -> None:
        entries = await self.journal.pending(self.address)
        live = {e.key for e in entries}
        for key in list(self._deferred):
            if key not in live:
                del self._deferred[key]
        for entry in entries:
            due = self._deferred.get(entry.key)
            if due is not None and due[0] > time.monotonic():
                continue
            try:
                try:
                    await self._process(entry)
                except ContractRevert as exc:  # a view call refused (e.g. UnknownSLA)
                    await self._on_revert(entry, exc)
                except TxRejected as exc:  # e.g. insufficient funds for the gas estimate
                    self._note_error(f"refused: {exc.message}")
                    self.log.error("report_tx_refused", **self._ctx(entry), error=exc.message)
                    await self._defer(entry, f"refused: {exc.message}")
            except _Finished:
                pass
            finally:
                await self._refresh_counts()

    # -- settling ---------------------------------------------------------------------------------
    async def _settle_pass(self) -> None:
        """Call ``settle`` for periods our report went into, once their deadline has passed.

        When a signer is down the n-th report never comes and a period with a quorum waits
        for somebody to call ``settle``; every daemon of the SLA does it, staggered by its
        place in the signer set (SETTLE_STAGGER apart), so usually one transaction settles
        it and the others find it settled. Only while no report waits (reports first), one
        ``settle`` transaction at a time; one that is not mined within ``replace_after`` is
        cancelled so that its nonce holds back no report.
        """
        if self._stats.states.get(SIGNED, 0) + self._stats.states.get(SENT, 0):
            return
        if self._settle_tx is not None and not await self._settle_followed():
            return
        head: Head | None = None
        horizon = self.clock() - SETTLE_HORIZON
        for entry in await self.journal.recent(CONFIRMED, SETTLE_RECENT):
            if entry.signed is None or entry.key.signer.lower() != self.address.lower():
                continue
            r = entry.signed.report
            key = (r.sla_id, r.period_id)
            if key in self._settled or r.period_end < horizon:
                continue
            period = await self.chain.get_period(r.sla_id, r.period_id)
            if period.settled:
                self._settled.add(key)
                continue
            head = head or await self.chain.head()
            wait = await self._rank(r.sla_id) * SETTLE_STAGGER
            if period.stalled or head.timestamp < period.deadline + wait:
                continue  # stalled: no quorum yet, a late report will settle or re-open it
            data = self.chain.settle_calldata(r.sla_id, r.period_id)
            try:
                estimate = await self.chain.estimate_gas(self.address, data)
            except ContractRevert as exc:
                if exc.name == "AlreadySettled":
                    self._settled.add(key)
                continue  # ReportWindowOpen, NoQuorum: not yet
            fees = self._fees(head.base_fee)
            if fees is None:
                return
            nonce = await self._next_nonce()
            gas = math.ceil(estimate * self.cfg.gas_margin)
            raw = self._sign(data, nonce, gas, *fees)
            try:
                await self.chain.send_raw(raw)
            except TxRejected as exc:
                self._nonce = None
                self.log.warning("settle_refused", sla=entry.key.sla, period=r.period_id,
                                 error=exc.message)
                return
            self._nonce = nonce + 1
            self._stats.sent_total += 1
            self._settle_tx = SentTx("0x" + keccak(raw).hex(), nonce, fees[0], fees[1], gas,
                                     self.clock())
            self._settle_ctx = {"sla": entry.key.sla, "period": r.period_id}
            self.log.info("settle_sent", **self._settle_ctx, tx=self._settle_tx.tx_hash,
                          nonce=nonce, late_by=head.timestamp - period.deadline)
            return

    async def _settle_followed(self) -> bool:
        """Whether our pending ``settle`` transaction is out of the way (mined or cancelled)."""
        tx = self._settle_tx
        assert tx is not None
        receipt = await self.chain.receipt(tx.tx_hash)
        if receipt is not None:
            event = "settle_confirmed" if receipt.status == 1 else "settle_reverted"
            self.log.info(event, **self._settle_ctx, tx=tx.tx_hash, block=receipt.block_number)
            self._settle_tx = None
            return True
        if await self.chain.nonce(self.address, "latest") > tx.nonce:
            self._settle_tx = None  # our cancel (or another transaction) took the nonce
            return True
        if self.clock() - tx.sent_at >= self.cfg.replace_after:
            head = await self.chain.head()
            await self._cancel(self._settle_ctx, tx, head.base_fee)
            self._settle_tx = replace(tx, sent_at=self.clock())
        return False

    async def _rank(self, sla_id: bytes) -> int:
        """Our place in the SLA's signer set (0: first), cached with the set."""
        rank = self._ranks.get(sla_id)
        if rank is None:
            view = await self.chain.get_sla(sla_id)
            signers: list[str] = [to_checksum_address(str(s)) for s in view[9]]
            self._signers[sla_id] = signers
            rank = signers.index(self.address) if self.address in signers else len(signers)
            self._ranks[sla_id] = rank
        return rank

    # -- relaying co-signers' reports -----------------------------------------------------------
    async def _relayed(self, entry: JournalEntry) -> list[SignedReport]:
        """The co-signers' reports to send with ours (in signer-set order), or wait for our
        turn (raises _Finished). Without ``cosigners`` configured: none, at once.

        The first signer in turn waits up to ``relay_wait`` after signing for every
        co-signer's report and sends them with its own; the k-th in turn (k >= 1) waits
        (k + 1) x ``relay_wait``, and then usually finds its own report already recorded.
        Nobody waits past the middle of the period's settlement window.
        """
        if not self.cfg.cosigners:
            return []
        own = self._report(entry)
        r = own.report
        rank = await self._rank(r.sla_id)
        signers = self._signers[r.sla_id]
        now = self.clock()
        turn = r.issued_at + (rank + 1 if rank else 0) * self.cfg.relay_wait
        gather_until = r.issued_at + self.cfg.relay_wait
        deadline = await self._deadline(entry)
        if deadline is not None:
            # a long signer set or a short window: everybody's turn comes by mid-window
            mid = (r.period_end + deadline) / 2
            turn, gather_until = min(turn, mid), min(gather_until, mid)
        if now < turn:
            await self._defer(entry, f"relay turn {rank}: waiting for the signers before us",
                              turn - now)
        if self._session is None:
            self._session = cosigners.new_session()
        found, errors = await cosigners.fetch(self._session, self.cfg.cosigners, entry.key.sla,
                                              r.period_id)
        noted = self._relay_noted.setdefault(entry.key, set())
        for error in errors:
            if error not in noted:
                noted.add(error)
                self.log.warning("cosigner_unreachable", **self._ctx(entry), error=error)
        admitted: dict[str, SignedReport] = {}
        for other in found:
            why = cosigners.admit(own, other, signers)
            if why is None:
                admitted.setdefault(to_checksum_address(other.signer), other)
            elif why != "our own report" and f"{other.signer} {why}" not in noted:
                noted.add(f"{other.signer} {why}")
                self.log.warning("cosigner_report_refused", **self._ctx(entry),
                                 signer=other.signer, reason=why)
        missing = len(signers) - 1 - len(admitted)
        if missing > 0 and rank == 0 and now < gather_until:
            await self._defer(entry, f"waiting for {missing} co-signers' reports",
                              min(RELAY_POLL, gather_until - now))
        out = []
        for signer in signers:
            found_one = admitted.get(signer)
            if found_one is not None and await self.chain.needs_report(r.sla_id, r.period_id,
                                                                        signer):
                out.append(found_one)
        return out

    async def _relay_calldata(
        self, entry: JournalEntry, relayed: list[SignedReport]
    ) -> tuple[bytes, int] | None:
        """Calldata and gas estimate of our report with ``relayed``; None if the contract
        would refuse the batch (then our report goes alone)."""
        own = self._report(entry)
        batch = [own, *relayed]
        data = self.chain.submit_calldata([b.report for b in batch], [b.signature for b in batch])
        try:
            return data, await self.chain.estimate_gas(self.address, data)
        except ContractRevert as exc:
            self.log.warning("relay_refused", **self._ctx(entry), error=exc.name,
                             relayed=[o.signer for o in relayed])
            return None

    # -- one entry ------------------------------------------------------------------------------
    async def _process(self, entry: JournalEntry) -> None:
        while True:
            if entry.state == SENT and entry.txs and await self._follow(entry):
                return
            await self._check_deadline(entry)
            if entry.attempts >= self.max_attempts:
                await self._fail(entry, f"gave up after {entry.attempts} transactions")
                return
            entry = await self._send_fresh(entry)

    async def _deadline(self, entry: JournalEntry) -> int | None:
        """The period's settlement deadline (cached until it passes: only a late window
        moves it), None if unknown."""
        deadline = self._deadlines.get(entry.key)
        if deadline is None:
            r = self._report(entry).report
            try:
                deadline = (await self.chain.get_period(r.sla_id, r.period_id)).deadline
            except ContractRevert:
                return None  # e.g. UnknownSLA: the send path reports it
            self._deadlines[entry.key] = deadline
        return deadline

    async def _check_deadline(self, entry: JournalEntry) -> None:
        """At the settlement deadline stop trying this period, with the reason recorded.

        The contract refuses reports in blocks at or after the deadline, so any further
        transaction would only burn gas; a transaction of ours still pending would hold
        its nonce and block every later report, so it is cancelled (replaced by a
        zero-value transfer to ourselves at the same nonce) before the entry fails.
        Except for a period without a quorum by its deadline (stalled): the contract takes
        its reports in a late window, so the report is still wanted and goes on.
        """
        deadline = await self._deadline(entry)
        if deadline is None:
            return
        head = await self.chain.head()
        if head.timestamp + 1 < deadline:  # the next block can still carry the report
            return
        self._deadlines.pop(entry.key, None)  # a late window moves it: read it again
        r = self._report(entry).report
        try:
            period = await self.chain.get_period(r.sla_id, r.period_id)
        except ContractRevert:
            period = None
        if period is not None and not period.settled and (
                period.stalled or head.timestamp + 1 < period.deadline):
            if not period.stalled:
                self._deadlines[entry.key] = period.deadline
            return
        if entry.txs and await self._find_receipt(entry.txs) is None:
            await self._cancel(self._ctx(entry), entry.txs[-1], head.base_fee)
        await self._fail(entry, f"settlement deadline {deadline} passed")

    async def _cancel(self, ctx: dict[str, Any], last: SentTx, base_fee: int) -> None:
        """Free ``last``'s nonce: same nonce, bumped fees, no call; failures are logged."""
        fees = self._bumped(last, base_fee)
        if fees is None:
            self.log.warning("report_cancel_capped", **ctx, nonce=last.nonce,
                             cap=self._cap, base_fee=base_fee)
            return
        max_fee, prio = fees
        tx = {
            "type": 2, "chainId": self.cfg.chain_id, "nonce": last.nonce,
            "to": self.address, "value": 0, "data": "0x", "gas": 21_000,
            "maxFeePerGas": max_fee, "maxPriorityFeePerGas": prio,
        }
        raw = _raw_bytes(self.signer.sign_transaction(tx))
        try:
            await self.chain.send_raw(raw)
        except TxRejected as exc:
            self.log.warning("report_cancel_refused", **ctx, nonce=last.nonce,
                             error=exc.message)
            return
        self._stats.sent_total += 1
        self._nonce = None  # the cancel may or may not win: read the nonce again
        self.log.info("report_cancelled", **ctx, nonce=last.nonce,
                      tx="0x" + keccak(raw).hex())

    def _ctx(self, entry: JournalEntry) -> dict[str, Any]:
        return {"sla": entry.key.sla, "period": entry.key.period}

    def _report(self, entry: JournalEntry) -> SignedReport:
        if entry.signed is None:  # pragma: no cover - pending() never returns skipped rows
            raise _Finished()
        return entry.signed

    async def _defer(
        self, entry: JournalEntry, reason: str, delay: float | None = None
    ) -> NoReturn:
        _, n = self._deferred.get(entry.key, (0.0, 0))
        if delay is None:
            delay = self.cfg.retry_min * 2 ** min(n, 40)
        delay = min(self.cfg.retry_max, max(self.cfg.retry_min, delay))
        self._deferred[entry.key] = (time.monotonic() + delay, n + 1)
        await self.journal.note(entry.key, reason)
        self.log.info("report_waiting", **self._ctx(entry), reason=reason, retry_in=round(delay, 3))
        raise _Finished()

    def _chain_ok(self) -> None:
        """The chain answered: the failure streak is over."""
        self._stats.failures = 0
        self._stats.chain_up = True

    def _done(self, entry: JournalEntry) -> None:
        self._deferred.pop(entry.key, None)
        self._unknown_reverts.pop(entry.key, None)
        self._relay_noted.pop(entry.key, None)

    async def _confirm_recorded(self, entry: JournalEntry, reason: str) -> NoReturn:
        self._done(entry)
        # before the journal says confirmed: whoever reads both sees them agree
        self._chain_ok()
        await self.journal.mark_confirmed(entry.key, None, reason=reason)
        self._stats.last_success = self.clock()
        self.log.info("report_confirmed", **self._ctx(entry), reason=reason)
        raise _Finished()

    async def _fail(self, entry: JournalEntry, reason: str) -> NoReturn:
        self._done(entry)
        await self.journal.mark_failed(entry.key, reason)
        self._note_error(f"report {entry.key.sla}/{entry.key.period} failed: {reason}")
        self.log.error("report_failed", **self._ctx(entry), reason=reason)
        raise _Finished()

    async def _not_needed(self, entry: JournalEntry) -> NoReturn:
        """``needsReport`` said no: find out why (always raises _Finished)."""
        r = self._report(entry).report
        if await self.chain.has_reported(r.sla_id, r.period_id, self.address):
            await self._confirm_recorded(entry, "already recorded")
        try:
            period = await self.chain.get_period(r.sla_id, r.period_id)
        except ContractRevert as exc:
            await self._fail(entry, exc.name)
        if period.settled:
            await self._confirm_recorded(entry, "already recorded: period settled")
        head = await self.chain.head()
        if head.timestamp < period.end:
            await self._defer(entry, "PeriodNotFinished", float(period.end - head.timestamp))
        if head.timestamp > period.deadline and not period.stalled:
            await self._fail(entry, "SettlementWindowClosed")
        await self._defer(entry, "needsReport false")

    async def _on_revert(self, entry: JournalEntry, exc: ContractRevert) -> NoReturn:
        """A decoded revert of ``submitReports`` (from the gas estimate): always raises."""
        if exc.name in SUCCESS_ERRORS:
            await self._confirm_recorded(entry, f"already recorded ({exc.name})")
        if exc.name in RETRY_ERRORS:
            await self._defer(entry, exc.name)
        if exc.name in FINAL_ERRORS:
            await self._fail(entry, exc.name)
        n = self._unknown_reverts.get(entry.key, 0) + 1
        self._unknown_reverts[entry.key] = n
        if n >= 5:
            await self._fail(entry, f"revert {exc}")
        self._note_error(f"unexpected revert {exc}")
        await self._defer(entry, f"unexpected revert {exc}")

    def _fees(self, base_fee: int) -> tuple[int, int] | None:
        """(maxFeePerGas, maxPriorityFeePerGas), or None when the base fee is above the cap."""
        if base_fee > self._cap:
            return None
        max_fee = min(self._cap, 2 * base_fee + self._priority)
        return max_fee, min(self._priority, max_fee)

    def _bumped(self, last: SentTx, base_fee: int) -> tuple[int, int] | None:
        """Replacement fees (>= 12.5 % above ``last`` on both), or None if the cap forbids."""
        need_max, need_prio = _bump(last.max_fee), _bump(last.priority_fee)
        prio = max(need_prio, self._priority)
        max_fee = min(self._cap, max(need_max, 2 * base_fee + prio))
        if max_fee < need_max or prio > max_fee:
            return None
        return max_fee, prio

    def _sign(self, data: bytes, nonce: int, gas: int, max_fee: int, prio: int) -> bytes:
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.cfg.chain_id,
            "nonce": nonce,
            "to": self.chain.address,
            "value": 0,
            "data": "0x" + data.hex(),
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": prio,
        }
        return _raw_bytes(self.signer.sign_transaction(tx))

    def _calldata(self, entry: JournalEntry) -> bytes:
        signed = self._report(entry)
        return self.chain.submit_calldata([signed.report], [signed.signature])

    async def _next_nonce(self, resync: bool = False) -> int:
        if self._nonce is None or resync:
            if resync:
                self._stats.nonce_resyncs += 1
            self._nonce = await self.chain.nonce(self.address, "pending")
        return self._nonce

    async def _send_fresh(self, entry: JournalEntry) -> JournalEntry:
        """Check, estimate, price, journal and broadcast a new transaction for ``entry``;
        returns the entry as journaled (``sent``), or raises _Finished."""
        r = self._report(entry).report
        if not await self.chain.needs_report(r.sla_id, r.period_id, self.address):
            await self._not_needed(entry)
        relayed = await self._relayed(entry)
        batch = await self._relay_calldata(entry, relayed) if relayed else None
        if batch is not None:
            data, estimate = batch
        else:
            relayed = []
            data = self._calldata(entry)
            try:
                estimate = await self.chain.estimate_gas(self.address, data)
            except ContractRevert as exc:
                await self._on_revert(entry, exc)
        # the estimate prices the report as it would land now; by the time it is mined it may
        # be the n-th one and settle the period (median, payout, fresh slots): never less
        # than that headroom (an unused gas limit costs nothing)
        gas = max(math.ceil(estimate * self.cfg.gas_margin), estimate + SETTLE_HEADROOM)
        head = await self.chain.head()
        fees = self._fees(head.base_fee)
        if fees is None:
            self._stats.fee_capped = True
            reason = f"base fee {head.base_fee} wei above the cap {self._cap} wei"
            self._note_error(reason)
            self.log.warning("fee_above_cap", **self._ctx(entry), base_fee=head.base_fee,
                             cap=self._cap)
            await self._defer(entry, reason)
        self._stats.fee_capped = False
        max_fee, prio = fees
        resync = False
        for _ in range(3):
            nonce = await self._next_nonce(resync)
            raw = self._sign(data, nonce, gas, max_fee, prio)
            tx = SentTx("0x" + keccak(raw).hex(), nonce, max_fee, prio, gas, self.clock(),
                        data if relayed else None)
            await self.journal.mark_sent(entry.key, tx)  # before the broadcast: see journal.py
            self._nonce = nonce + 1
            try:
                await self.chain.send_raw(raw)
            except TxRejected as exc:
                if exc.kind != "already_known":
                    await self.journal.forget_tx(entry.key, tx.tx_hash)
                    if exc.kind in ("nonce_too_low", "underpriced"):
                        self.log.warning("nonce_resync", **self._ctx(entry), nonce=nonce,
                                         error=exc.message)
                        resync = True
                        continue
                    self._nonce = None
                    self._note_error(f"transaction refused: {exc.message}")
                    self.log.error("report_tx_refused", **self._ctx(entry), nonce=nonce,
                                   error=exc.message)
                    await self._defer(entry, f"transaction refused: {exc.message}")
            self._stats.sent_total += 1
            self.log.info("report_sent", **self._ctx(entry), tx=tx.tx_hash, nonce=nonce,
                          gas=gas, max_fee=max_fee, priority_fee=prio,
                          **({"relayed": [o.signer for o in relayed]} if self.cfg.cosigners
                             else {}))
            updated = await self.journal.get(entry.key)
            assert updated is not None
            return updated
        self._nonce = None
        await self._defer(entry, "no usable nonce after 3 resyncs")

    async def _find_receipt(self, txs: tuple[SentTx, ...] | list[SentTx]) -> Receipt | None:
        for tx in reversed(txs):
            receipt = await self.chain.receipt(tx.tx_hash)
            if receipt is not None:
                return receipt
        return None

    async def _follow(self, entry: JournalEntry) -> bool:
        """Wait for one of the entry's transactions to be mined, replacing a stuck one.
        True: finished (confirmed); False: nothing of ours will be mined, send afresh."""
        # the latest nonce and its replacements: an earlier nonce's transaction that reverted
        # is history, not something to follow again
        nonce = entry.txs[-1].nonce
        txs = [tx for tx in entry.txs if tx.nonce == nonce]
        next_replace = txs[-1].sent_at + self.cfg.replace_after
        next_rebroadcast = 0.0
        slice_end = time.monotonic() + self.follow_slice
        self.log.info("report_following", **self._ctx(entry), tx=txs[-1].tx_hash, nonce=nonce,
                      txs=len(txs))
        while True:
            receipt = await self._find_receipt(txs)
            if receipt is None:
                mined_nonce = await self.chain.nonce(self.address, "latest")
                if mined_nonce > nonce:
                    receipt = await self._find_receipt(txs)  # mined between the two reads?
                    if receipt is None:
                        self._stats.nonce_resyncs += 1
                        self._nonce = None
                        self.log.warning("nonce_taken", **self._ctx(entry), nonce=nonce,
                                         chain_nonce=mined_nonce)
                        return False
            if receipt is not None:
                done = await self._await_confirmations(entry, receipt)
                if done is not None:
                    return done
                continue  # reorganised away: follow again
            if time.monotonic() >= slice_end:
                # not mined yet: let the other SLAs' entries have their turn (one stuck
                # transaction must not hold the whole publisher); replacement times come
                # from the journal, so following resumes where it stopped
                await self._check_deadline(entry)
                _, n = self._deferred.get(entry.key, (0.0, 0))
                self._deferred[entry.key] = (time.monotonic() + self.poll_interval, n)
                raise _Finished()
            last = txs[-1]
            now = self.clock()
            if now >= next_rebroadcast and not await self.chain.transaction_known(last.tx_hash):
                await self._rebroadcast(entry, last)
                next_rebroadcast = now + min(self.cfg.replace_after, 15.0)
            elif self.clock() >= next_replace:
                replacement = await self._replace(entry, last)
                if replacement is not None:
                    txs.append(replacement)
                next_replace = self.clock() + self.cfg.replace_after
            await asyncio.sleep(self.poll_interval)

    async def _rebroadcast(self, entry: JournalEntry, tx: SentTx) -> None:
        """The node does not know our pending transaction (restarted, evicted, or the first
        broadcast never arrived): send the very same transaction again (same hash)."""
        raw = self._sign(tx.data or self._calldata(entry), tx.nonce, tx.gas, tx.max_fee,
                         tx.priority_fee)
        try:
            await self.chain.send_raw(raw)
        except TxRejected as exc:
            self.log.info("rebroadcast_refused", **self._ctx(entry), tx=tx.tx_hash,
                          nonce=tx.nonce, error=exc.message)
            return
        self.log.info("report_rebroadcast", **self._ctx(entry), tx=tx.tx_hash, nonce=tx.nonce)

    async def _replace(self, entry: JournalEntry, last: SentTx) -> SentTx | None:
        head = await self.chain.head()
        fees = self._bumped(last, head.base_fee)
        if fees is None:
            self._stats.fee_capped = True
            self._note_error("stuck transaction: the fee cap prevents a replacement")
            self.log.warning("replacement_capped", **self._ctx(entry), tx=last.tx_hash,
                             nonce=last.nonce, max_fee=last.max_fee, cap=self._cap,
                             base_fee=head.base_fee)
            return None
        max_fee, prio = fees
        raw = self._sign(last.data or self._calldata(entry), last.nonce, last.gas, max_fee, prio)
        tx = SentTx("0x" + keccak(raw).hex(), last.nonce, max_fee, prio, last.gas, self.clock(),
                    last.data)
        await self.journal.mark_sent(entry.key, tx)
        try:
            await self.chain.send_raw(raw)
        except TxRejected as exc:
            if exc.kind != "already_known":
                await self.journal.forget_tx(entry.key, tx.tx_hash)
                self.log.warning("replacement_refused", **self._ctx(entry), nonce=last.nonce,
                                 error=exc.message)
                return None
        self._stats.replaced_total += 1
        self._stats.sent_total += 1
        self.log.info("report_replaced", **self._ctx(entry), tx=tx.tx_hash, replaces=last.tx_hash,
                      nonce=last.nonce, max_fee=max_fee, priority_fee=prio)
        return tx

    async def _await_confirmations(self, entry: JournalEntry, receipt: Receipt) -> bool | None:
        """True: confirmed; False: reverted (send afresh after the checks); None: reorganised."""
        needed = max(self.cfg.confirmations, 1)
        while True:
            head = await self.chain.block_number()
            if head >= receipt.block_number + needed - 1:
                again = await self.chain.receipt(receipt.tx_hash)
                if again is None or again.block_hash != receipt.block_hash:
                    self.log.warning("report_tx_reorged", **self._ctx(entry), tx=receipt.tx_hash)
                    return None
                break
            await asyncio.sleep(self.poll_interval)
        if receipt.status != 1:
            self.log.warning("report_tx_reverted", **self._ctx(entry), tx=receipt.tx_hash,
                             block=receipt.block_number, gas_used=receipt.gas_used)
            self._nonce = None
            return False
        self._done(entry)
        self._chain_ok()
        reason = "late: period already settled" if receipt.late else None
        await self.journal.mark_confirmed(entry.key, receipt.block_number,
                                          tx_hash=receipt.tx_hash, reason=reason)
        self._stats.last_success = self.clock()
        self.log.info("report_confirmed", **self._ctx(entry), tx=receipt.tx_hash,
                      block=receipt.block_number, gas_used=receipt.gas_used,
                      confirmations=self.cfg.confirmations, late=receipt.late)
        if self.on_confirmed is not None:
            self.on_confirmed(entry.key.sla, entry.key.period, receipt.tx_hash,
                              receipt.block_number)
        return True


__all__ = ["Publisher", "PublisherMetrics", "TxSigner"]
