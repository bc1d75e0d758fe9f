"""What slamon knows right now: last result per target and the SLO windows.

Written by the scheduler's callbacks, read at scrape time by the metrics
collector (and later the status page), so nothing per-probe touches
prometheus-client objects.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from slamon.config.root import Config
from slamon.config.slo import Slo
from slamon.config.targets import Target
from slamon.probers.base import FailureReason, ProbeResult
from slamon.sli.events import (
    EVENTS_KEY,
    EVENTS_SHAPE,
    TargetEvents,
    bounds_for,
    checked_bounds,
    events_key,
)
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
    """What an SLO's own state counts, and so what must not change for it to be
    kept across a reload or a restart.

    The parts' windows are views of their targets' events, which every edit
    keeps. What an SLO state holds itself is its composite window of time slices
    and its event totals: the objective, description, window and alert windows
    are read when the SLI, budget and burn rates are computed, so an edit of them
    keeps the whole state. What a probe counts as good (the SLI kind and latency
    threshold) and which parts make a time slice (the parts, their order, the
    slice and the parts' timing) make a new state, which carries the slices
    counted so far (`SloState.take_combined`).
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


_GENERATIONS = itertools.count(1)

#: parked SLO states and target events held in memory (a few KB each); the state
#: file keeps more
MAX_PARKED = 1000


class LiveState:
    def __init__(self, config: Config, on_transition: TransitionHook | None = None,
                 pending: Callable[[], None] | None = None) -> None:
        self.targets: dict[str, TargetStatus] = {}
        #: every configured target's events: the truth the SLO windows are views of
        self.events: dict[str, TargetEvents] = {}
        self.slos: dict[str, SloState] = {}
        #: targets whose last results carried a certificate expiry: what the certificate
        #: watch walks each second, instead of every target
        self.cert_targets: set[str] = set()
        #: the config applied, numbered across every live state of the process: only a
        #: new one (a reload) adds or removes targets and SLOs, so a watcher compares it
        #: instead of holding the old dicts
        self.generation = 0
        self._slos_by_target: dict[str, list[SloState]] = {}
        #: the SLOs of more than one target: the only ones `advance` has slices to close in
        self._composites: list[SloState] = []
        self._slo_keys: dict[str, object] = {}
        #: `shape` fingerprints, computed once per key: the repr of the pydantic models
        #: costs ~10 us per SLO, and every snapshot (each 60 s) asks for all of them
        self._shapes: dict[str, str] = {}
        #: what the shape snapshots were written under before window_key is made of
        #: (restore only, computed on demand: the repr of 10,000 SLO models costs ~0.15 s)
        self._legacy: dict[str, tuple[Slo, Sequence[Target]]] = {}
        #: events of targets and states of SLOs a reload removed, as snapshots by
        #: snapshot key (SLO id, or `events_key` of a target): (shape, bytes). Given
        #: back if the same target or SLO returns, and written with the state, so
        #: removing one and adding it back loses none of its history
        self.parked: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._on_transition = on_transition
        #: counts what whoever records outcomes here still queues (see `settle`)
        self._pending = pending
        #: while a snapshot is being serialised, outcomes for the SLO windows wait
        #: here (see `hold`); None the rest of the time
        self._held: list[tuple[str, float, int | None, float | None]] | None = None
        #: SLOs whose windows counted an event since the last `take_counted`, in order
        #: (a dict as an ordered set): the burn check evaluates those and its own
        #: rechecks, not a pass over every SLO each second
        self._counted: dict[SloState, None] = {}
        self.apply_config(config)

    def apply_config(self, config: Config) -> None:
        """Keep state of unchanged targets and SLOs; drop removed ones; add new ones.

        Every target keeps its events through any edit (moved onto new latency
        bounds when the thresholds over it change); a removed target's are parked.
        """
        by_id = {t.id: t for t in config.targets}
        old_targets = self.targets
        self.targets = {}
        for tid, target in by_id.items():
            prev = old_targets.get(tid)
            if prev is not None and (prev.target is target or prev.target == target):
                self.targets[tid] = prev
            else:
                self.targets[tid] = TargetStatus(target)
        thresholds: dict[str, set[float]] = {}
        for slo in config.slos:
            if slo.sli == "latency" and slo.latency_threshold is not None:
                for tid in slo.targets:
                    thresholds.setdefault(tid, set()).add(slo.latency_threshold)
        self.generation = next(_GENERATIONS)
        self.cert_targets &= self.targets.keys()
        old_events = self.events
        self.events = {}
        # one checked tuple per distinct set of thresholds: most targets have none
        bounds_of: dict[frozenset[float], tuple[float, ...]] = {}
        for tid in by_id:
            over = frozenset(thresholds.get(tid, ()))
            bounds = bounds_of.get(over)
            if bounds is None:
                bounds = bounds_of[over] = checked_bounds(
                    bounds_for(over, config.state.latency_bounds))
            events = old_events.pop(tid, None)
            if events is None:
                events = TargetEvents(bounds)
                self._unpark_events(tid, events)
            else:
                events.rebound(bounds)
            self.events[tid] = events
        for tid, events in old_events.items():
            self.park(events_key(tid), EVENTS_SHAPE, events.to_bytes())
        old_slos, old_keys, old_shapes = self.slos, self._slo_keys, self._shapes
        kept = {slo.id for slo in config.slos}
        # the shapes of the SLOs the config removes, which are parked under them (each a
        # hash of its window key: not worth working out for the ones that stay)
        removed_shapes = {sid: self.shape(sid) for sid in old_slos if sid not in kept}
        self.slos, self._slo_keys, self._shapes, self._legacy = {}, {}, {}, {}
        for slo in config.slos:
            prev_state = old_slos.get(slo.id)
            parts = [by_id[t] for t in slo.targets]
            key = window_key(slo, parts)
            self._slo_keys[slo.id] = key
            self._legacy[slo.id] = (slo, parts)
            if old_keys.get(slo.id) == key and slo.id in old_shapes:
                self._shapes[slo.id] = old_shapes[slo.id]
            if prev_state is not None and old_keys.get(slo.id) == key:
                prev_state.slo = slo  # a new objective, window or alert windows: same state
                self.slos[slo.id] = prev_state
                continue
            state = self.slos[slo.id] = SloState(
                slo,
                intervals={t.id: t.interval for t in parts},
                timeouts={t.id: t.timeout for t in parts},
                events={t.id: self.events[t.id] for t in parts},
            )
            if prev_state is not None:
                state.take_combined(prev_state)
            else:
                self._unpark(slo.id)
        for sid, shape in removed_shapes.items():
            self.park(sid, shape, old_slos[sid].to_bytes())
        self._composites = [state for state in self.slos.values() if state.composite]
        self._slos_by_target = {}
        for state in self.slos.values():
            for tid in state.parts:
                self._slos_by_target.setdefault(tid, []).append(state)

    def settle(self) -> None:
        """Whoever writes outcomes here may queue them and count them in batches (the
        daemon does): a reader of the status or windows, which must see every outcome
        so far, calls this first."""
        if self._pending is not None:
            self._pending()

    # -- scheduler callbacks ---------------------------------------------
    def record(self, target: Target, scheduled: float, result: ProbeResult) -> None:
        """`record_status` and `record_windows` at once."""
        if self.record_status(target, scheduled, result):
            self.record_windows(target.id, scheduled, result.ok, result.duration)

    def record_status(self, target: Target, scheduled: float, result: ProbeResult) -> bool:
        """The target's last result, counters and up/down transition; False if it is not
        configured (removed by a reload while the probe ran)."""
        status = self.targets.get(target.id)
        if status is None:
            return False
        previous = status.last
        status.last = result
        status.last_scheduled = scheduled
        if result.cert_expiry is not None:
            self.cert_targets.add(target.id)
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
        return True

    def record_windows(self, target_id: str, scheduled: float, ok: bool | None,
                       duration: float | None) -> None:
        """An outcome (`ok` None: no data) counted in the target's events and its SLOs'
        windows, or kept until `release` while they are held; after its `record_status`
        (or `record_missed_status`), and in the same order as those."""
        outcome = None if ok is None else int(ok)
        if self._held is not None:
            self._held.append((target_id, scheduled, outcome, duration))
            return
        self.replay(target_id, scheduled, outcome, duration)

    def record_missed(self, target: Target, scheduled: float) -> None:
        """`record_missed_status` and `record_windows` at once."""
        if self.record_missed_status(target):
            self.record_windows(target.id, scheduled, None, None)

    def record_missed_status(self, target: Target) -> bool:
        """A tick slamon could not run, in the target's counters; False if the target is
        not configured."""
        status = self.targets.get(target.id)
        if status is None:
            return False
        status.missed += 1
        return True

    # A snapshot must agree with the journal: it is the windows at the instant the
    # journal is cut. Serialising 10,000 SLOs takes ~0.1 s, too long to hold the event
    # loop; instead the windows stand still while it is done in pieces, and what
    # arrives meanwhile (journaled after the cut) is applied when they move again.
    def hold(self) -> None:
        """Freeze the events and SLO windows (the last-result view stays live) until
        `release`."""
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

    def shape(self, slo_id: str) -> str:
        """Fingerprint of what shapes an SLO's windows (window_key): a snapshot only
        restores onto the same shape."""
        return self._shape_of(slo_id, self._slo_keys[slo_id])

    def _shape_of(self, slo_id: str, key: object) -> str:
        """The shape of `slo_id` under window key `key`, remembered while that key is the
        SLO's current one."""
        current = self._slo_keys.get(slo_id) is key
        shape = self._shapes.get(slo_id) if current else None
        if shape is None:
            shape = _fingerprint(key)
            if current:
                self._shapes[slo_id] = shape
        return shape

    def park(self, key: str, shape: str, data: bytes) -> None:
        """Keep the snapshot of an SLO or a target (`events_key`) that is not running
        (bounded: the oldest go)."""
        self.parked.pop(key, None)
        self.parked[key] = (shape, data)
        while len(self.parked) > MAX_PARKED:
            self.parked.popitem(last=False)

    def _unpark(self, slo_id: str) -> None:
        """A new SLO state takes the parked state of the same SLO, if it fits."""
        found = self.parked.get(slo_id)
        if found is None or not self.restores(slo_id, found[0]):
            return
        state = self.slos[slo_id]
        try:
            self._adopt(state.restore(found[1]))
        except ValueError:
            return
        del self.parked[slo_id]

    def _unpark_events(self, target_id: str, events: TargetEvents) -> None:
        """A target that comes back takes its parked events."""
        found = self.parked.pop(events_key(target_id), None)
        if found is None:
            return
        try:
            events.take(TargetEvents.from_bytes(found[1]))
        except ValueError:
            return

    def _adopt(self, events: Mapping[str, TargetEvents]) -> None:
        """Events an SLO snapshot of earlier releases held for its parts become the
        targets' events, where a target has none of its own yet."""
        for tid, found in events.items():
            mine = self.events.get(tid)
            if mine is not None and mine.empty():
                mine.take(found)

    def restore(self, snapshots: Mapping[str, tuple[str, bytes]]) -> list[tuple[str, str]]:
        """Load a state file's snapshots: targets' events, then SLO states (whose
        earlier-release part windows fill targets still without events). Snapshots
        of targets and SLOs not configured are parked. Returns (key, reason) for
        every snapshot that could not be used."""
        problems: list[tuple[str, str]] = []
        for key, (shape, data) in snapshots.items():
            if not key.startswith(EVENTS_KEY):
                continue
            events = self.events.get(key[len(EVENTS_KEY):])
            if events is None:
                self.park(key, shape, data)
                continue
            try:
                events.take(TargetEvents.from_bytes(data))
            except ValueError as exc:
                problems.append((key, str(exc)))
        for key, (shape, data) in snapshots.items():
            if key.startswith(EVENTS_KEY):
                continue
            state = self.slos.get(key)
            if state is None:
                self.park(key, shape, data)  # a reload may bring it back
            elif self.restores(key, shape):
                try:
                    self._adopt(state.restore(data))
                except ValueError as exc:
                    problems.append((key, str(exc)))
        return problems

    def snapshot_sources(self) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
        """(snapshot key, shape, serialiser) of every running target and SLO, as of this
        call. The running set and each SLO's window key are taken now and the rest is
        worked out as the iterator is read, so it may be read between turns of the event
        loop: a reload meanwhile changes nothing it yields (a shape is that of the
        window key taken, never of a later one)."""
        events = list(self.events.items())
        keys = self._slo_keys
        slos = [(sid, state, keys[sid]) for sid, state in self.slos.items()]
        return self._sources(events, slos)

    def _sources(self, events: list[tuple[str, TargetEvents]],
                 slos: list[tuple[str, SloState, object]]
                 ) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
        for tid, target_events in events:
            yield events_key(tid), EVENTS_SHAPE, target_events.to_bytes
        for sid, state, key in slos:
            yield sid, self._shape_of(sid, key), state.to_bytes

    def restores(self, slo_id: str, shape: str) -> bool:
        """Whether a snapshot written under `shape` fits this SLO's windows: today's
        shape, or the one releases before window_key wrote for the same definition."""
        if shape == self.shape(slo_id):
            return True
        legacy = self._legacy.get(slo_id)
        return legacy is not None and shape == _legacy_shape(*legacy)

    def replay(self, target_id: str, t: float, ok: int | None, duration: float | None) -> int:
        """Re-apply a journaled outcome to the events and SLO windows (not to live
        counters); 1 if the target is configured, else 0."""
        events = self.events.get(target_id)
        if events is None:
            return 0
        if ok is None:
            events.add_no_data(t)
            return 1
        events.add(t, bool(ok), duration or 0.0)
        for slo_state in self._slos_by_target.get(target_id, ()):
            slo_state.record(target_id, t, bool(ok), duration or 0.0)
            self._counted[slo_state] = None
        return 1

    def advance(self, now: float) -> None:
        if self._held is not None:
            return  # a slice closed now could miss held outcomes; the next call closes it
        for slo_state in self._composites:
            valid = slo_state.valid_total
            slo_state.advance(now)
            if slo_state.valid_total != valid:  # a composite counts its events as slices close
                self._counted[slo_state] = None

    def take_counted(self) -> list[SloState]:
        """The SLOs whose windows counted a valid event since the last call (a state a
        reload replaced may be among them: look the SLO up again)."""
        counted = list(self._counted)
        self._counted.clear()
        return counted

    def counters(self) -> list[TargetEvents | SloState]:
        """What holds counters: every target's events and every SLO (its own windows)."""
        return [*self.events.values(), *self.slos.values()]

    def window_bytes(self) -> int:
        """Bytes of counters (`counters`), in one go."""
        return sum(c.nbytes() for c in self.counters())
