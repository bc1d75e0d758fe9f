"""Recent incidents, derived from the daemon's TARGET_DOWN/TARGET_UP transitions,
and the last on-chain report per SLA (from REPORT_PUBLISHED). In memory and
bounded: the status page shows the recent past; the SLA record is the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from slamon.util.events import Event, EventBus, EventKind, Subscription


@dataclass(slots=True)
class Incident:
    target: str
    start: float
    end: float | None = None
    reason: str | None = None

    @property
    def ongoing(self) -> bool:
        return self.end is None

    def to_json(self, now: float) -> dict[str, Any]:
        end = self.end if self.end is not None else now
        return {"target": self.target, "start": self.start, "end": self.end,
                "duration": max(0.0, end - self.start), "reason": self.reason,
                "ongoing": self.ongoing}


@dataclass(slots=True)
class Report:
    sla: str
    at: float
    period: int | None
    tx_hash: str | None
    chain_id: int | None = None


class IncidentLog:
    def __init__(self, capacity: int = 500) -> None:
        self.incidents: deque[Incident] = deque(maxlen=capacity)
        self._open: dict[str, Incident] = {}
        self.reports: dict[str, Report] = {}
        self._sub: Subscription | None = None
        self._bus: EventBus | None = None
        self._task: asyncio.Task[None] | None = None

    def record(self, event: Event) -> None:
        if event.kind == EventKind.TARGET_DOWN and event.target:
            if event.target not in self._open:
                reason = event.details.get("reason")
                inc = Incident(event.target, event.at,
                               reason=str(reason) if reason is not None else None)
                self._open[event.target] = inc
                self.incidents.append(inc)
        elif event.kind == EventKind.TARGET_UP and event.target:
            open_inc = self._open.pop(event.target, None)
            if open_inc is not None:
                open_inc.end = event.at
        elif event.kind == EventKind.REPORT_PUBLISHED and event.sla:
            period = event.details.get("period")
            chain = event.details.get("chain_id")
            tx = event.details.get("tx_hash")
            self.reports[event.sla] = Report(
                event.sla, event.at, int(period) if isinstance(period, int) else None,
                str(tx) if tx is not None else None,
                int(chain) if isinstance(chain, int) else None)

    def for_targets(self, targets: set[str] | tuple[str, ...], limit: int) -> list[Incident]:
        """Most recent first."""
        out = [i for i in reversed(self.incidents) if i.target in targets]
        return out[:limit]

    # -- EventBus plumbing ---------------------------------------------------
    def start(self, bus: EventBus, queue: int = 10_000) -> None:
        self._bus = bus
        self._sub = bus.subscribe(queue)
        self._task = asyncio.create_task(self._run(self._sub), name="incident-log")

    async def _run(self, sub: Subscription) -> None:
        while True:
            self.record(await sub.queue.get())

    async def stop(self) -> None:
        if self._bus is not None and self._sub is not None:
            self._bus.unsubscribe(self._sub)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
