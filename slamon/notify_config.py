"""Config models for `notify:` (channels, routes) and `status_page:`.

Pure pydantic in the style of slamon.config.models: `Strict` (unknown keys are
errors), `Duration` strings, cross-field problems raised as `PathError` so the
loader shows e.g. `notify.routes[2].channel`. Secrets (webhook URLs carry
tokens, SMTP passwords, HMAC keys) come from `${ENV}` or a file; validation
messages never echo them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from slamon.config.models import (
    _HEADER_NAME_RE,
    Duration,
    Id,
    PathError,
    Problem,
    Strict,
    check_headers,
)

#: event kinds a route can ask for (slamon.events.EventKind values)
EVENT_KINDS = (
    "target_down",
    "target_up",
    "burn_rate_firing",
    "burn_rate_resolved",
    "sla_breached",
    "sla_met",
    "report_published",
    "report_failed",
    "cert_expiring",
)
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
]
#: default route filter: everything that needs a human (not "sla_met")
DEFAULT_EVENTS: tuple[EventName, ...] = (
    "target_down",
    "burn_rate_firing",
    "sla_breached",
    "report_published",
    "report_failed",
    "cert_expiring",
)


def _check_url(value: str) -> str:
    # never quote the URL in a message: Slack/webhook URLs are credentials
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError("invalid URL: bad port or IPv6 address") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if any(ch.isspace() for ch in value):
        raise ValueError("invalid URL: contains whitespace")
    return value


_check_headers = check_headers


def _check_secret_source(
    value: str | None, file: str | None, name: str, *, required: bool = False
) -> None:
    """A secret comes inline (``${ENV}``) or from a file, never both and never empty."""
    if value is not None and file is not None:
        raise PathError((f"{name}_file",), f"use either {name} or {name}_file, not both")
    if required and value is None and file is None:
        raise PathError((name,), f"set one of {name} or {name}_file")
    if value is not None and not value:
        raise PathError((name,), "must not be empty")


class WebhookChannel(Strict):
    """POST a JSON document; optional HMAC-SHA256 of the body in a header."""

    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    #: HMAC key (use ${ENV}); the signature goes in `signature_header` as sha256=<hex>
    hmac_secret: str | None = None
    hmac_secret_file: str | None = None
    signature_header: str = "X-Slamon-Signature"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("headers")
    @classmethod
    def _hdr(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_headers(value)

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookChannel:
        _check_secret_source(self.hmac_secret, self.hmac_secret_file, "hmac_secret")
        if not _HEADER_NAME_RE.fullmatch(self.signature_header):
            raise PathError(("signature_header",), "invalid header name")
        return self


class SlackChannel(Strict):
    """Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat)."""

    url: str
    channel: str | None = None
    username: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value)


class EmailChannel(Strict):
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    #: none (plain, for a local relay), starttls, or tls (implicit, port 465)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    sender: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    subject_prefix: str = "[slamon]"

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        problems: list[Problem] = [
            ((i,), "not an e-mail address") for i, a in enumerate(value) if "@" not in a
        ]
        if problems:
            raise PathError.many(problems)
        return value

    @model_validator(mode="after")
    def _auth(self) -> EmailChannel:
        _check_secret_source(self.password, self.password_file, "password")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise PathError(("username",), "required with a password")
        if "@" not in self.sender:
            raise PathError(("from",), "not an e-mail address")
        return self


class AlertmanagerChannel(Strict):
    """Push alerts to Alertmanager's /api/v2/alerts (one or more replicas)."""

    urls: list[str] = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    #: alerts are re-pushed at this interval while firing (Alertmanager resolves
    #: alerts not refreshed within its resolve_timeout); endsAt = now + 3x this
    refresh: Duration = 60.0

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        problems: list[Problem] = []
        for i, url in enumerate(value):
            try:
                _check_url(url)
            except ValueError as exc:
                problems.append(((i,), str(exc)))
        if problems:
            raise PathError.many(problems)
        return value

    @field_validator("headers")
    @classmethod
    def _hdr(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_headers(value)


class Channel(Strict):
    id: Id
    kind: Literal["webhook", "slack", "email", "alertmanager"]
    webhook: WebhookChannel | None = None
    slack: SlackChannel | None = None
    email: EmailChannel | None = None
    alertmanager: AlertmanagerChannel | None = None

    @model_validator(mode="after")
    def _sections(self) -> Channel:
        kinds = ("webhook", "slack", "email", "alertmanager")
        present = {k for k in kinds if getattr(self, k) is not None}
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


class BasicAuth(Strict):
    username: str = Field(min_length=1)
    password: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> BasicAuth:
        _check_secret_source(self.password, self.password_file, "password", required=True)
        return self


class StatusPageConfig(Strict):
    enabled: bool = False
    title: str = "Service status"
    #: mount point of the HTML page (badges under <path>/badge/...)
    path: str = "/status"
    #: SLOs shown (and served as badges and JSON); None = all
    public_slos: list[Id] | None = None
    #: protect the page, badges and /api/v1/status
    basic_auth: BasicAuth | None = None
    #: block explorer link for report transactions, e.g. https://etherscan.io/tx/{tx_hash}
    explorer_tx_url: str | None = None
    #: incidents listed per SLO
    incidents: int = Field(default=10, ge=0, le=200)
    #: days on the uptime bar
    days: int = Field(default=90, ge=7, le=90)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9_.-][A-Za-z0-9_./-]*", value) or value.endswith("/"):
            raise ValueError("must be an absolute path like /status (no trailing slash)")
        if value.startswith(("/api", "/metrics", "/healthz", "/readyz")):
            raise ValueError("clashes with a built-in endpoint")
        return value

    @field_validator("explorer_tx_url")
    @classmethod
    def _explorer(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _check_url(value.replace("{tx_hash}", "0"))
        if "{tx_hash}" not in value:
            raise ValueError("must contain {tx_hash}")
        return value
