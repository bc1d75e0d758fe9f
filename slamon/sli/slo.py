"""SLO evaluation over rolling windows: SLI, error budget, burn rate. Pure: time is passed in.

SLI = good / valid. A probe slamon could not run is *no data*: neither good nor
bad, and not valid, so slamon's own trouble never moves an SLI (DESIGN.md).

Composite SLOs (several parts, e.g. web + API + login) keep one window per part
and a combined window of time slices: slices are ``[k*L, (k+1)*L)`` aligned to
the epoch, with L = ``slo.slice`` or the longest part interval. A slice is valid
iff every part had at least one valid probe scheduled in it, and good iff it is
valid and every probe of every part in it was good; the combined SLI is good
slices / valid slices, i.e. "the service worked as a whole". A slice is closed
(added to the combined window at its start time) once its end plus the longest
part timeout has passed, since no result for it can arrive later; until then it
is held in a small dict of open slices.

A part's window is a view of its target's events (`slamon.sli.events`): the
live state keeps one `TargetEvents` per target, shared by every SLO over it, so
an SLO edited, or a target added to a composite SLO, reads the events the target
already has. A state made without them (tests, tools) keeps its own.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from slamon.config.slo import Slo
from slamon.sli.events import TargetEvents, bounds_for
from slamon.sli.window import DEFAULT_TIERS, Counts, RollingCounter, RollingWindow, Tier

__all__ = ["SloState", "is_good"]

_NEVER = -(1 << 62)
#: `_bits` of a single-part SLO, which has no slices (never written to)
_NO_BITS: Mapping[str, int] = MappingProxyType({})
_SNAP_HEADER = struct.Struct("<3sBH")  # magic, version, part count
_SNAP_COUNTS = struct.Struct("<BH")  # the header after its magic
_SNAP_MAGIC = b"SLS"
#: 1: every part's (good, valid) window inside; 2: the parts' events only when the
#: state owns them (a flag byte after the header)
_SNAP_VERSION = 2
_FLAG = struct.Struct("<B")
_LEN = struct.Struct("<I")
_TAIL = struct.Struct("<qQI")  # closed_below, late, open slice count
_SLICE = struct.Struct("<q")


def is_good(slo: Slo, ok: bool, duration: float) -> bool:
    """Whether one probe result is a good event for `slo` (see SloState.record).

    For a latency SLI a failed probe is valid and bad: the user did not get a fast
    good answer, and excluding failures would let an outage (all probes failing
    fast or timing out) leave the latency SLI untouched or even improve it.
    """
    if not ok:
        return False
    threshold = slo.latency_threshold if slo.sli == "latency" else None
    return threshold is None or duration <= threshold


class _Reader:
    """Bounds-checked cursor over a snapshot; every failure is a ValueError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("SLO snapshot is truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: struct.Struct) -> tuple[int, ...]:
        values: tuple[int, ...] = fmt.unpack(self.take(fmt.size))
        return values

    def blob(self) -> bytes:
        (n,) = self.unpack(_LEN)
        return self.take(n)


class SloState:
    """Windows and verdicts for one SLO.

    `intervals` and `timeouts` map every part (target id in ``slo.targets``) to
    its probe interval and timeout in seconds; they set the composite slice
    length and how long a slice waits for late results. `events` maps every part
    to its target's events, which the caller keeps up to date (see
    `LiveState.record`); without it the state keeps its own and counts into them.
    """

    __slots__ = (
        "_all_mask",
        "_bits",
        "_close_delay",
        "_closed_below",
        "_combined",
        "_events",
        "_open",
        "_owns",
        "_threshold",
        "_tiers",
        "composite",
        "good_total",
        "last_bad",
        "late",
        "parts",
        "slice_length",
        "slo",
        "valid_total",
    )

    def __init__(
        self,
        slo: Slo,
        intervals: Mapping[str, float],
        timeouts: Mapping[str, float],
        tiers: Sequence[Tier] = DEFAULT_TIERS,
        events: Mapping[str, TargetEvents] | None = None,
    ) -> None:
        self.slo = slo
        self.parts: tuple[str, ...] = tuple(slo.targets)
        self.composite: bool = len(self.parts) > 1
        for part in self.parts:
            if part not in intervals or part not in timeouts:
                raise ValueError(f"SLO {slo.id!r}: no interval/timeout given for part {part!r}")
        self._tiers = tuple(tiers)
        self._threshold = slo.latency_threshold if slo.sli == "latency" else None
        self._owns = events is None
        if events is None:
            bounds = bounds_for([self._threshold])
            self._events = {part: TargetEvents(bounds, self._tiers) for part in self.parts}
        else:
            missing = [p for p in self.parts if p not in events]
            if missing:
                raise ValueError(f"SLO {slo.id!r}: no events given for part {missing[0]!r}")
            self._events = {part: events[part] for part in self.parts}
        #: results that arrived after their composite slice was closed (not in the combined SLI)
        self.late = 0
        #: combined good and valid events counted since this state was made (the
        #: `slamon_sli_*_total` counters: Prometheus takes a new state as a counter reset)
        self.good_total = 0
        self.valid_total = 0
        #: scheduled time of the latest bad event (-inf: none): burn checks skip clean SLOs.
        #: A state made over events with history does not know it: checks must look.
        self.last_bad = -math.inf if self._owns else math.inf
        # a slice's mask bit per part: composite SLOs only (one shared empty map otherwise)
        self._bits = ({part: 1 << i for i, part in enumerate(self.parts)}
                      if self.composite else _NO_BITS)
        self._all_mask = (1 << len(self.parts)) - 1
        #: open slices: index -> [mask of parts with a valid probe, mask of parts with a bad one]
        self._open: dict[int, list[int]] = {}
        self._closed_below = _NEVER
        self._combined: RollingWindow | None = None
        if self.composite:
            longest = max(intervals[p] for p in self.parts)
            self.slice_length: float = slo.slice if slo.slice is not None else longest
            if not self.slice_length > 0:
                raise ValueError(f"SLO {slo.id!r}: slice length must be positive")
            self._close_delay = max(timeouts[p] for p in self.parts)
            self._combined = RollingWindow(self._tiers)
        else:
            self.slice_length = 0.0
            self._close_delay = 0.0

    def _part(self, part: str) -> TargetEvents:
        try:
            return self._events[part]
        except KeyError:
            raise KeyError(f"{part!r} is not a part of SLO {self.slo.id!r}") from None

    def record(self, target_id: str, t: float, ok: bool, duration: float) -> None:
        """Count one probe result; `t` is the probe's scheduled time.

        Good as defined by `is_good`: for a latency SLI a failed probe is valid and bad.
        """
        events = self._part(target_id)
        if self._owns:
            events.add(t, ok, duration)
        good = ok and (self._threshold is None or duration <= self._threshold)  # is_good, inlined
        if not good and t > self.last_bad:
            self.last_bad = t
        if not self.composite:
            self.good_total += good
            self.valid_total += 1
            return
        k = math.floor(t / self.slice_length)
        if k < self._closed_below:
            self.late += 1
            return
        state = self._open.get(k)
        if state is None:
            state = self._open[k] = [0, 0]
        bit = self._bits[target_id]
        state[0] |= bit
        if not good:
            state[1] |= bit
        # the result of a probe scheduled at t is in hand, so now >= t: closing what
        # advance(t) would close keeps the open slices bounded even if nobody calls advance
        self.advance(t)

    def record_no_data(self, target_id: str, t: float) -> None:
        """slamon could not run the probe scheduled at `t`: neither good nor bad, not valid."""
        events = self._part(target_id)
        if self._owns:
            events.add_no_data(t)

    def advance(self, now: float) -> None:
        """Composite only: close slices whose end + longest part timeout <= now."""
        combined = self._combined
        if combined is None:
            return
        # slice k ends at (k+1)*L; it is closable when (k+1)*L + delay <= now
        below = math.floor((now - self._close_delay) / self.slice_length)
        if below <= self._closed_below:
            return
        self._closed_below = below
        if not self._open:
            return
        for k in sorted(k for k in self._open if k < below):
            valid_mask, bad_mask = self._open.pop(k)
            if valid_mask == self._all_mask:
                combined.add(k * self.slice_length, 1 if bad_mask == 0 else 0, 1)
                self.good_total += bad_mask == 0
                self.valid_total += 1
                if bad_mask:
                    self.last_bad = max(self.last_bad, k * self.slice_length)

    @property
    def open_slices(self) -> int:
        """Composite slices still waiting for results (bounded by ~delay/L + 2)."""
        return len(self._open)

    def counts(self, now: float, length: float, part: str | None = None) -> Counts:
        """Good and valid counts (RollingWindow.query semantics); part None = combined.

        Combined counts are slices, and only closed slices: they lag `now` by up
        to one slice plus the longest part timeout.
        """
        if part is None:
            if self._combined is not None:
                return self._combined.query(now, length)
            part = self.parts[0]
        return self._part(part).counts(now, length, self._threshold)

    def no_data(self, now: float, length: float, part: str | None = None) -> int:
        """No-data events over the window, for one part or summed over all parts."""
        if part is not None:
            return self._part(part).no_data(now, length)
        return sum(self._events[p].no_data(now, length) for p in self.parts)

    def sli(self, now: float, length: float, part: str | None = None) -> float | None:
        """good / valid, or None when there is no valid event in the window."""
        good, valid = self.counts(now, length, part)
        return good / valid if valid else None

    def error_budget_remaining(self, now: float) -> float | None:
        """Fraction of the error budget left over ``slo.window``:
        ``1 - bad / (valid * (1 - objective))``; negative once overspent."""
        good, valid = self.counts(now, self.slo.window)
        if not valid:
            return None
        return 1.0 - (valid - good) / (valid * (1.0 - self.slo.objective))

    def burn_rate(self, now: float, length: float) -> float | None:
        """How fast the budget burns over the window: ``(1 - sli) / (1 - objective)``;
        1.0 spends exactly the budget over the SLO window."""
        sli = self.sli(now, length)
        if sli is None:
            return None
        return (1.0 - sli) / (1.0 - self.slo.objective)

    def nbytes(self) -> int:
        """Bytes held by this SLO's own counters: its combined window, and its parts'
        events when it keeps its own (shared events are the live state's)."""
        total = self._combined.nbytes() if self._combined is not None else 0
        if self._owns:
            total += sum(e.nbytes() for e in self._events.values())
        return total

    def take_combined(self, other: SloState) -> None:
        """Carry another state's combined window (this SLO before an edit of its
        parts or their timing) into this one: the service's history as it was
        measured, slices closed under the definition of their time."""
        if self._combined is None or other._combined is None:
            return
        self._combined.absorb(other._combined)
        self.last_bad = math.inf

    # -- snapshots for the state store ---------------------------------------------

    def to_bytes(self) -> bytes:
        """Versioned snapshot of the combined window, open slices, late count, and
        the parts' events when this state keeps its own.

        Restore it with `restore` onto a SloState of the same shape (parts, tiers).
        """
        out = bytearray(_SNAP_HEADER.pack(_SNAP_MAGIC, _SNAP_VERSION, len(self.parts)))
        out.extend(_FLAG.pack(self._owns))

        def blob(data: bytes) -> None:
            out.extend(_LEN.pack(len(data)))
            out.extend(data)

        for part in self.parts:
            blob(part.encode())
            if self._owns:
                blob(self._events[part].to_bytes())
        if self._combined is not None:
            blob(self._combined.to_bytes())
            out.extend(_TAIL.pack(self._closed_below, self.late, len(self._open)))
            width = (len(self.parts) + 7) // 8
            for k in sorted(self._open):
                valid_mask, bad_mask = self._open[k]
                out.extend(_SLICE.pack(k))
                out.extend(valid_mask.to_bytes(width, "little"))
                out.extend(bad_mask.to_bytes(width, "little"))
        return bytes(out)

    def restore(self, data: bytes) -> dict[str, TargetEvents]:
        """Replace this state with a `to_bytes` snapshot; all or nothing.

        Returns the parts' events the snapshot holds, made on this state's
        bounds (a snapshot of a state that kept its own, or of earlier releases,
        whose part windows become events as `TargetEvents.from_window` says).
        A state that keeps its own takes them; shared events are the caller's.
        Raises ValueError if the snapshot is corrupt or of another shape.
        """
        r = _Reader(data)
        if r.take(len(_SNAP_MAGIC)) != _SNAP_MAGIC:
            raise ValueError("not a slamon SLO snapshot")
        version, nparts = r.unpack(_SNAP_COUNTS)
        if version not in (1, _SNAP_VERSION):
            raise ValueError(f"unsupported SLO snapshot version {version}")
        if nparts != len(self.parts):
            raise ValueError("SLO snapshot has other parts")
        with_events = True if version == 1 else bool(r.unpack(_FLAG)[0])
        events: dict[str, TargetEvents] = {}
        for part in self.parts:
            if r.blob() != part.encode():
                raise ValueError("SLO snapshot has other parts")
            if version == 1:
                good, bad = RollingWindow.from_bytes(r.blob(), self._tiers).split()
                raw = r.blob()
                no_data = RollingCounter.from_bytes(raw, self._tiers) if raw else None
                events[part] = TargetEvents.from_window(
                    good, bad, no_data, self._threshold, bounds_for([self._threshold]),
                    self._tiers)
                events[part].rebound(self._events[part].bounds)
            elif with_events:
                events[part] = TargetEvents.from_bytes(
                    r.blob(), self._events[part].bounds, self._tiers)
        combined = None
        closed_below, late = _NEVER, 0
        open_slices: dict[int, list[int]] = {}
        if self.composite:
            combined = RollingWindow.from_bytes(r.blob(), self._tiers)
            closed_below, late, count = r.unpack(_TAIL)
            width = (len(self.parts) + 7) // 8
            for _ in range(count):
                (k,) = r.unpack(_SLICE)
                valid_mask = int.from_bytes(r.take(width), "little")
                bad_mask = int.from_bytes(r.take(width), "little")
                if valid_mask > self._all_mask or bad_mask & ~valid_mask:
                    raise ValueError("SLO snapshot is corrupt: bad slice mask")
                open_slices[k] = [valid_mask, bad_mask]
        if r.pos != len(data):
            raise ValueError("SLO snapshot has trailing bytes")
        self.last_bad = math.inf  # unknown after a restore: burn checks must look
        if self._owns and events:
            self._events = events
        self._combined = combined
        self._closed_below, self.late, self._open = closed_below, late, open_slices
        return events
