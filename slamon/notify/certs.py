"""TLS certificate expiry reminders, derived from the probes' `cert_expiry`.

The daemon calls `CertWatch.check(live, now)` from its advance loop (cheap: a
walk of the targets whose results carried a certificate) and publishes the
events. One CERT_EXPIRING event per target when the days left first drop to
or below each threshold (default 21, 14, 7); when several thresholds are
crossed at once (first start, long outage) only the lowest is sent. A renewed
certificate (a later expiry) starts afresh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from slamon.sli.live import LiveState
from slamon.util.events import Event, EventKind
from slamon.wallclock import utc_iso

DAY = 86400.0


class CertWatch:
    def __init__(self, days: Sequence[int] = (21, 14, 7)) -> None:
        self.days = sorted(set(days), reverse=True)
        #: target -> (expiry seen, thresholds already notified)
        self._seen: dict[str, tuple[float, set[int]]] = {}

    def check(self, live: LiveState, now: float) -> list[Event]:
        events: list[Event] = []
        targets = live.targets
        for tid in live.cert_targets:
            status = targets[tid]
            last = status.last
            if last is None or last.cert_expiry is None:
                continue
            expiry = last.cert_expiry
            seen = self._seen.get(tid)
            if seen is None or expiry > seen[0] + 1:
                seen = (expiry, set())
            self._seen[tid] = seen
            days_left = math.floor((expiry - now) / DAY)
            crossed = [d for d in self.days if days_left <= d and d not in seen[1]]
            if not crossed:
                continue
            seen[1].update(crossed)
            threshold = min(crossed)
            left = max(days_left, 0)
            events.append(Event(
                EventKind.CERT_EXPIRING, now, target=tid,
                summary=(f"TLS certificate of {tid} expires in {left} days "
                         f"({utc_iso(int(expiry))})" if days_left >= 0
                         else f"TLS certificate of {tid} has expired ({utc_iso(int(expiry))})"),
                labels=dict(status.target.labels),
                details={"days_left": left, "expires_at": utc_iso(int(expiry)),
                         "threshold": threshold},
            ))
        for tid in [tid for tid in self._seen if tid not in live.cert_targets]:
            del self._seen[tid]
        return events
