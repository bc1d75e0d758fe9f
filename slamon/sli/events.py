"""Per-target events, of which every SLO window is a view. Pure: time is passed in.

DESIGN.md: events are the truth, views are derived. Per target and per
tick-aligned bucket of every tier (the tiers of `window.DEFAULT_TIERS`), slamon
counts:

- failed probes ("bad"),
- probes slamon could not run ("no data", never valid),
- succeeded probes by latency cell: cell ``i`` holds the durations in
  ``(bounds[i - 1], bounds[i]]``, the last cell those above every bound.

An SLO reads good and valid from its targets' events: every probe that ran is
valid; an availability SLI counts the succeeded ones good, a latency SLI with
threshold T the cells whose upper bound is at most T. That is exact when T is a
bound. The live state makes every threshold configured over a target one of its
bounds, next to `state.latency_bounds` (default `DEFAULT_BOUNDS`); a threshold
edited to a value that was not a bound while the events arrived is answered from
the bound below it (events between that bound and T count as slower than T)
until its own events fill the windows.

When the bounds change (a threshold added or removed), each old cell moves into
the new cell that holds its upper bound: cells merge exactly, and a new bound
inside an old cell leaves that cell's history above the new bound.

Memory: a counter ring (1,960 B with the default tiers; 2,237 B once a 2 h bucket has
passed 255, 3,920 B once a bucket has passed 1,023: see window.py) is allocated when its
first event arrives. A target
whose probes succeed within one cell and sometimes fail holds two rings, as one
SLO's (good, valid) window did; each further cell its latencies spread over adds
one. `counts` remembers its last answer per window asked (~300 B each) and slides it
as events arrive and time moves, instead of asking every ring: a burn check and a scrape
ask the same windows again and again.
"""

from __future__ import annotations

import itertools
import math
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from slamon.config.process import DEFAULT_LATENCY_BOUNDS
from slamon.sli.window import DEFAULT_TIERS, Counts, RollingCounter, Tier, cell_sums

__all__ = ["DEFAULT_BOUNDS", "EVENTS_KEY", "EVENTS_SHAPE", "TargetEvents", "bounds_for",
           "checked_bounds", "events_key"]

#: latency cell bounds a target keeps unless `state.latency_bounds` says otherwise
DEFAULT_BOUNDS = DEFAULT_LATENCY_BOUNDS

#: the state store keeps a target's events under the key `events_key(id)` next to
#: the SLO states: ids start with a letter or digit, so no SLO id is one of these
EVENTS_KEY = "@"
#: the shape target events are stored under: they restore onto any bounds
EVENTS_SHAPE = "events"

_MAGIC = b"SLE"
_VERSION = 1
_HEADER = struct.Struct("<3sBH")  # magic, version, bound count
_BOUND = struct.Struct("<d")
_LEN = struct.Struct("<I")


def events_key(target_id: str) -> str:
    return EVENTS_KEY + target_id


def bounds_for(
    thresholds: Iterable[float | None], defaults: Iterable[float] = DEFAULT_BOUNDS
) -> tuple[float, ...]:
    """`defaults` plus every latency threshold given (None: not a latency SLI)."""
    extra = {t for t in thresholds if t is not None}
    return tuple(sorted(set(defaults) | extra))


def checked_bounds(bounds: Sequence[float]) -> tuple[float, ...]:
    """`bounds` checked (positive, strictly increasing), as the tuple every target with the
    same bounds shares: `TargetEvents.rebound` onto it returns at once when unchanged."""
    if type(bounds) is tuple and (shared := _SHARED_BOUNDS.get(bounds)) is not None:
        return shared  # checked when it was first shared
    out = tuple(float(b) for b in bounds)
    for b in out:
        if not (math.isfinite(b) and b > 0):
            raise ValueError(f"latency bounds must be positive numbers, got {b}")
    if any(a >= b for a, b in itertools.pairwise(out)):
        raise ValueError("latency bounds must be strictly increasing")
    if len(_SHARED_BOUNDS) < _SHARED_BOUNDS_MAX:
        return _SHARED_BOUNDS.setdefault(out, out)
    return _SHARED_BOUNDS.get(out, out)


#: one tuple (and its floats) per distinct set of bounds, shared by every target that has
#: it: a restore read each target's bounds as new floats, ~260 B per target for the same
#: seven numbers. Capped: a config of many distinct thresholds shares the first ones only
_SHARED_BOUNDS: dict[tuple[float, ...], tuple[float, ...]] = {}
_SHARED_BOUNDS_MAX = 4096


#: answers a target keeps at most (its SLOs' windows and thresholds; a reload that
#: changes them leaves the old ones behind until this many)
_MEMO_MAX = 32


def _memo_key(length: float, threshold: float | None) -> float | tuple[float, float]:
    """An availability window's answer is kept under its length alone (the config's float:
    no key object per target), a latency window's under (length, threshold)."""
    return length if threshold is None else (length, threshold)


@lru_cache(maxsize=8)
def _empty(tiers: tuple[Tier, ...]) -> RollingCounter:
    """A ring never written to: answers 0 and validates a query's length."""
    return RollingCounter(tiers)


class TargetEvents:
    """One target's events over the tiers (see the module docstring)."""

    __slots__ = ("_bad", "_bounds", "_cells", "_memo", "_no_data", "_tiers")

    def __init__(
        self, bounds: Sequence[float] = DEFAULT_BOUNDS, tiers: Sequence[Tier] = DEFAULT_TIERS
    ) -> None:
        self._bounds = checked_bounds(bounds)
        self._tiers = tuple(tiers)
        self._cells: list[RollingCounter | None] = [None] * (len(self._bounds) + 1)
        self._bad: RollingCounter | None = None
        self._no_data: RollingCounter | None = None
        # The last answer of `counts` for every window asked (`_memo_key`):
        # [resolution, buckets, tier, first, last, good, valid, good cells], kept equal
        # to the counts over buckets first..last as events arrive and slid by the
        # buckets that moved. A burn check and a scrape ask the same few windows again
        # and again: one answer per window here, where each ring (a cell, failed) kept
        # its own and was asked in turn (~7 KB a target once a scrape asked eight
        # windows, and four ring queries per window). Every ring's head stays within a
        # tier's retention of `first`, so no bucket of an answer is ever dropped
        # behind its back. None until the first query.
        self._memo: dict[float | tuple[float, float], list[Any]] | None = None

    @property
    def bounds(self) -> tuple[float, ...]:
        return self._bounds

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self._tiers

    def exact(self, threshold: float | None) -> bool:
        """Whether `good` for this threshold counts exactly what `is_good` would."""
        return threshold is None or threshold in self._bounds

    # -- writing -------------------------------------------------------------

    def add(self, t: float, ok: bool, duration: float) -> None:
        """One probe scheduled at `t` ran: it succeeded (`ok`) or failed, in `duration` s."""
        if ok:
            cell = bisect_left(self._bounds, duration)  # duration == bound: that bound's cell
            ring = self._cells[cell]
            if ring is None:
                ring = self._cells[cell] = RollingCounter(self._tiers)
        else:
            cell = len(self._cells)  # past every cell: never good
            ring = self._bad
            if ring is None:
                ring = self._bad = RollingCounter(self._tiers)
        clipped = ring.add(t)
        memo = self._memo
        if not memo:
            return
        if clipped:  # a saturated bucket did not count it: answer afresh
            self._memo = None
            return
        stale: list[float | tuple[float, float]] | None = None
        for key, m in memo.items():
            b = math.floor(t / m[0])
            if b < m[3]:
                continue
            if b <= m[4]:
                m[6] += 1
                if cell < m[7]:
                    m[5] += 1
            elif b >= m[3] + m[1]:
                # the ring's head moved a whole retention past `first`: buckets of the
                # answer are gone from it
                if stale is None:
                    stale = []
                stale.append(key)
        if stale:
            for key in stale:
                del memo[key]

    def add_no_data(self, t: float) -> None:
        """slamon could not run the probe scheduled at `t`."""
        ring = self._no_data
        if ring is None:
            ring = self._no_data = RollingCounter(self._tiers)
        ring.add(t)

    # -- reading -------------------------------------------------------------

    def counts(self, now: float, length: float, threshold: float | None = None) -> Counts:
        """Good and valid events over the window (RollingWindow.query semantics):
        good = succeeded within `threshold` (None: succeeded at all)."""
        memo = self._memo
        m = memo.get(_memo_key(length, threshold)) if memo is not None else None
        if m is None or not math.isfinite(now):
            return self._counted(now, length, threshold)
        first, last = math.floor((now - length) / m[0]), math.floor(now / m[0])
        if first == m[3] and last == m[4]:
            return Counts(m[5], m[6])
        was_first, was_last = m[3], m[4]
        # slide forward, while cheaper than counting afresh
        if not (was_first <= first and was_last <= last
                and (first - was_first) + (last - was_last) <= last - first):
            return self._counted(now, length, threshold)
        rings, tier, good_cells = self._rings_by_cell(), m[2], m[7]
        gone = cell_sums(rings, tier, was_first, min(first - 1, was_last), good_cells)
        new = cell_sums(rings, tier, max(first, was_last + 1), last, good_cells)
        m[3], m[4] = first, last
        m[5] += new[0] - gone[0]
        m[6] += new[1] - gone[1]
        return Counts(m[5], m[6])

    def _rings_by_cell(self) -> list[tuple[int, RollingCounter]]:
        """(cell, ring) of every ring that counts valid events; failed is past every cell."""
        out = [(i, r) for i, r in enumerate(self._cells) if r is not None]
        if self._bad is not None:
            out.append((len(self._cells), self._bad))
        return out

    def _counted(self, now: float, length: float, threshold: float | None) -> Counts:
        """`counts` from the rings, remembered when every ring allows it."""
        empty = _empty(self._tiers)
        empty.query(now, length)  # the same errors for a bad query, rings or not
        tier = empty.tier_index(length)
        res, n = self._tiers[tier].resolution, self._tiers[tier].buckets
        first, last = math.floor((now - length) / res), math.floor(now / res)
        good_cells = (len(self._cells) if threshold is None
                      else bisect_right(self._bounds, threshold))
        rings = self._rings_by_cell()
        good, valid = cell_sums(rings, tier, first, last, good_cells)
        # a ring whose head is a retention past `first` dropped buckets the answer would
        # slide over: not remembered
        if all(ring.head(tier) < first + n for _, ring in rings):
            memo = self._memo
            if memo is None:
                memo = self._memo = {}
            elif len(memo) >= _MEMO_MAX:  # windows of earlier configs: start again
                memo.clear()
            memo[_memo_key(length, threshold)] = [
                res, n, tier, first, last, good, valid, good_cells]
        return Counts(good, valid)

    def no_data(self, now: float, length: float) -> int:
        ring = self._no_data if self._no_data is not None else _empty(self._tiers)
        return ring.query(now, length)

    def nbytes(self) -> int:
        return sum(r.nbytes() for r in self._rings() if r is not None)

    def _rings(self) -> list[RollingCounter | None]:
        return [self._bad, self._no_data, *self._cells]

    # -- bounds ----------------------------------------------------------------

    def rebound(self, bounds: Sequence[float]) -> None:
        """Move these events onto other bounds: each old cell goes into the new cell
        that holds its upper bound (see the module docstring)."""
        if bounds is self._bounds:
            return
        new = checked_bounds(bounds)
        if new == self._bounds:
            return
        cells: list[RollingCounter | None] = [None] * (len(new) + 1)
        for i, ring in enumerate(self._cells):
            if ring is None:
                continue
            j = len(new) if i == len(self._bounds) else bisect_left(new, self._bounds[i])
            held = cells[j]
            if held is None:
                cells[j] = ring
            else:
                held.absorb(ring)
        self._bounds, self._cells, self._memo = new, cells, None

    # -- snapshots ---------------------------------------------------------------

    def take(self, other: TargetEvents) -> None:
        """Become `other` (its rings, moved onto this object's bounds), in place: SLO
        states hold this object."""
        bounds = self._bounds
        self._tiers, self._bounds = other._tiers, other._bounds
        self._cells, self._bad, self._no_data = list(other._cells), other._bad, other._no_data
        self._memo = None
        self.rebound(bounds)

    def empty(self) -> bool:
        """Whether no event was ever counted."""
        return all(r is None for r in self._rings())

    def to_bytes(self) -> bytes:
        """Versioned snapshot: the bounds, then each ring (empty when never written)."""
        out = bytearray(_HEADER.pack(_MAGIC, _VERSION, len(self._bounds)))
        for b in self._bounds:
            out += _BOUND.pack(b)
        for ring in self._rings():
            data = ring.to_bytes() if ring is not None else b""
            out += _LEN.pack(len(data))
            out += data
        return bytes(out)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        bounds: Sequence[float] | None = None,
        tiers: Sequence[Tier] = DEFAULT_TIERS,
    ) -> TargetEvents:
        """Inverse of `to_bytes`, moved onto `bounds` when given (see `rebound`);
        raises ValueError on corrupt or foreign data."""
        try:
            magic, version, count = _HEADER.unpack_from(data, 0)
            if magic != _MAGIC:
                raise ValueError("not a slamon target events snapshot")
            if version != _VERSION:
                raise ValueError(f"unsupported target events version {version}")
            pos = _HEADER.size
            stored = struct.unpack_from(f"<{count}d", data, pos)
            pos += count * _BOUND.size
            events = cls(stored, tiers)
            rings: list[RollingCounter | None] = []
            for _ in range(count + 3):
                (n,) = _LEN.unpack_from(data, pos)
                pos += _LEN.size
                if pos + n > len(data):
                    raise ValueError("target events snapshot is truncated")
                rings.append(RollingCounter.from_bytes(data[pos : pos + n], tiers) if n else None)
                pos += n
        except struct.error:
            raise ValueError("target events snapshot is truncated") from None
        if pos != len(data):
            raise ValueError("target events snapshot has trailing bytes")
        events._bad, events._no_data = rings[0], rings[1]
        events._cells = rings[2:]
        if bounds is not None:
            events.rebound(bounds)
        return events

    @classmethod
    def from_window(
        cls,
        good: RollingCounter,
        bad: RollingCounter,
        no_data: RollingCounter | None,
        threshold: float | None,
        bounds: Sequence[float] = DEFAULT_BOUNDS,
        tiers: Sequence[Tier] = DEFAULT_TIERS,
    ) -> TargetEvents:
        """Events rebuilt from an SLO part window of earlier releases, which kept only
        good and valid: good goes to the cell of `threshold` (availability: above every
        bound, the latency being unknown), the rest is counted failed."""
        events = cls(bounds, tiers)
        if threshold is not None and threshold not in events._bounds:
            raise ValueError("the threshold must be one of the bounds")
        i = len(events._bounds) if threshold is None else events._bounds.index(threshold)
        events._cells[i], events._bad, events._no_data = good, bad, no_data
        return events
