"""Things that happen, for the people-facing side (notifications, status page).

The daemon publishes events synchronously from its callbacks; subscribers get
them through their own bounded queues, so a slow consumer (a dead webhook)
never stalls probing: when its queue is full the oldest event is dropped and
counted.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class EventKind(enum.StrEnum):
    TARGET_DOWN = "target_down"
    TARGET_UP = "target_up"
    BURN_RATE_FIRING = "burn_rate_firing"
    BURN_RATE_RESOLVED = "burn_rate_resolved"
    SLA_BREACHED = "sla_breached"
    SLA_MET = "sla_met"
    REPORT_PUBLISHED = "report_published"
    REPORT_FAILED = "report_failed"
    CERT_EXPIRING = "cert_expiring"
    #: an incident posted or updated by an operator (status page)
    INCIDENT_UPDATED = "incident_updated"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    #: unix seconds when it happened (for a probe: its scheduled time)
    at: float
    target: str | None = None
    slo: str | None = None
    sla: str | None = None
    #: short human summary, never holding a secret
    summary: str = ""
    #: labels of the target (from config) for routing filters
    labels: Mapping[str, str] = field(default_factory=dict)
    #: kind-specific details: reason, sli_ppm, tx_hash, days_left, window, ...
    details: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """Identity of the condition, so up resolves down and reminders repeat it."""
        topic = self.kind.value.rsplit("_", 1)[0]
        return f"{topic}:{self.target or ''}:{self.slo or ''}:{self.sla or ''}"


class Subscription:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.queue.get_nowait()  # drop the oldest, keep the newest
            self.dropped += 1
            self.queue.put_nowait(event)


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self.published: dict[EventKind, int] = {}

    def subscribe(self, maxsize: int = 10_000) -> Subscription:
        sub = Subscription(maxsize)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, event: Event) -> None:
        self.published[event.kind] = self.published.get(event.kind, 0) + 1
        for sub in self._subs:
            sub.offer(event)
