"""Config models for `notify:`: channels, routes, defaults and delivery.

Each channel kind's own section is defined by its module in slamon.channels;
`Channel` holds one of them, named by `kind`.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from slamon.channels import CHANNELS
from slamon.channels.alertmanager import AlertmanagerChannel
from slamon.channels.apprise import AppriseChannel
from slamon.channels.email import EmailChannel
from slamon.channels.slack import SlackChannel
from slamon.channels.webhook import WebhookChannel
from slamon.util.schema import Duration, Id, PathError, Problem, Strict

#: event kinds a route can ask for (slamon.util.events.EventKind values)
EventName = Literal[
    "target_down",
    "target_up",
    "burn_rate_firing",
    "burn_rate_resolved",
    "sla_breached",
    "sla_met",
    "report_published",
    "report_failed",
    "cert_expiring",
    "incident_updated",
]
EVENT_KINDS: tuple[EventName, ...] = get_args(EventName)
#: default route filter: everything that needs a human (not "sla_met")
DEFAULT_EVENTS: tuple[EventName, ...] = (
    "target_down",
    "burn_rate_firing",
    "sla_breached",
    "report_published",
    "report_failed",
    "cert_expiring",
    "incident_updated",
)


class Channel(Strict):
    id: Id
    kind: Literal["webhook", "slack", "email", "alertmanager", "apprise"]
    webhook: WebhookChannel | None = None
    slack: SlackChannel | None = None
    email: EmailChannel | None = None
    alertmanager: AlertmanagerChannel | None = None
    apprise: AppriseChannel | None = None

    @property
    def section(self) -> Strict:
        """This channel's own settings: the section named by `kind`."""
        section: Strict = getattr(self, self.kind)
        return section

    @model_validator(mode="after")
    def _sections(self) -> Channel:
        present = {k for k in CHANNELS if getattr(self, k) is not None}
        problems: list[Problem] = []
        if self.kind not in present:
            problems.append(((self.kind,), f"section required for kind {self.kind!r}"))
        for other in sorted(present - {self.kind}):
            problems.append(((other,), f"not allowed for kind {self.kind!r}"))
        if problems:
            raise PathError.many(problems)
        return self


class Delivery(Strict):
    """How hard to try one notification."""

    #: one attempt (connect + send + answer) must finish within this
    timeout: Duration = 10.0
    #: attempts after the first; then the message is dropped and counted
    retries: int = Field(default=5, ge=0, le=50)
    #: exponential back-off between attempts, with full jitter in [b/2, b]
    backoff: Duration = 1.0
    max_backoff: Duration = 300.0
    #: messages waiting per route; when full the oldest is dropped and counted
    queue_size: int = Field(default=1000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _bounds(self) -> Delivery:
        if self.timeout <= 0:
            raise PathError(("timeout",), "must be greater than 0")
        if self.backoff <= 0:
            raise PathError(("backoff",), "must be greater than 0")
        if self.max_backoff < self.backoff:
            raise PathError(("max_backoff",), "must be at least backoff")
        return self


class RouteDefaults(Strict):
    #: consecutive failed probes before a target counts as down (one lost probe never pages)
    failure_threshold: int = Field(default=3, ge=1, le=1000)
    #: consecutive good probes before a down target counts as up again
    success_threshold: int = Field(default=2, ge=1, le=1000)
    #: repeat a still-firing alert this often (0 = never)
    repeat_interval: Duration = 4 * 3600.0
    send_resolved: bool = True


class Route(Strict):
    """Which events go to which channel. Filters are ANDed; empty = all."""

    id: Id | None = None
    channel: Id
    events: list[EventName] = Field(default_factory=lambda: list(DEFAULT_EVENTS))
    slos: list[Id] = Field(default_factory=list)
    slas: list[Id] = Field(default_factory=list)
    targets: list[Id] = Field(default_factory=list)
    #: every label given must equal the target's label
    labels: dict[str, str] = Field(default_factory=dict)
    failure_threshold: int | None = Field(default=None, ge=1, le=1000)
    success_threshold: int | None = Field(default=None, ge=1, le=1000)
    repeat_interval: Duration | None = None
    send_resolved: bool | None = None
    #: hold target down/up and burn-rate notifications while a maintenance window
    #: covers the target (for burn rates: one of the SLO's targets)
    silence_in_maintenance: bool = True

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must not be empty: omit the key for the default")
        return value


class NotifyConfig(Strict):
    channels: list[Channel] = Field(min_length=1)
    routes: list[Route] = Field(min_length=1)
    defaults: RouteDefaults = Field(default_factory=RouteDefaults)
    delivery: Delivery = Field(default_factory=Delivery)
    #: TLS certificate expiry reminders, in days before expiry
    cert_expiry_days: list[int] = Field(default_factory=lambda: [21, 14, 7])

    @field_validator("cert_expiry_days")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > 365 for d in value):
            raise ValueError("days must be between 1 and 365")
        return sorted(set(value), reverse=True)

    @model_validator(mode="after")
    def _refs(self) -> NotifyConfig:
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        for i, ch in enumerate(self.channels):
            if ch.id in seen:
                problems.append(
                    (
                        ("channels", i, "id"),
                        f"duplicate id {ch.id!r} (also channels[{seen[ch.id]}])",
                    )
                )
            seen.setdefault(ch.id, i)
        route_ids: dict[str, int] = {}
        for i, route in enumerate(self.routes):
            if route.channel not in seen:
                problems.append((("routes", i, "channel"), f"unknown channel {route.channel!r}"))
            rid = self.route_id(i)
            if rid in route_ids:
                problems.append(
                    (
                        ("routes", i, "id"),
                        f"duplicate route id {rid!r} (also routes[{route_ids[rid]}])",
                    )
                )
            route_ids.setdefault(rid, i)
        if problems:
            raise PathError.many(problems)
        return self

    def route_id(self, index: int) -> str:
        route = self.routes[index]
        return route.id if route.id is not None else f"{route.channel}#{index}"

    def channel(self, channel_id: str) -> Channel:
        for ch in self.channels:
            if ch.id == channel_id:
                return ch
        raise KeyError(channel_id)


