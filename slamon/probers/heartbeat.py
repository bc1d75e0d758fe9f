"""Heartbeat (push) monitors: a job reports in; a tick without a report is a failure.

A cron job, a backup or a batch pipeline cannot be probed from outside; it
calls `POST /api/v1/push/<token>` (optionally `?status=down&msg=...`) when it
runs. The target is scheduled like any other, and at each tick this prober
answers from the beats received: good when the latest beat in the last
`interval + grace` said up, bad when it said down (with its message) or when
there was none. So beats and misses count in the SLO windows and SLA periods
exactly as probe ticks do, and while slamon itself is down its ticks are no
data, never failures.

The beats live in one process-wide `Beats` (the prober signature carries only
the target): the web layer records into it, the daemon tells it the tokens.
Tokens are secrets: stored only as SHA-256 digests, never logged, compared in
constant time; accepted beats and unknown tokens are rate-limited.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slamon.probers.base import FailureReason, ProbeResult
from slamon.util.durations import format_duration

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from slamon.config.targets import Target

#: accepted beats per target: a burst of BURST, then one per 1 / RATE seconds
BURST, RATE = 10.0, 1.0
#: requests with an unknown token, for the whole process: guessing must stay slow
UNKNOWN_BURST, UNKNOWN_RATE = 20.0, 5.0
#: longest message kept from a beat
MAX_MESSAGE = 300


@dataclass(slots=True)
class Beat:
    at: float
    ok: bool
    message: str
    duration: float | None


class _Bucket:
    """Token bucket: `allow()` spends one token if there is one."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity, self.rate, self.level, self.stamp = capacity, rate, capacity, now

    def allow(self, now: float) -> bool:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level >= 1.0:
            self.level -= 1.0
            return True
        return False


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Beats:
    """Tokens (as digests) -> target ids, and each target's latest beat."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._targets: dict[bytes, str] = {}
        self.latest: dict[str, Beat] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._unknown = _Bucket(UNKNOWN_BURST, UNKNOWN_RATE, clock())
        self.rejected = {"unknown_token": 0, "rate_limited": 0}

    def configure(self, tokens: Iterable[tuple[str, str]]) -> None:
        """(target id, token) pairs of the running config; beats of removed targets go."""
        self._targets = {digest(token): tid for tid, token in tokens}
        kept = set(self._targets.values())
        self.latest = {tid: b for tid, b in self.latest.items() if tid in kept}
        self._buckets = {tid: b for tid, b in self._buckets.items() if tid in kept}

    def record(self, token: str, ok: bool = True, message: str = "",
               duration: float | None = None) -> tuple[str, str | None]:
        """('accepted', target id), ('unknown', None) or ('rate_limited', target id)."""
        now = self._clock()
        given = digest(token)
        tid = None
        for known, target_id in self._targets.items():  # every one, in constant time each
            if hmac.compare_digest(given, known):
                tid = target_id
        if tid is None:
            if not self._unknown.allow(now):
                self.rejected["rate_limited"] += 1
                return "rate_limited", None
            self.rejected["unknown_token"] += 1
            return "unknown", None
        bucket = self._buckets.get(tid)
        if bucket is None:
            bucket = self._buckets[tid] = _Bucket(BURST, RATE, now)
        if not bucket.allow(now):
            self.rejected["rate_limited"] += 1
            return "rate_limited", tid
        self.latest[tid] = Beat(now, ok, message[:MAX_MESSAGE], duration)
        return "accepted", tid


#: the process's beats (see the module docstring)
BEATS = Beats()


def window(target: Target) -> float:
    """How far back a tick looks for a beat: the interval plus the grace."""
    spec = target.heartbeat
    assert spec is not None
    grace = spec.grace if spec.grace is not None else target.interval / 10
    return target.interval + grace


async def probe(target: Target, timeout: float) -> ProbeResult:
    now = time.time()
    span = window(target)
    beat = BEATS.latest.get(target.id)
    if beat is None or beat.at <= now - span:
        return ProbeResult.failure(FailureReason.NO_HEARTBEAT, 0.0,
                                   f"no beat in the last {format_duration(span)}")
    duration = beat.duration if beat.duration is not None else 0.0
    if not beat.ok:
        return ProbeResult.failure(FailureReason.REPORTED_DOWN, duration,
                                   beat.message or "the job reported a failure")
    return ProbeResult(True, duration)
