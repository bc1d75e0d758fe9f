"""The text of notifications: which details are safe, titles, and message building.

A channel is a class with `name`, `kind` and ``async send(message)`` that
returns once the receiver accepted the message and raises `DeliveryError`
otherwise. Timeouts, retries, back-off, queues and dedup are the router's job
(slamon.notify.router), so a channel is a few lines of protocol.

Messages never contain secrets: they are built only from ids, labels, numbers,
the event's summary (which the daemon writes without secrets, and which is
redacted again here) and a whitelist of detail keys. Target URLs never appear.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from slamon.channels.base import Message, Status
from slamon.util.events import Event, EventKind
from slamon.util.redact import redact_text
from slamon.util.units import ppm_percent

#: detail keys copied into messages; anything else an event carries is dropped
SAFE_DETAILS = (
    "reason",
    "sli_ppm",
    "objective_ppm",
    "period",
    "verdict",
    "tx_hash",
    "chain_id",
    "days_left",
    "expires_at",
    "window",
    "long",
    "short",
    "burn_rate",
    "severity",
    "failures",
    "successes",
    "error",
)

#: event kinds that resolve a firing condition, and the kind they resolve
RESOLVES = {
    EventKind.TARGET_UP: EventKind.TARGET_DOWN,
    EventKind.BURN_RATE_RESOLVED: EventKind.BURN_RATE_FIRING,
}

TITLES = {
    EventKind.TARGET_DOWN: "Target down",
    EventKind.TARGET_UP: "Target up",
    EventKind.BURN_RATE_FIRING: "Error budget burning",
    EventKind.BURN_RATE_RESOLVED: "Error budget burn resolved",
    EventKind.SLA_BREACHED: "SLA breached",
    EventKind.SLA_MET: "SLA met",
    EventKind.REPORT_PUBLISHED: "SLA report published on-chain",
    EventKind.REPORT_FAILED: "SLA report failed",
    EventKind.CERT_EXPIRING: "TLS certificate expiring",
    EventKind.INCIDENT_UPDATED: "Incident update",
}


def safe_details(details: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in SAFE_DETAILS:
        if k in details:
            v = details[k]
            if isinstance(v, bool | int | float) or v is None:
                out[k] = v
            else:
                out[k] = redact_text(str(v))[:500]
    return out


def idempotency_key(route: str, condition: str, status: str, since: float, reminder: int) -> str:
    raw = f"{route}|{condition}|{status}|{since!r}|{reminder}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def describe(event: Event, status: Status) -> tuple[str, str]:
    """(title, text) for an event; plain text, no markup, no secrets."""
    title = TITLES.get(event.kind, event.kind.value)
    if status == "resolved" and event.kind not in RESOLVES:
        title = f"Resolved: {title}"
    subject = event.target or event.slo or event.sla or ""
    head = f"{title}: {subject}" if subject else title
    lines = [head]
    if event.summary:
        lines.append(redact_text(event.summary)[:1000])
    d = event.details
    if event.kind == EventKind.REPORT_PUBLISHED and "tx_hash" in d:
        lines.append(f"transaction {d['tx_hash']}")
    if event.kind == EventKind.INCIDENT_UPDATED:
        lines.append(f"status: {d.get('status', '')}")
        if d.get("targets"):
            lines.append(f"affects: {', '.join(map(str, d['targets']))}")
    if event.kind == EventKind.CERT_EXPIRING and "days_left" in d:
        lines.append(f"certificate expires in {d['days_left']} days")
    if event.kind in (EventKind.SLA_BREACHED, EventKind.SLA_MET) and d.get("sli_ppm") is not None:
        obj = d.get("objective_ppm")
        obj_text = f" (objective {ppm_percent(obj)})" if isinstance(obj, int) else ""
        lines.append(f"SLI {ppm_percent(d['sli_ppm'])}{obj_text}")
    if event.labels:
        lines.append(", ".join(f"{k}={v}" for k, v in sorted(event.labels.items())))
    return title, "\n".join(lines)


def build_message(
    event: Event,
    route: str,
    status: Status,
    since: float,
    reminder: int = 0,
    at: float | None = None,
) -> Message:
    title, text = describe(event, status)
    if reminder:
        text = f"(reminder {reminder}, still firing)\n{text}"
    condition = event.key()
    return Message(
        key=idempotency_key(route, condition, status, since, reminder),
        route=route,
        status=status,
        kind=event.kind,
        condition=condition,
        title=title,
        text=text,
        at=event.at if at is None else at,
        since=since,
        target=event.target,
        slo=event.slo,
        sla=event.sla,
        labels=dict(event.labels),
        details=safe_details(event.details),
        reminder=reminder,
    )
