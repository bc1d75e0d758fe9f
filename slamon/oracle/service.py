"""Closed SLA periods -> signed reports -> outbox, and (mode chain) the publisher.

The tracker closes a period and hands it here. Closing and signing are not one
transaction, so on start-up (and every minute) closed periods without a report
are looked for and signed: a crash between the two never loses a report, and
the outbox and journal make signing twice harmless (same key, same report).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from slamon.config.root import Config
from slamon.config.sla import Sla
from slamon.config.slo import Slo
from slamon.oracle.builder import ReportBuildError, build_report, period_base_for
from slamon.oracle.keys import Signer, load_signer
from slamon.oracle.onchain import (
    Mismatch,
    OnchainSla,
    OracleStartError,
    check_onchain_sla,
    parse_view,
)
from slamon.oracle.outbox import Outbox, OutboxError, domain_outbox_dir
from slamon.sla.policy import policy_digest_for
from slamon.sla.result import PeriodResult
from slamon.sla.tracker import Policy, parse_policy
from slamon.store.base import ClosedPeriod, Store
from slamon.util.events import Event, EventBus, EventKind

#: how often closed periods without a report are looked for
BACKFILL_EVERY = 60.0
#: how many of the latest closed periods per SLA the backfill looks at
BACKFILL_DEPTH = 50
#: the mismatches an edit of the SLA's policy makes until the chain registers it
_POLICY_FIELDS = frozenset({"policy_digest", "objective_ppm", "min_samples"})


class OracleService:
    def __init__(
        self,
        config: Config,
        store: Store,
        log: Any,
        *,
        events: EventBus | None = None,
        config_dir: str | Path | None = None,
    ) -> None:
        assert config.oracle is not None
        self.config = config
        self.cfg = config.oracle
        self.store = store
        self.log = log
        self.events = events
        self.config_dir = config_dir
        self.signer: Signer | None = None
        self.outbox = Outbox(domain_outbox_dir(config))
        self.publisher: Any = None
        #: (SLA, policy digest) -> slamon's id of the contract's first period, once the
        #: on-chain SLA was found to agree with that policy
        self._bases: dict[tuple[str, bytes], int] = {}
        #: the policies the tracker holds per SLA (those of its unclosed periods and of the
        #: last closed one): a period is signed under the policy it was judged by, which
        #: after an edit is not the config's
        self.policies: Callable[[str], Sequence[Policy]] = lambda sla_id: ()
        #: per SLA: the on-chain SLA once read, and the fields that differ from the config
        self.onchain: dict[str, OnchainSla] = {}
        self.mismatches: dict[str, list[Mismatch]] = {}
        self._task: asyncio.Task[None] | None = None
        self._backfill_task: asyncio.Task[None] | None = None
        self.signed_total = 0
        self.skipped_total = 0
        self.errors_total = 0

    # -- lifecycle --------------------------------------------------------
    def load_key(self) -> None:
        """Raises KeyLoadError with a message for the user (never the key)."""
        self.signer = load_signer(self.cfg.key, log=self.log, base_dir=self.config_dir,
                                  chain_id=self.cfg.chain_id)

    async def start(self) -> None:
        if self.signer is None:
            self.load_key()
        assert self.signer is not None
        if self.cfg.mode == "chain":
            from slamon.oracle.publisher import Publisher

            self.publisher = Publisher(self.cfg, self.signer, self.store, self.log)
            await self.check_at_start()
            self.publisher.on_confirmed = self._confirmed
            await self.publisher.journal.ensure_schema()
            self._task = asyncio.create_task(self.publisher.run(), name="publisher")
        self._backfill_task = asyncio.create_task(self._backfill_loop(), name="oracle-backfill")
        self.log.info(
            "oracle_started", mode=self.cfg.mode, signer=self.signer.address,
            contract=self.cfg.contract, chain_id=self.cfg.chain_id,
        )

    async def stop(self) -> None:
        for task in (self._backfill_task, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                await self.publisher.chain.close()

    def apply_config(self, config: Config) -> None:
        self.config = config
        if config.oracle is not None:
            self.cfg = config.oracle
        # the digest or schedule may have changed: check the chain again before signing
        self._bases.clear()

    # -- reporting --------------------------------------------------------
    def _reported(self, sla: Sla) -> bool:
        return self.cfg.slas is None or sla.id in self.cfg.slas

    def _onchain_id(self, sla: Sla) -> bytes:
        """The contract's id: derived from the provider and the SLA's name."""
        if self.cfg.provider is None:
            return sla.onchain_id_bytes
        from slamon.chain.tx import onchain_sla_id

        return onchain_sla_id(self.cfg.provider, sla.onchain_id_bytes)

    def _slo(self, sla: Sla) -> Slo:
        return next(s for s in self.config.slos if s.id == sla.slo)

    def _judged_by(self, sla: Sla, digest: bytes | None,
                   record: ClosedPeriod | None = None) -> tuple[Sla, Slo, bytes]:
        """The SLA, SLO and digest of the policy with this digest (None: of the SLA's oldest
        unclosed period): one the tracker holds, else the one `record` (a closed period)
        kept, else the config's."""
        held = self.policies(sla.id)
        for p in held:
            if digest is None or p.digest == digest:
                return p.sla, p.slo, p.digest
        if record is not None and record.policy is not None:
            try:
                kept = parse_policy(record.policy)
            except ValueError as exc:
                self.log.warning("period_policy_unreadable", sla=sla.id, period=record.period,
                                 reason=str(exc))
            else:
                if kept.digest == record.policy_digest:
                    return kept.sla, kept.slo, kept.digest
        slo = self._slo(sla)
        return sla, slo, policy_digest_for(sla, slo, self.config)

    async def _read_onchain(self, sla: Sla) -> Any:
        """getSLA's view; raises on an RPC failure or an unregistered SLA (UnknownSLA)."""
        return await self.publisher.chain.get_sla(self._onchain_id(sla))

    def _check(self, sla: Sla, slo: Slo, digest: bytes, view: Any) -> list[Mismatch]:
        """Compare the on-chain SLA with a policy of it (the config's, or the one a period
        was judged by); record, log and expose mismatches."""
        assert self.signer is not None
        found = check_onchain_sla(
            view, sla=sla, slo=slo, cfg=self.cfg, signer=self.signer.address,
            policy_digest=digest,
        )
        self.onchain[sla.id] = parse_view(view)
        before = self.mismatches.get(sla.id)
        self.mismatches[sla.id] = found
        if found != before:  # one line per change, not one per backfill round
            for m in found:
                self.log.error("oracle_sla_mismatch", sla=sla.id, field=m.field,
                               onchain=m.onchain, config=m.config)
        return found

    async def check_at_start(self) -> None:
        """Check every reported SLA against the chain now, if the chain answers.

        A mismatch (the key not among the signers included) stops start-up with a
        message; an unreachable chain only defers the check to the first signature.
        One kind of mismatch does not: the open period judged by an edit of the SLA that
        the chain does not hold yet, while the chain's digest is one this daemon judged
        earlier periods by. That is the documented course of an edit (it is signed again
        once the SLA is registered with it); refusing to start would stop the probing of
        every target, and leave the other SLAs' periods without evidence, until then. The
        SLA is held (not signed) and the mismatch logged, as at run time.
        """
        problems: list[str] = []
        for config_sla in self.config.slas:
            if not self._reported(config_sla):
                continue
            # the policy of the period open now (an edit reaches the periods after it)
            sla, slo, digest = self._judged_by(config_sla, None)
            try:
                view = await self._read_onchain(sla)
            except Exception as exc:  # unreachable or not registered yet: check later
                self.log.warning("oracle_sla_check_deferred", sla=sla.id,
                                 reason=str(exc)[:200])
                continue
            found = self._check(sla, slo, digest, view)
            if found and await self._edit_pending(sla.id, found):
                self.log.warning(
                    "oracle_sla_edit_unregistered", sla=sla.id,
                    onchain="0x" + self.onchain[sla.id].policy_digest.hex(),
                    config="0x" + digest.hex(),
                    reason="periods under the edited policy are not signed until the SLA "
                           "is registered with its digest")
                continue
            for m in found:
                if m.field == "signer":
                    problems.append(f"sla {sla.id!r}: the oracle key {m.config} is not in the "
                                    f"on-chain signer set [{m.onchain}]")
                else:
                    problems.append(f"sla {sla.id!r}: on-chain {m.field} is {m.onchain}, "
                                    f"the config gives {m.config}")
        if problems:
            raise OracleStartError(
                "the on-chain SLA does not match the config: " + "; ".join(problems)
            )

    async def _edit_pending(self, sla_id: str, found: Sequence[Mismatch]) -> bool:
        """Whether `found` is only an edit of the policy awaiting registration: no field
        but the policy's differs, and the chain's digest judged one of the SLA's periods
        here (a daemon first deployed with another policy than registered gets no such
        grace: that is a config error, refused at start)."""
        if any(m.field not in _POLICY_FIELDS for m in found):
            return False
        onchain = self.onchain[sla_id].policy_digest
        if any(p.digest == onchain for p in self.policies(sla_id)):
            return True
        periods = await self.store.periods(sla_id)
        return any(p.policy_digest == onchain for p in periods[-BACKFILL_DEPTH:])

    async def _period_base(self, sla: Sla, slo: Slo, digest: bytes) -> int | None:
        """Slamon's id of the contract's first period (config, else asked from the chain).

        In chain mode the on-chain SLA is checked against the policy (`sla`, `slo`,
        `digest`) first: an SLA that differs is never signed under it (the check is
        repeated on every backfill round until it passes, so fixing the config or the
        registration resumes signing).
        """
        key = (sla.id, digest)
        if key in self._bases and not self.mismatches.get(sla.id):
            return self._bases[key]
        start = self.cfg.schedule_starts.get(sla.id)
        if self.publisher is not None:
            try:
                view = await self._read_onchain(sla)
            except Exception as exc:  # chain down or not registered: try again later
                self.log.warning("oracle_schedule_unknown", sla=sla.id, reason=str(exc)[:200])
                return None
            if self._check(sla, slo, digest, view):
                return None
            start = self.onchain[sla.id].schedule_start  # parsed by the check
        if start is None:
            self.log.error("oracle_schedule_unknown", sla=sla.id,
                           reason="set oracle.schedule_starts for attest mode")
            return None
        try:
            base = period_base_for(sla, start)
        except ValueError as exc:
            self.log.error("oracle_schedule_mismatch", sla=sla.id, reason=str(exc))
            return None
        self._bases[key] = base
        return base

    async def on_period_closed(self, policy: Policy, result: PeriodResult,
                               record: ClosedPeriod) -> None:
        """`policy`: the one the period was judged by (the tracker's)."""
        if self._reported(policy.sla):
            await self._report(policy.sla, record, result, (policy.slo, policy.digest))

    async def _report(self, sla: Sla, record: ClosedPeriod, result: PeriodResult | None,
                      judged: tuple[Slo, bytes] | None = None) -> None:
        assert self.signer is not None
        if judged is None:
            sla, slo, digest = self._judged_by(sla, record.policy_digest, record)
        else:
            slo, digest = judged
        base = await self._period_base(sla, slo, digest)
        if base is None:
            return  # the backfill retries once the schedule is known
        if record.period < base:
            return  # before the contract's first period: nothing to report
        try:
            report = build_report(
                sla, slo, record, period_base=base,
                policy_digest=digest, issued_at=int(time.time()),
                sla_id=self._onchain_id(sla),
            )
        except ReportBuildError as exc:
            self.errors_total += 1
            self.log.error("report_build_failed", sla=sla.id, period=record.period,
                           reason=str(exc))
            return
        if report is None:
            self.skipped_total += 1
            if self.publisher is not None:
                await self.publisher.journal.add_skipped(
                    sla.id, record.period, self.signer.address, "insufficient data",
                    {"valid": record.result.get("valid")},
                )
            self.log.info("report_skipped", sla=sla.id, period=record.period,
                          reason="insufficient data")
            return
        signed = self.signer.sign_report(report, self.cfg.chain_id, self.cfg.contract)
        try:
            stored, written = await asyncio.to_thread(self.outbox.write, sla.id, signed)
        except OutboxError as exc:
            self.errors_total += 1
            self.log.error("outbox_write_failed", sla=sla.id, period=record.period,
                           reason=str(exc))
            return
        if written:
            self.signed_total += 1
            self.log.info("report_signed", sla=sla.id, period=report.period_id,
                          sli_ppm=report.sli_ppm, breached=report.breached)
        if self.publisher is not None:
            await self.publisher.submit(stored, sla.id)

    # -- backfill ---------------------------------------------------------
    async def backfill(self) -> int:
        """Sign closed periods that have no report yet (crash between close and sign)."""
        assert self.signer is not None
        done = 0
        for sla in self.config.slas:
            if not self._reported(sla):
                continue
            periods = await self.store.periods(sla.id)
            for record in periods[-BACKFILL_DEPTH:]:
                if await self._known(sla, record.period):
                    continue
                psla, slo, digest = self._judged_by(sla, record.policy_digest, record)
                base = await self._period_base(psla, slo, digest)
                if base is None or record.period < base:
                    continue
                await self._report(psla, record, None, (slo, digest))
                done += 1
        return done

    async def _known(self, sla: Sla, period: int) -> bool:
        assert self.signer is not None
        if self.publisher is not None:
            from slamon.oracle.journal import JournalKey

            entry = await self.publisher.journal.get(
                JournalKey(sla.id, period, self.signer.address)
            )
            return entry is not None
        found = await asyncio.to_thread(self.outbox.read, sla.id, period, self.signer.address)
        return found is not None

    async def _backfill_loop(self) -> None:
        while True:
            try:
                n = await self.backfill()
                if n:
                    self.log.info("oracle_backfilled", reports=n)
            except Exception as exc:  # never stop probing over this
                self.log.warning("oracle_backfill_failed", reason=str(exc)[:200])
            await asyncio.sleep(BACKFILL_EVERY)

    def sla_note(self, sla_id: str) -> dict[str, Any] | None:
        """What the API and status page show of the on-chain SLA (None: not read yet)."""
        onchain = self.onchain.get(sla_id)
        if onchain is None:
            return None
        return {
            "single_oracle": onchain.single_oracle,
            "quorum": onchain.quorum,
            "signers": list(onchain.signers),
            "schedule_start": onchain.schedule_start,
            "settlement_window": onchain.settlement_window,
            "policy_digest": "0x" + onchain.policy_digest.hex(),
            "mismatches": [
                {"field": m.field, "onchain": m.onchain, "config": m.config}
                for m in self.mismatches.get(sla_id, [])
            ],
        }

    # -- people and metrics ------------------------------------------------
    def _confirmed(self, sla: str, period: int, tx_hash: str, block: int) -> None:
        self.publish_event(
            EventKind.REPORT_PUBLISHED, sla,
            f"SLA {sla} period {period} report confirmed on-chain (block {block})",
            period=period, tx_hash=tx_hash, block=block, chain_id=self.cfg.chain_id,
        )

    def publish_event(self, kind: EventKind, sla: str, summary: str, **details: Any) -> None:
        if self.events is not None:
            self.events.publish(Event(kind, time.time(), sla=sla, summary=summary,
                                      details=details))

    def metrics(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "slamon_oracle_reports_signed", "Reports signed", value=self.signed_total
        )
        yield CounterMetricFamily(
            "slamon_oracle_reports_skipped", "Closed periods not reported (insufficient data)",
            value=self.skipped_total,
        )
        yield CounterMetricFamily(
            "slamon_oracle_errors", "Reports that could not be built", value=self.errors_total
        )
        mismatch = GaugeMetricFamily(
            "slamon_oracle_sla_mismatch",
            "1 while this on-chain SLA field differs from the config (the SLA is not signed)",
            labels=["sla", "field"],
        )
        for sla_id, found in sorted(self.mismatches.items()):
            for m_ in found:
                mismatch.add_metric([sla_id, m_.field], 1.0)
        yield mismatch
        if self.publisher is None:
            return
        m = self.publisher.metrics()
        yield GaugeMetricFamily(
            "slamon_oracle_backlog", "Signed reports not yet confirmed on-chain", value=m.backlog
        )
        states = GaugeMetricFamily(
            "slamon_oracle_journal_entries", "Report journal entries by state", labels=["state"]
        )
        for state, n in sorted(m.states.items()):
            states.add_metric([state], n)
        yield states
        if m.balance_wei is not None:
            yield GaugeMetricFamily(
                "slamon_oracle_signer_balance_wei", "Balance of the signer (pays the gas)",
                value=m.balance_wei,
            )
        if m.last_success is not None:
            yield GaugeMetricFamily(
                "slamon_oracle_last_success_timestamp_seconds", "When a report last confirmed",
                value=m.last_success,
            )
        yield GaugeMetricFamily(
            "slamon_oracle_chain_up", "1 if the chain answered lately",
            value=1.0 if m.chain_up else 0.0,
        )
        yield GaugeMetricFamily(
            "slamon_oracle_consecutive_failures", "RPC failures in a row",
            value=m.consecutive_failures,
        )
        yield GaugeMetricFamily(
            "slamon_oracle_fee_capped", "1 while the base fee is above the configured cap",
            value=1.0 if m.fee_capped else 0.0,
        )
        yield CounterMetricFamily(
            "slamon_oracle_transactions_sent", "Transactions broadcast", value=m.sent_total
        )
        yield CounterMetricFamily(
            "slamon_oracle_transactions_replaced", "Stuck transactions replaced",
            value=m.replaced_total,
        )
