"""What every notification channel shares: the message, the failure, the interface.

A channel is one module in this package that owns its config model, its
validation and its send (as gatus' alerting providers do), and registers
itself in `slamon.channels.CHANNELS`. Timeouts, retries, back-off, queues and
dedup are the router's job (slamon.notify.router), so a channel is a few lines
of protocol. Messages never carry secrets: the router builds them from ids,
labels, numbers and a whitelist of details.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from slamon.util.events import EventKind
from slamon.util.schema import Strict
from slamon.wallclock import iso

if TYPE_CHECKING:
    import aiohttp

Status = Literal["firing", "resolved", "info"]


class DeliveryError(Exception):
    """A failed attempt. `reason` is a short fixed label for metrics."""

    def __init__(self, reason: str, message: str = "", *, retryable: bool = True) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Message:
    """One notification, as every channel sees it."""

    #: idempotency key: identical across retries and across channels' re-sends
    #: of the same notification, different for each reminder and for resolution
    key: str
    route: str
    status: Status
    kind: EventKind
    #: the condition this is about (Event.key()): resolved/reminders share it
    condition: str
    title: str
    text: str
    at: float
    #: when the condition started firing (== at for one-shot events)
    since: float
    target: str | None = None
    slo: str | None = None
    sla: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    #: 0 for the first notification, n for the n-th reminder
    reminder: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "version": "slamon-notification/1",
            "idempotency_key": self.key,
            "route": self.route,
            "status": self.status,
            "event": self.kind.value,
            "condition": self.condition,
            "title": self.title,
            "text": self.text,
            "at": iso(self.at),
            "since": iso(self.since),
            "target": self.target,
            "slo": self.slo,
            "sla": self.sla,
            "labels": dict(self.labels),
            "details": dict(self.details),
            "reminder": self.reminder,
        }

    def body(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()


class Notifier(Protocol):
    """A channel. `send` returns when the receiver accepted, raises DeliveryError if not."""

    name: str
    kind: str

    async def send(self, message: Message) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Context:
    """What a channel may use to send: the shared HTTP session and the per-attempt timeout."""

    session: aiohttp.ClientSession
    timeout: float


C = TypeVar("C", bound=Strict)


@dataclass(frozen=True)
class ChannelKind(Generic[C]):
    """One channel kind: the name in `kind:`, its config model and how to build a sender.

    `build(channel_id, config, context)` reads any secret files; it raises
    OSError when one cannot be read.
    """

    kind: str
    config: type[C]
    build: Callable[[str, C, Context], Notifier]
