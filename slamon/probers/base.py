"""What every prober returns, and the one signature all probers share.

As in blackbox_exporter's prober/: one module per protocol, one function
signature; adding a protocol is adding a module and a line in the registry.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slamon.config.targets import Target


class FailureReason(enum.StrEnum):
    """Fixed set, so dashboards and alerts can rely on the label values."""

    TIMEOUT = "timeout"
    DNS = "dns"
    REFUSED = "refused"
    RESET = "reset"
    TLS = "tls"
    STATUS = "status"
    BODY = "body"
    HEADER = "header"
    JSON = "json"
    TOO_SLOW = "too_slow"
    TOO_LARGE = "too_large"
    REDIRECTS = "redirects"
    OTHER = "other"


PHASES = ("dns", "connect", "tls", "processing", "transfer")


@dataclass(slots=True)
class ProbeResult:
    """Outcome of one probe. `detail` is for humans and must hold no secrets."""

    ok: bool
    duration: float
    reason: FailureReason | None = None
    detail: str = ""
    status_code: int | None = None
    phases: dict[str, float] = field(default_factory=dict)
    cert_expiry: float | None = None
    http_version: str | None = None
    redirects: int = 0
    body_bytes: int = 0

    @classmethod
    def failure(
        cls, reason: FailureReason, duration: float, detail: str = "", **kw: object
    ) -> ProbeResult:
        return cls(ok=False, duration=duration, reason=reason, detail=detail, **kw)  # type: ignore[arg-type]


#: The prober signature: the target's config and its timeout budget in seconds.
#: A prober must return within `timeout` (plus scheduling noise) and never raise.
Prober = Callable[["Target", float], Awaitable[ProbeResult]]
