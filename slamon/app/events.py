"""The events the daemon itself publishes, with their summary text.

A target going up or down (from the live state) and an SLA period closing
(from the tracker). The other kinds are built where they are detected: burn
rates and certificates in slamon.notify, reports in slamon.oracle.
"""

from __future__ import annotations

import time

from slamon.config.targets import Target
from slamon.probers.base import ProbeResult
from slamon.sla.result import PeriodResult
from slamon.util.events import Event, EventKind
from slamon.util.units import ppm_percent


def target_event(target: Target, scheduled: float, result: ProbeResult) -> Event:
    """A target's up/down transition, at the scheduled time of the probe that made it."""
    reason = result.reason.value if result.reason else None
    return Event(
        EventKind.TARGET_UP if result.ok else EventKind.TARGET_DOWN,
        scheduled,
        target=target.id,
        labels=target.labels,
        summary=(f"{target.id} is up" if result.ok else
                 f"{target.id} is down: {reason or 'other'}"),
        details={"reason": reason, "detail": result.detail,
                 "status_code": result.status_code, "duration": result.duration},
    )


def period_event(sla_id: str, result: PeriodResult) -> Event | None:
    """A closed period's verdict; None when it has none (no valid data)."""
    if result.breached is None:
        return None
    return Event(
        EventKind.SLA_BREACHED if result.breached else EventKind.SLA_MET,
        time.time(),
        sla=sla_id,
        summary=(f"SLA {sla_id} period {result.period_id} {result.verdict}: "
                 f"SLI {ppm_percent(result.sli_ppm)}"),
        details={"period": result.period_id, "sli_ppm": result.sli_ppm,
                 "objective_ppm": result.objective_ppm, "start": result.start,
                 "end": result.end},
    )
