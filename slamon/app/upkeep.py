"""Periodic care of the durable state: writing it, closing SLA periods, pruning evidence.

Each job logs a failure once and its recovery once, and never stops probing:
a full disk must not turn a monitor blind.
"""

from __future__ import annotations

import asyncio
from typing import Any

from slamon.sla.tracker import SlaTracker
from slamon.store.base import Snapshots, Store, StoreWriteError

#: how often composite SLO slices are closed and due SLA periods looked for
ADVANCE_EVERY = 1.0
#: how often evidence leaves past their retention are deleted
PRUNE_EVERY = 3600.0


class StateWriter:
    """Flushes the store's pending batch; while the disk refuses, results stay in memory."""

    def __init__(self, store: Store, snapshots: Snapshots, log: Any) -> None:
        self.store = store
        self._snapshots = snapshots
        self.log = log
        #: the last flush failed: closing periods waits until writes work again
        self.failing = False

    async def flush(self, snapshot: bool = False) -> None:
        try:
            await self.store.flush(self._snapshots if snapshot else None)
        except StoreWriteError as exc:
            if not self.failing:
                self.log.error("state_write_failed", reason=str(exc),
                               detail="probing continues; results are kept in memory")
            self.failing = True
            return
        if self.failing:
            self.log.info("state_write_recovered")
        self.failing = False

    async def run(self, flush_interval: float, snapshot_interval: float) -> None:
        """Flush every `flush_interval`, with window snapshots every `snapshot_interval`."""
        loop = asyncio.get_running_loop()
        next_snapshot = loop.time() + snapshot_interval
        while True:
            await asyncio.sleep(flush_interval)
            snap = loop.time() >= next_snapshot
            if snap:
                next_snapshot = loop.time() + snapshot_interval
            await self.flush(snapshot=snap)


class PeriodCloser:
    """Closes due SLA periods; retried every second while anything goes wrong."""

    def __init__(self, tracker: SlaTracker, writer: StateWriter, log: Any) -> None:
        self.tracker = tracker
        self._writer = writer
        self.log = log
        self._failing = False

    async def close_due(self) -> None:
        # a verdict is computed from the stored leaves; while writes fail, the
        # period's last leaves are still only in memory: wait for the disk
        if self._writer.failing:
            return
        try:
            await self.tracker.close_due()
        except Exception as exc:  # keep probing whatever happens here
            if not self._failing:
                self.log.error("period_close_failed", reason=str(exc)[:300])
            self._failing = True
        else:
            if self._failing:
                self.log.info("period_close_recovered")
            self._failing = False


async def prune_evidence(
    store: Store, tracker: SlaTracker, retention: float, now: float, log: Any
) -> int:
    """Drop evidence leaves older than `retention` seconds, of closed periods only
    (the open period's leaves are what its verdict will be computed from)."""
    horizon = now - retention
    removed = 0
    for sla_id, rt in tracker.slas.items():
        before = int(min(horizon, rt.open_from))
        try:
            removed += await store.prune_leaves(sla_id, before)
        except Exception as exc:  # retention must never stop probing
            log.warning("prune_failed", sla=sla_id, reason=str(exc))
    if removed:
        log.info("evidence_pruned", leaves=removed)
    return removed
