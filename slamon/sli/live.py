"""What slamon knows right now: last result per target and the SLO windows.

Written by the scheduler's callbacks, read at scrape time by the metrics
collector (and later the status page), so nothing per-probe touches
prometheus-client objects.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from slamon.config.root import Config
from slamon.config.slo import Slo
from slamon.config.targets import Target
from slamon.probers.base import FailureReason, ProbeResult
from slamon.sli.slo import SloState

TransitionHook = Callable[["TargetStatus", ProbeResult], None]


@dataclass(slots=True)
class TargetStatus:
    target: Target
    last: ProbeResult | None = None
    last_scheduled: float | None = None
    successes: int = 0
    failures: int = 0
    missed: int = 0
    failures_by_reason: dict[FailureReason, int] = field(default_factory=dict)
    #: consecutive results with the same outcome as `last`
    streak: int = 0


def window_key(slo: Slo, parts: Sequence[Target]) -> tuple[object, ...]:
    """What an SLO's stored windows count, and so what must not change for them to
    be kept across a reload or a restart.

    The windows are the same 90-day tiers whatever the SLO's `window` or
    `alert_windows`, and they count good and valid events, not the objective:
    those (and the description) are read when the SLI, budget and burn rates are
    computed, so an edit of them keeps every count. What a probe counts as good
    (the SLI kind and latency threshold) and which parts make a time slice (the
    parts, their order, the slice and the parts' timing) change the counts.
    """
    threshold = slo.latency_threshold if slo.sli == "latency" else None
    if len(parts) == 1:
        # one part: every probe is one event whatever the part's interval or timeout
        return (slo.sli, threshold, parts[0].id)
    return (slo.sli, threshold, slo.slice, tuple((t.id, t.interval, t.timeout) for t in parts))


def _fingerprint(key: object) -> str:
    return _digest(repr(key))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _legacy_shape(slo: Slo, parts: Sequence[Target]) -> str:
    """The shape earlier releases wrote: the repr of the whole SLO model and the
    parts' timing. Their Slo had no `selector`, so its repr is taken without it."""
    key = repr((slo, tuple((t.id, t.interval, t.timeout) for t in parts)))
    return _digest(key.replace(", selector=None", "", 1))


#: parked SLO windows held in memory (about 8 KB each); the state file keeps more
MAX_PARKED = 1000


class LiveState:
    def __init__(self, config: Config, on_transition: TransitionHook | None = None) -> None:
        self.targets: dict[str, TargetStatus] = {}
        self.slos: dict[str, SloState] = {}
        self._slos_by_target: dict[str, list[SloState]] = {}
        self._slo_keys: dict[str, object] = {}
        #: `shape` fingerprints, computed once per key: the repr of the pydantic models
        #: costs ~10 us per SLO, and every snapshot (each 60 s) asks for all of them
        self._shapes: dict[str, str] = {}
        #: what the shape snapshots were written under before window_key is made of
        #: (restore only, computed on demand: the repr of 10,000 SLO models costs ~0.15 s)
        self._legacy: dict[str, tuple[Slo, Sequence[Target]]] = {}
        #: windows of SLOs a reload removed (or changed), as snapshots by SLO id:
        #: (shape, bytes). Given back if the same SLO returns, and written with the
        #: state, so removing an SLO and adding it back loses none of its history
        self.parked: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._on_transition = on_transition
        #: while a snapshot is being serialised, outcomes for the SLO windows wait
        #: here (see `hold`); None the rest of the time
        self._held: list[tuple[str, float, int | None, float | None]] | None = None
        self.apply_config(config)

    def apply_config(self, config: Config) -> None:
        """Keep state of unchanged targets and SLOs; drop removed ones; add new ones."""
        by_id = {t.id: t for t in config.targets}
        old_targets = self.targets
        self.targets = {}
        for tid, target in by_id.items():
            prev = old_targets.get(tid)
            if prev is not None and prev.target == target:
                self.targets[tid] = prev
            else:
                self.targets[tid] = TargetStatus(target)
        old_slos, old_keys, old_shapes = self.slos, self._slo_keys, self._shapes
        old_state_shapes = {sid: self.shape(sid) for sid in old_slos}
        self.slos, self._slo_keys, self._shapes, self._legacy = {}, {}, {}, {}
        for slo in config.slos:
            prev_state = old_slos.get(slo.id)
            parts = [by_id[t] for t in slo.targets]
            # an SLO keeps its windows across a reload unless what they count changed
            key = window_key(slo, parts)
            self._slo_keys[slo.id] = key
            self._legacy[slo.id] = (slo, parts)
            if old_keys.get(slo.id) == key and slo.id in old_shapes:
                self._shapes[slo.id] = old_shapes[slo.id]
            if prev_state is not None and old_keys.get(slo.id) == key:
                prev_state.slo = slo  # a new objective, window or alert windows: same counts
                self.slos[slo.id] = prev_state
            else:
                self.slos[slo.id] = SloState(
                    slo,
                    intervals={t.id: t.interval for t in parts},
                    timeouts={t.id: t.timeout for t in parts},
                )
                self._unpark(slo.id)
        for sid, state in old_slos.items():
            if self.slos.get(sid) is not state:
                self.park(sid, old_state_shapes[sid], state.to_bytes())
        self._slos_by_target = {}
        for state in self.slos.values():
            for tid in state.parts:
                self._slos_by_target.setdefault(tid, []).append(state)

    # -- scheduler callbacks ---------------------------------------------
    def record(self, target: Target, scheduled: float, result: ProbeResult) -> None:
        status = self.targets.get(target.id)
        if status is None:  # removed by a reload while the probe ran
            return
        previous = status.last
        status.last = result
        status.last_scheduled = scheduled
        if result.ok:
            status.successes += 1
        else:
            status.failures += 1
            reason = result.reason or FailureReason.OTHER
            status.failures_by_reason[reason] = status.failures_by_reason.get(reason, 0) + 1
        if previous is not None and previous.ok == result.ok:
            status.streak += 1
        else:
            status.streak = 1
            if self._on_transition is not None:
                self._on_transition(status, result)
        if self._held is not None:
            self._held.append((target.id, scheduled, int(result.ok), result.duration))
            return
        for slo_state in self._slos_by_target.get(target.id, ()):
            slo_state.record(target.id, scheduled, result.ok, result.duration)

    def record_missed(self, target: Target, scheduled: float) -> None:
        status = self.targets.get(target.id)
        if status is None:
            return
        status.missed += 1
        if self._held is not None:
            self._held.append((target.id, scheduled, None, None))
            return
        for slo_state in self._slos_by_target.get(target.id, ()):
            slo_state.record_no_data(target.id, scheduled)

    # A snapshot must agree with the journal: it is the windows at the instant the
    # journal is cut. Serialising 10,000 SLOs takes ~0.1 s, too long to hold the event
    # loop; instead the windows stand still while it is done in pieces, and what
    # arrives meanwhile (journaled after the cut) is applied when they move again.
    def hold(self) -> None:
        """Freeze the SLO windows (the last-result view stays live) until `release`."""
        if self._held is None:
            self._held = []

    def release(self) -> None:
        """Apply what arrived while held, in order, and let the windows move again."""
        held, self._held = self._held, None
        for outcome in held or ():
            self.replay(*outcome)

    @property
    def held(self) -> bool:
        return self._held is not None

    def has_slos(self, target_id: str) -> bool:
        return target_id in self._slos_by_target

    def shape(self, slo_id: str) -> str:
        """Fingerprint of what shapes an SLO's windows (window_key): a snapshot only
        restores onto the same shape."""
        shape = self._shapes.get(slo_id)
        if shape is None:
            key = self._slo_keys[slo_id]
            shape = self._shapes[slo_id] = _fingerprint(key)
        return shape

    def park(self, slo_id: str, shape: str, data: bytes) -> None:
        """Keep the windows of an SLO that is not running (bounded: the oldest go)."""
        self.parked.pop(slo_id, None)
        self.parked[slo_id] = (shape, data)
        while len(self.parked) > MAX_PARKED:
            self.parked.popitem(last=False)

    def _unpark(self, slo_id: str) -> None:
        """A new SLO state takes the parked windows of the same SLO, if they fit."""
        found = self.parked.get(slo_id)
        if found is None or not self.restores(slo_id, found[0]):
            return
        try:
            self.slos[slo_id].restore(found[1])
        except ValueError:
            return
        del self.parked[slo_id]

    def restores(self, slo_id: str, shape: str) -> bool:
        """Whether a snapshot written under `shape` fits this SLO's windows: today's
        shape, or the one releases before window_key wrote for the same definition."""
        if shape == self.shape(slo_id):
            return True
        legacy = self._legacy.get(slo_id)
        return legacy is not None and shape == _legacy_shape(*legacy)

    def replay(self, target_id: str, t: float, ok: int | None, duration: float | None) -> int:
        """Re-apply a journaled outcome to the SLO windows (not to live counters)."""
        states = self._slos_by_target.get(target_id, ())
        for slo_state in states:
            if ok is None:
                slo_state.record_no_data(target_id, t)
            else:
                slo_state.record(target_id, t, bool(ok), duration or 0.0)
        return 1 if states else 0

    def advance(self, now: float) -> None:
        if self._held is not None:
            return  # a slice closed now could miss held outcomes; the next call closes it
        for slo_state in self.slos.values():
            slo_state.advance(now)

    def window_bytes(self) -> int:
        return sum(s.nbytes() for s in self.slos.values())
