"""Multi-resolution rolling windows of (good, valid) counters. Pure: time is passed in.

Why rings of several resolutions: an SLO window can be 90 days while burn-rate
alerts look at the last 5 minutes. Fine buckets for recent time and coarse ones
for long windows keep the memory per window constant (4 or 8 KB with
DEFAULT_TIERS, see "Counter width") whatever the window lengths asked for.

Layout: every tier is a ring of `buckets` slots; the slot of absolute bucket
index ``b = floor(t / resolution)`` is ``b % buckets``. Each tier remembers its
*head*, the largest bucket index ever written. A tier holds exactly the buckets
with index in ``(head - buckets, head]``; slots are cleared when the head moves
past them, so data from an older lap of the ring is never counted again.

Counter width: a ring's counters start as uint8 and the whole ring widens to
uint16 the first time a bucket passes 255, so a target probed every 30 s or less
often (at most 240 events in a 2 h bucket) keeps half the memory. uint16 counters
(``COUNTER_MAX`` = 65535) saturate rather than wrap. The minimum probe interval is
1 s, so one window receives at most ``resolution`` events per bucket (7200 for the
2 h tier): a 9x margin. Snapshots store uint16 whatever the width in memory.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Self

__all__ = [
    "COUNTER_MAX",
    "DEFAULT_TIERS",
    "Counts",
    "RollingCounter",
    "RollingWindow",
    "Tier",
]

#: saturation value of one counter (uint16)
COUNTER_MAX = 0xFFFF
#: the width a ring starts with, and the one it widens to (and snapshots store)
_NARROW = "B"
_TYPECODE = "H"
_WIDTH = array(_TYPECODE).itemsize
#: head of a tier that has never been written: every index is "newer"
_NO_HEAD = -(1 << 62)
_MAGIC = b"SLW"
_VERSION = 1
_HEADER = struct.Struct("<3sBBH")  # magic, version, fields, tier count
_TIER = struct.Struct("<dIq")  # resolution, buckets, head


@dataclass(frozen=True)
class Tier:
    """One ring: `buckets` buckets of `resolution` seconds each."""

    resolution: float
    buckets: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.resolution) and self.resolution > 0):
            raise ValueError(f"tier resolution must be a positive number, got {self.resolution}")
        if self.buckets < 2:
            raise ValueError(f"a tier needs at least 2 buckets, got {self.buckets}")

    @property
    def retention(self) -> float:
        """Longest query length this tier answers.

        A query of length L spans up to ceil(L / resolution) + 1 aligned buckets,
        so a ring of n buckets answers L <= (n - 1) * resolution.
        """
        return (self.buckets - 1) * self.resolution


#: 10 min at 10 s, 6 h at 1 min, 3 d at 10 min, 92 d at 2 h (1960 buckets: 7,840 bytes
#: for (good, valid) in uint16, 3,920 in uint8).
#: Every resolution divides a day (the status page's per-day bars). The top tier is
#: 2 h, not 1 h: it answers only windows longer than 3 d (the SLO window itself),
#: where 2 h of alignment is <= 0.3 % of a 30 d window, and it saves 4 KB per window.
#: Snapshots of the older 1 h x 2209 tier are migrated (see `_load`).
DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(10.0, 61),
    Tier(60.0, 361),
    Tier(600.0, 433),
    Tier(7200.0, 1105),
)


class Counts(NamedTuple):
    good: int
    valid: int


@lru_cache(maxsize=32)
def _layout(tiers: tuple[Tier, ...]) -> tuple[tuple[float, int, int], ...]:
    """(resolution, buckets, offset in the flat arrays) per tier; shared by all windows."""
    if not tiers:
        raise ValueError("at least one tier is required")
    out: list[tuple[float, int, int]] = []
    offset = 0
    previous = 0.0
    for tier in tiers:
        if tier.resolution <= previous:
            raise ValueError("tiers must be ordered by strictly increasing resolution")
        previous = tier.resolution
        out.append((tier.resolution, tier.buckets, offset))
        offset += tier.buckets
    return tuple(out)


def _zeros(count: int, typecode: str = _NARROW) -> array[int]:
    # repetition allocates exactly; array(code, bytes(...)) over-allocates by ~6 %
    return array(typecode, [0]) * count


def _exact(typecode: str, values: array[int] | bytes) -> array[int]:
    """`array(typecode, values)` in a buffer of exactly its size: built from bytes or from
    another array, an array keeps ~6 % spare room, ~130 B per ring for its life."""
    built = array(typecode, values)
    out = _zeros(len(built), typecode)
    out[:] = built
    return out


def _low_bytes(raw: bytes, byteorder: str = sys.byteorder) -> bytes | None:
    """The low bytes of uint16 values stored in `byteorder`, or None if a high byte is
    not zero. By bytes, not by element: ~2 us a ring, not ~70."""
    low, high = (raw[0::2], raw[1::2]) if byteorder == "little" else (raw[1::2], raw[0::2])
    return low if high.count(0) == len(high) else None


def _fitted(counters: Sequence[array[int]]) -> tuple[array[int], ...]:
    """A ring's uint16 counters as uint8 when every value of every one fits, else as
    they are: a ring's counters always have one width."""
    narrow = []
    for c in counters:
        low = _low_bytes(c.tobytes())
        if low is None:
            return tuple(counters)
        narrow.append(_exact(_NARROW, low))
    return tuple(narrow)


@lru_cache(maxsize=8)
def _tier_block(count: int) -> struct.Struct:
    """The `count` tier records of a snapshot, read in one call."""
    return struct.Struct("<" + "dIq" * count)


@lru_cache(maxsize=32)
def _tier_shape(tiers: tuple[Tier, ...]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """The resolutions and the bucket counts of `tiers`, as a snapshot lists them."""
    return tuple(t.resolution for t in tiers), tuple(t.buckets for t in tiers)


def _from_stored(body: bytes, size: int, fields: int) -> tuple[array[int], ...]:
    """A snapshot's counters (little-endian uint16, `fields` runs of `size`) in the
    width `_fitted` gives them, read from the bytes: uint8 straight from the low bytes
    when every high byte is zero, without building the wide arrays first."""
    runs = [body[f * size * _WIDTH: (f + 1) * size * _WIDTH] for f in range(fields)]
    lows = [_low_bytes(run, "little") for run in runs]
    if all(low is not None for low in lows):
        return tuple(_exact(_NARROW, low) for low in lows if low is not None)
    out = []
    for run in runs:
        c = _zeros(size, _TYPECODE)
        c[:] = array(_TYPECODE, run)
        if sys.byteorder == "big":  # pragma: no cover - little-endian hosts only in CI
            c.byteswap()
        out.append(c)
    return tuple(out)


class _TieredRing:
    """Ring bookkeeping shared by RollingWindow (2 counters) and RollingCounter (1)."""

    __slots__ = ("_cache", "_counters", "_heads", "_layout", "_tiers")

    _FIELDS = 0

    def __init__(self, tiers: Sequence[Tier] = DEFAULT_TIERS) -> None:
        self._tiers = tuple(tiers)
        self._layout = _layout(self._tiers)
        # int64s in one buffer: a list held a 32-byte int object per tier
        self._heads = array("q", [_NO_HEAD]) * len(self._layout)
        size = sum(n for _, n, _ in self._layout)
        self._counters = tuple(_zeros(size) for _ in range(self._FIELDS))
        # The last answer for every length queried: length -> [tier, first bucket,
        # last bucket, sum per counter...], kept equal to the sums over
        # [first, last] as events arrive. A scrape asks the same lengths every few
        # seconds; sliding an answer by the buckets that moved costs a few
        # additions where summing 360 buckets again cost ~15 us.
        # None until the first query: a window nobody reads costs nothing.
        self._cache: dict[float, list[int]] | None = None

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self._tiers

    @property
    def retention(self) -> float:
        """Longest query length answerable (the largest tier retention)."""
        return max(t.retention for t in self._tiers)

    def nbytes(self) -> int:
        """Bytes held by the counter arrays (excluding fixed Python object overhead)."""
        return sum(len(c) * c.itemsize for c in self._counters)

    def tier_for(self, length: float) -> Tier:
        """The finest tier whose retention covers `length`: the one `query` uses."""
        return self._tiers[self._pick(length)]

    def span(self, now: float, length: float) -> tuple[float, float]:
        """[start, end) in seconds actually covered by ``query(now, length)``."""
        res = self._layout[self._pick(length)][0]
        return (math.floor((now - length) / res) * res, (math.floor(now / res) + 1) * res)

    # -- internals -------------------------------------------------------------

    def _widen(self) -> None:
        """uint8 -> uint16 counters, once a bucket needs more than 255."""
        self._counters = tuple(_exact(_TYPECODE, c) for c in self._counters)

    def _add(self, t: float, values: tuple[int, ...]) -> bool:
        """Count `values` (one per counter) at time t in every tier that retains t;
        True if a counter saturated (some of `values` were not counted).

        Moves every tier's head up to t's bucket first, clearing the slots of
        older laps (and forgetting a cached answer that summed one of them).
        Counters saturate at COUNTER_MAX; a cached answer gets what was added.
        """
        clipped = False
        if not math.isfinite(t):
            raise ValueError(f"event time must be finite, got {t}")
        heads = self._heads
        counters = self._counters
        # a narrow ring widens when a bucket passes 255; a wide one saturates
        limit = 0xFF if counters[0].typecode == _NARROW else COUNTER_MAX
        cache = self._cache
        # per tier, (bucket, what each counter really gained) for the cached answers
        touched: list[tuple[int, list[int]] | None] | None = [None] * len(heads) if cache else None
        for i, (res, n, off) in enumerate(self._layout):
            b = math.floor(t / res)
            head = heads[i]
            if b > head:
                gap = b - head
                if cache:
                    # the slots of buckets head+1..b held buckets head+1-n..b-n
                    for key in [k for k, a in cache.items() if a[0] == i and a[1] <= b - n]:
                        del cache[key]
                if gap == 1:
                    slot = off + b % n
                    for c in counters:
                        c[slot] = 0
                else:
                    self._clear(off, n, head + 1, min(gap, n))
                heads[i] = b
            elif b <= head - n:
                continue  # older than this tier retains: dropped by this tier only
            slot = off + b % n
            gained = []
            for f, v in enumerate(values):
                c = counters[f]
                old = c[slot]
                new = old + v
                if new > limit:
                    if limit == 0xFF:
                        # the slots written so far are in the widened copies too
                        self._widen()
                        counters, limit = self._counters, COUNTER_MAX
                        c = counters[f]
                    if new > COUNTER_MAX:
                        new, clipped = COUNTER_MAX, True
                c[slot] = new
                gained.append(new - old)
            if touched is not None:
                touched[i] = (b, gained)
        if cache and touched is not None:
            for a in cache.values():
                hit = touched[a[0]]
                if hit is not None and a[1] <= hit[0] <= a[2]:
                    for f, g in enumerate(hit[1], 3):
                        a[f] += g
        return clipped

    def absorb(self, other: _TieredRing) -> None:
        """Add every bucket `other` retains into this ring (same tiers and counters),
        as if its events had been added here; counters saturate."""
        if other._tiers != self._tiers or other._FIELDS != self._FIELDS:
            raise ValueError("can only absorb a ring of the same tiers and counters")
        self._cache = None
        self._widen()
        try:
            self._absorb(other)
        finally:
            self._counters = _fitted(self._counters)

    def _absorb(self, other: _TieredRing) -> None:
        for i, (_, n, off) in enumerate(self._layout):
            theirs = other._heads[i]
            if theirs == _NO_HEAD:
                continue
            head = self._heads[i]
            if theirs > head:
                if head != _NO_HEAD:
                    self._clear(off, n, head + 1, min(theirs - head, n))
                head = self._heads[i] = theirs
            # head >= theirs now: what both retain is head - n + 1 .. theirs
            for b in range(head - n + 1, theirs + 1):
                slot = off + b % n
                for mine, source in zip(self._counters, other._counters, strict=True):
                    value = source[slot]
                    if value:
                        new = mine[slot] + value
                        mine[slot] = new if new < COUNTER_MAX else COUNTER_MAX

    def _clear(self, off: int, n: int, first: int, count: int) -> None:
        """Zero `count` consecutive ring slots starting at absolute bucket `first`."""
        start = first % n
        pieces = [(start, min(n, start + count))]
        if start + count > n:
            pieces.append((0, start + count - n))
        for lo, hi in pieces:
            zeros = _zeros(hi - lo, self._counters[0].typecode)
            for c in self._counters:
                c[off + lo : off + hi] = zeros

    def _pick(self, length: float) -> int:
        if not (math.isfinite(length) and length >= 0):
            raise ValueError(f"window length must be a non-negative number, got {length}")
        # from the layout (plain floats): hashing the Tier dataclasses for a cached
        # lookup cost more than this loop over 4 tiers
        for i, (res, n, _) in enumerate(self._layout):
            if length <= (n - 1) * res:
                return i
        raise ValueError(f"window length {length}s exceeds the retention {self.retention}s")

    def _range(self, i: int, first: int, last: int) -> list[int]:
        """Sum per counter over the retained buckets first..last of tier i."""
        _, n, off = self._layout[i]
        if first > last:
            return [0] * self._FIELDS
        start = first % n
        count = last - first + 1  # <= n: callers only ask for retained buckets
        if start + count <= n:
            return [sum(c[off + start : off + start + count]) for c in self._counters]
        end = start + count - n
        return [sum(c[off + start : off + n]) + sum(c[off : off + end]) for c in self._counters]

    def tier_index(self, length: float) -> int:
        """Index in `tiers` of the tier a query of `length` reads (`tier_for`)."""
        return self._pick(length)

    def head(self, i: int) -> int:
        """The newest bucket tier i holds (a very negative number before any event)."""
        return self._heads[i]

    def _sums(self, now: float, length: float) -> list[int]:
        """Sum per counter over the last `length` seconds before `now`."""
        if not math.isfinite(now):
            raise ValueError(f"query time must be finite, got {now}")
        cache = self._cache
        answer = cache.get(length) if cache is not None else None
        i = answer[0] if answer is not None else self._pick(length)
        res, n, _ = self._layout[i]
        head = self._heads[i]
        first = max(math.floor((now - length) / res), head - n + 1)
        last = min(math.floor(now / res), head)
        if first > last:
            return [0] * self._FIELDS
        if answer is not None:
            was_first, was_last = answer[1], answer[2]
            if was_first == first and was_last == last:
                return answer[3:]
            # slide only forward and only while cheaper than summing afresh
            if was_first <= first <= was_last + 1 and was_last <= last and (
                (first - was_first) + (last - was_last) < last - first + 1
            ):
                gone = self._range(i, was_first, first - 1)
                new = self._range(i, max(first, was_last + 1), last)
                for f in range(self._FIELDS):
                    answer[3 + f] += new[f] - gone[f]
                answer[1], answer[2] = first, last
                return answer[3:]
        sums = self._range(i, first, last)
        if cache is None:
            cache = self._cache = {}
        cache[length] = [i, first, last, *sums]
        return sums

    def to_bytes(self) -> bytes:
        """Compact, versioned snapshot (header + zlib'd little-endian counters)."""
        parts = [_HEADER.pack(_MAGIC, _VERSION, self._FIELDS, len(self._tiers))]
        for tier, head in zip(self._tiers, self._heads, strict=True):
            parts.append(_TIER.pack(tier.resolution, tier.buckets, head))
        body = b""
        for c in self._counters:
            if c.typecode == _NARROW:
                # stored as little-endian uint16 whatever the width in memory: the bytes
                # interleaved with zeros (~2 us a ring; array('H', c) took ~50 us)
                wide = bytearray(2 * len(c))
                wide[0::2] = c.tobytes()
                body += wide
                continue
            if sys.byteorder == "big":  # pragma: no cover - little-endian hosts only in CI
                c = array(_TYPECODE, c)
                c.byteswap()
            body += c.tobytes()
        parts.append(zlib.compress(body, 1))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, tiers: Sequence[Tier] = DEFAULT_TIERS) -> Self:
        """Inverse of `to_bytes`; raises ValueError on corrupt or foreign data."""
        ring = cls(tiers)
        ring._load(data)
        return ring

    def _load(self, data: bytes) -> None:
        """Fill this (empty) ring from `to_bytes` output.

        When the stored tiers differ from this ring's tiers (the defaults changed
        between versions), every tier with the same resolution keeps its newest
        buckets. A tier with a new resolution is filled from the coarsest stored
        tier that this ring no longer has and whose resolution divides the new one
        (e.g. the former 1 h tier into the 2 h tier: bucket sums, exact); without
        such a tier it starts empty.
        """
        self._cache = None
        try:
            magic, version, fields, ntiers = _HEADER.unpack_from(data, 0)
        except struct.error:
            raise ValueError("window state is truncated") from None
        if magic != _MAGIC:
            raise ValueError("not a slamon window state")
        if version != _VERSION:
            raise ValueError(f"unsupported window state version {version}")
        if fields != self._FIELDS:
            raise ValueError(f"window state holds {fields} counters, expected {self._FIELDS}")
        pos = _HEADER.size
        try:
            raw = _tier_block(ntiers).unpack_from(data, pos)
            body = zlib.decompress(data[pos + ntiers * _TIER.size:])
        except (struct.error, zlib.error) as exc:
            raise ValueError(f"window state is corrupt: {exc}") from None
        heads = raw[2::3]
        resolutions, bucket_counts = _tier_shape(self._tiers)
        if raw[0::3] == resolutions and raw[1::3] == bucket_counts:
            # this ring's own tiers, as every restore by the same release reads them:
            # no Tier objects (making and comparing them was ~1/4 of reading a ring)
            # and no migration
            size = sum(bucket_counts)
            if len(body) != size * _WIDTH * fields:
                raise ValueError("window state is corrupt: counter length mismatch")
            self._counters = _from_stored(body, size, fields)
            self._heads = array("q", heads)
            return
        stored = [(Tier(res, buckets), head)
                  for res, buckets, head in zip(raw[0::3], raw[1::3], heads, strict=True)]
        old_layout = _layout(tuple(t for t, _ in stored))
        size = sum(n for _, n, _ in old_layout)
        if len(body) != size * _WIDTH * fields:
            raise ValueError("window state is corrupt: counter length mismatch")
        old = list(_from_stored(body, size, fields))  # read by index: either width does
        self._widen()
        try:
            self._restore_tiers(stored, old_layout, old)
        finally:
            self._counters = _fitted(self._counters)

    def _restore_tiers(
        self, stored: list[tuple[Tier, int]], old_layout: tuple[tuple[float, int, int], ...],
        old: list[array[int]],
    ) -> None:
        """`_load` onto tiers that differ from the stored ones (this ring is wide)."""
        by_res = {
            res: (n, off, head) for (res, n, off), (_, head) in zip(old_layout, stored, strict=True)
        }
        kept = {res for res, _, _ in self._layout}
        dropped = sorted((res, v) for res, v in by_res.items() if res not in kept)
        for i, (res, n, off) in enumerate(self._layout):
            if res not in by_res:
                sources = [(r, v) for r, v in dropped if _divides(r, res)]
                if sources:
                    r, (old_n, old_off, head) = sources[-1]
                    self._merge_into(i, round(res / r), old, old_n, old_off, head)
                continue
            old_n, old_off, head = by_res[res]
            self._heads[i] = head
            if head == _NO_HEAD:
                continue
            for b in range(head - min(n, old_n) + 1, head + 1):
                for new_c, old_c in zip(self._counters, old, strict=True):
                    new_c[off + b % n] = old_c[old_off + b % old_n]


    def _merge_into(
        self, i: int, factor: int, old: list[array[int]], old_n: int, old_off: int, head: int
    ) -> None:
        """Fill tier `i` (empty) with the sums of `factor` consecutive buckets of an
        old ring (`old_n` slots at `old_off`, newest bucket `head`)."""
        if head == _NO_HEAD:
            return
        _, n, off = self._layout[i]
        first = head - old_n + 1  # oldest bucket the old ring holds
        new_head = head // factor
        self._heads[i] = new_head
        lo = max(first // factor, new_head - n + 1)
        pad = first % factor
        groups = (pad + old_n + factor - 1) // factor
        for new_c, old_c in zip(self._counters, old, strict=True):
            ring = old_c[old_off : old_off + old_n]
            start = first % old_n
            seq = [0] * pad + list(ring[start:]) + list(ring[:start])
            seq += [0] * (groups * factor - len(seq))
            sums = map(sum, zip(*(seq[j::factor] for j in range(factor)), strict=True))
            for nb, total in enumerate(sums, first // factor):
                if nb >= lo:
                    new_c[off + nb % n] = total if total < COUNTER_MAX else COUNTER_MAX


def _divides(small: float, large: float) -> bool:
    """Whether `large` is a whole multiple (>= 2) of `small`."""
    ratio = large / small
    return ratio > 1.5 and abs(ratio - round(ratio)) < 1e-9


class RollingWindow(_TieredRing):
    """(good, valid) event counts over any recent length, in a few KB.

    Query semantics: ``query(now, length)`` uses the finest tier whose retention
    covers `length` (``tier_for``), with resolution r, and returns the sums over
    the buckets whose start lies in ``[align(now - length), align(now)]`` where
    ``align(x) = floor(x / r) * r``. The window is thus aligned to r and covers
    ``span(now, length)``: at least `length` and at most `length + r` seconds, and
    includes the whole bucket containing `now`. Buckets the tier no longer
    retains (older than its newest bucket minus `buckets`) count as empty.
    """

    __slots__ = ()
    _FIELDS = 2

    def add(self, t: float, good: int, valid: int) -> None:
        """Count events scheduled at unix time `t` in every tier that retains `t`.

        Late events (out of order) are fine while a tier still retains their
        bucket; older ones are dropped by that tier only.
        """
        if not 0 <= good <= valid:
            raise ValueError(f"need 0 <= good <= valid, got good={good} valid={valid}")
        self._add(t, (good, valid))

    def query(self, now: float, length: float) -> Counts:
        """Sums over the last `length` seconds before `now` (see class docstring)."""
        good, valid = self._sums(now, length)
        return Counts(good, valid)

    def split(self) -> tuple[RollingCounter, RollingCounter]:
        """(good, valid - good) as two rings of the same tiers and heads."""
        good, bad = RollingCounter(self._tiers), RollingCounter(self._tiers)
        g, v = self._counters
        good._counters = _fitted([_exact(_TYPECODE, g)])
        bad._counters = _fitted([_exact(_TYPECODE, array(_TYPECODE, (
            max(b - a, 0) for a, b in zip(g, v, strict=True))))])
        good._heads, bad._heads = array("q", self._heads), array("q", self._heads)
        return good, bad


def cell_sums(rings: Sequence[tuple[int, RollingCounter]], tier: int, first: int, last: int,
              good_cells: int) -> tuple[int, int]:
    """(good, valid) over buckets first..last of tier `tier` that each ring retains (none
    past its head, none a later lap overwrote), no cache involved: every ring's count is
    valid, and good when its cell is below `good_cells`. One call for all of a target's
    rings: a burn check slides its windows by a bucket or two, over four rings or more."""
    good = valid = 0
    for cell, ring in rings:
        _, n, off = ring._layout[tier]
        head = ring._heads[tier]
        lo = first if first > head - n else head - n + 1
        hi = last if last < head else head
        if lo > hi:
            continue
        # a slide moves by one bucket: read it, not a slice
        count = ring._counters[0][off + lo % n] if lo == hi else ring._range(tier, lo, hi)[0]
        valid += count
        if cell < good_cells:
            good += count
    return good, valid


class RollingCounter(_TieredRing):
    """One counter per bucket (e.g. "no data" events), same tiers and semantics
    as RollingWindow at half its memory."""

    __slots__ = ()
    _FIELDS = 1

    def add(self, t: float, count: int = 1) -> bool:
        """Count `count` events at `t`; True if a bucket saturated (not all counted)."""
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        return self._add(t, (count,))

    def query(self, now: float, length: float) -> int:
        return self._sums(now, length)[0]
