"""Alertmanager-compatible push: POST /api/v2/alerts (what Prometheus itself does).

One alert per condition, identified by its labels (alertname, target, slo,
sla and the target's labels), so Alertmanager groups, dedups, inhibits and
routes it like any Prometheus alert. A resolved notification sends the same
labels with endsAt = now. While firing, endsAt is in the future and the router
re-pushes at `refresh` (its repeat interval for this channel), as Prometheus
does, so the alert does not auto-resolve. Pushing the same alert twice is
harmless: Alertmanager merges identical label sets.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from pydantic import Field, field_validator

from slamon.channels.base import ChannelKind, Context, DeliveryError, Message
from slamon.channels.webhook import post_json
from slamon.util.schema import (
    Duration,
    PathError,
    Problem,
    Strict,
    check_headers,
    check_url,
)
from slamon.wallclock import iso

ALERTNAMES = {
    "target": "SlamonTargetDown",
    "burn_rate": "SlamonErrorBudgetBurn",
    "sla": "SlamonSlaBreached",
    "report": "SlamonReport",
    "cert": "SlamonCertExpiring",
}


def alert_of(message: Message, now: float, refresh: float) -> dict[str, Any]:
    topic = message.condition.split(":", 1)[0]
    name = ALERTNAMES.get(topic.split("_")[0], "Slamon" + topic.title().replace("_", ""))
    if message.kind.value == "report_published":
        name = "SlamonReportPublished"
    elif message.kind.value == "report_failed":
        name = "SlamonReportFailed"
    labels: dict[str, str] = {k: v for k, v in message.labels.items()}
    labels["alertname"] = name
    for key in ("target", "slo", "sla"):
        value = getattr(message, key)
        if value:
            labels[key] = value
    for key in ("long", "short", "window", "severity"):
        if key in message.details and message.details[key] is not None:
            labels[key] = str(message.details[key])
    # the same label set when firing and resolved: severity depends on the kind only
    quiet = message.kind.value in ("report_published", "sla_met")
    labels.setdefault("severity", "info" if quiet else "page")
    annotations = {
        "summary": message.title,
        "description": message.text,
        "idempotency_key": message.key,
    }
    if "tx_hash" in message.details:
        annotations["tx_hash"] = str(message.details["tx_hash"])
    ends = now if message.status == "resolved" else now + 3 * refresh
    if message.status == "info":  # a one-shot event: shown for a while, then resolves itself
        ends = now + max(3 * refresh, 3600.0)
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": iso(message.since),
        "endsAt": iso(ends),
        "generatorURL": "",
    }


class AlertmanagerNotifier:
    kind = "alertmanager"

    def __init__(self, name: str, urls: list[str], session: aiohttp.ClientSession, *,
                 headers: dict[str, str] | None = None, refresh: float = 60.0) -> None:
        self.name = name
        self._urls = [u.rstrip("/") + "/api/v2/alerts" for u in urls]
        self._session = session
        self._headers = dict(headers or {})
        self.refresh = refresh

    async def send(self, message: Message) -> None:
        import time

        body = json.dumps([alert_of(message, time.time(), self.refresh)]).encode()
        errors: list[DeliveryError] = []
        # like Prometheus: every replica gets the alert; success if any accepted it
        for url in self._urls:
            try:
                await post_json(self._session, url, body, self._headers)
            except DeliveryError as exc:
                errors.append(exc)
        if len(errors) == len(self._urls):
            raise errors[0]

    async def close(self) -> None:
        return None


# -- config -------------------------------------------------------------------


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
                check_url(url)
            except ValueError as exc:
                problems.append(((i,), str(exc)))
        if problems:
            raise PathError.many(problems)
        return value

    @field_validator("headers")
    @classmethod
    def _hdr(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)


def _build(channel_id: str, cfg: AlertmanagerChannel, ctx: Context) -> AlertmanagerNotifier:
    return AlertmanagerNotifier(channel_id, cfg.urls, ctx.session, headers=cfg.headers,
                                refresh=cfg.refresh)


KIND = ChannelKind("alertmanager", AlertmanagerChannel, _build)
