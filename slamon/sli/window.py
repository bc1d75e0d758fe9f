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

Counter width: a ring's counters start as uint8 (one byte a slot). The first time a
bucket passes 255, the counter keeps two more bits ("carry bits", four slots a byte
after its low bytes) for that slot and every later one in the flat array, which is
where the coarser tiers lie: 10 bits, up to 1,023, for ~14 % more than a byte. A target
probed every 30 s or less often (at most 240 events in a 2 h bucket) never needs
them; one probed every 10 s (720) needs them in its 2 h tier only. The first bucket
that would pass 1,023 widens the whole ring to uint16. uint16 counters
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
#: the largest count a narrow counter holds with its carry bits (10 bits)
_CARRY_MAX = 0x3FF
#: the sum of the four 2-bit fields of every byte of carry bits
_FIELD_SUMS = bytes(sum((b >> s) & 3 for s in (0, 2, 4, 6)) for b in range(256))
#: per field of a byte of carry bits, the table `bytes.translate` reads it with
_FIELD_OF = tuple(bytes((b >> s) & 3 for b in range(256)) for s in (0, 2, 4, 6))
#: per field, the table that puts a value 0-3 where that field lies in a byte
_FIELD_AT = tuple(bytes(((b & 3) << s) for b in range(256)) for s in (0, 2, 4, 6))
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
#: for (good, valid) in uint16, 3,920 in uint8, 4,474 with carry bits for the 2 h tier).
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


class _Layout(tuple[tuple[float, int, int], ...]):
    """(resolution, buckets, offset in the flat arrays) per tier, and `size`, the slots of
    all tiers: one per distinct tiers, shared by every ring of them."""

    size: int


@lru_cache(maxsize=32)
def _layout(tiers: tuple[Tier, ...]) -> _Layout:
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
    layout = _Layout(out)
    layout.size = offset
    return layout


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


# -- carry bits ----------------------------------------------------------------------
# A narrow counter of `size` slots with carry bits is `size` low bytes followed by `extra`
# bytes of 2-bit fields: field j is slot `size - 4 * extra + j`, four to a byte, lowest
# bits first. So the slots they cover are a suffix of the flat array, told by the array's
# length alone (no field per ring), and a slot before that suffix has no carry.


def _field(c: array[int], size: int, slot: int) -> int:
    """Index of `slot`'s carry field (negative: the carry fields do not cover it)."""
    return slot - size + 4 * (len(c) - size)


def _carry(c: array[int], size: int, slot: int) -> int:
    """The carry bits (0-3) of `slot`: its count is ``c[slot] + (that << 8)``."""
    j = _field(c, size, slot)
    if j < 0:
        return 0
    return (c[size + (j >> 2)] >> ((j & 3) << 1)) & 3


def _set_carry(c: array[int], size: int, slot: int, high: int) -> None:
    """Set the carry bits of `slot`, which the carry fields cover."""
    j = _field(c, size, slot)
    i, shift = size + (j >> 2), (j & 3) << 1
    c[i] = (c[i] & ~(3 << shift)) | (high << shift)


def _carry_span(c: array[int], size: int, lo: int, hi: int) -> tuple[list[int], int, int]:
    """The carry fields of slots lo..hi-1 (none before the covered suffix): the slots of
    those that share a byte with a field outside the range, one by one, and the bytes
    [first, end) that hold the others whole."""
    base = size - 4 * (len(c) - size)
    j, k = max(lo, base) - base, hi - base
    edges = []
    while j < k and j & 3:
        edges.append(base + j)
        j += 1
    while k > j and k & 3:
        k -= 1
        edges.append(base + k)
    return edges, size + (j >> 2), size + (max(j, k) >> 2)


def _carry_sum(c: array[int], size: int, lo: int, hi: int) -> int:
    """The sum of the carry bits of slots lo..hi-1."""
    edges, first, end = _carry_span(c, size, lo, hi)
    return (sum(_carry(c, size, slot) for slot in edges)
            + sum(map(_FIELD_SUMS.__getitem__, c[first:end])))


def _clear_carry(c: array[int], size: int, lo: int, hi: int) -> None:
    """Zero the carry bits of slots lo..hi-1."""
    edges, first, end = _carry_span(c, size, lo, hi)
    for slot in edges:
        _set_carry(c, size, slot, 0)
    c[first:end] = _zeros(end - first)


def _carry_bytes(size: int, slot: int) -> int:
    """Bytes of carry fields that cover `slot` and every later one."""
    return (size - slot + 3) // 4


def _with_carry_from(c: array[int], size: int, slot: int) -> array[int]:
    """`c` with carry fields covering `slot` and every slot after it: new fields before
    the ones it has, whole bytes of them, so the fields it has keep their values."""
    extra = len(c) - size
    more = _carry_bytes(size, slot) - extra
    if more <= 0:
        return c
    return _exact(_NARROW, c[:size].tobytes() + bytes(more) + c[size:].tobytes())


def _stored(c: array[int], size: int) -> bytes:
    """A counter's counts as little-endian uint16, the form snapshots store: a narrow
    counter's low bytes interleaved with its carry fields (or zeros), by whole slices
    (~2 us a ring; array('H', c) took ~50 us)."""
    if c.typecode == _TYPECODE:
        if sys.byteorder == "big":  # pragma: no cover - little-endian hosts only in CI
            c = array(_TYPECODE, c)
            c.byteswap()
        return c.tobytes()
    wide = bytearray(2 * size)
    wide[0::2] = c[:size].tobytes()
    extra = len(c) - size
    if extra:
        carry = c[size:].tobytes()
        highs = bytearray(4 * extra)  # one byte per field, for slots size - 4 * extra on
        for field, table in enumerate(_FIELD_OF):
            highs[field::4] = carry.translate(table)
        base = size - 4 * extra
        wide[1 + 2 * max(base, 0)::2] = highs[max(-base, 0):]
    return bytes(wide)


def _widened(c: array[int], size: int) -> array[int]:
    """A counter's counts as a new uint16 array, its carry bits added in."""
    out = _exact(_TYPECODE, _stored(c, size))
    if sys.byteorder == "big":  # pragma: no cover - little-endian hosts only in CI
        out.byteswap()
    return out


def _halves(raw: bytes, byteorder: str = sys.byteorder) -> tuple[bytes, bytes]:
    """The low bytes and the high bytes of uint16 values stored in `byteorder`."""
    return (raw[0::2], raw[1::2]) if byteorder == "little" else (raw[1::2], raw[0::2])


def _narrowed(low: bytes, high: bytes) -> array[int] | None:
    """uint16 counts, given as their low and their high bytes, as a narrow counter: the
    low bytes, and carry fields from the first slot over 255 on if one is; None if one
    is over _CARRY_MAX. By whole bytes objects, not by element: ~5 us a ring, not ~70."""
    size = len(high)
    first = size - len(high.lstrip(b"\0"))
    if first == size:
        return _exact(_NARROW, low)
    if high.translate(None, b"\0\1\2\3"):  # a high byte over 3 (max() reads ints: ~25 us)
        return None
    extra = _carry_bytes(size, first)
    base = size - 4 * extra
    highs = bytes(-base) + high if base < 0 else high[base:]
    packed = 0  # the fields are disjoint bits: OR them in per field, a byte per 4 slots
    for field, table in enumerate(_FIELD_AT):
        packed |= int.from_bytes(highs[field::4].translate(table), "little")
    return _exact(_NARROW, low + packed.to_bytes(extra, "little"))


def _fitted(counters: Sequence[array[int]]) -> tuple[array[int], ...]:
    """A ring's uint16 counters as uint8 when every value of every one fits in 10 bits
    (with carry bits where one passes 255), else as they are: a ring's counters always
    have one width."""
    narrow = []
    for c in counters:
        one = _narrowed(*_halves(c.tobytes()))
        if one is None:
            return tuple(counters)
        narrow.append(one)
    return tuple(narrow)


@lru_cache(maxsize=8)
def _tier_block(count: int) -> struct.Struct:
    """The `count` tier records of a snapshot, read in one call."""
    return struct.Struct("<" + "dIq" * count)


@lru_cache(maxsize=32)
def _tier_shape(tiers: tuple[Tier, ...]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """The resolutions and the bucket counts of `tiers`, as a snapshot lists them."""
    return tuple(t.resolution for t in tiers), tuple(t.buckets for t in tiers)


def _from_stored(body: bytes, size: int, fields: int,
                 fit: bool = True) -> tuple[array[int], ...]:
    """A snapshot's counters (little-endian uint16, `fields` runs of `size`) in the
    width `_fitted` gives them, read from the bytes, without building the wide arrays
    first. Without `fit`, uint16: counts read by index."""
    runs = [body[f * size * _WIDTH: (f + 1) * size * _WIDTH] for f in range(fields)]
    if fit:
        narrow = [_narrowed(*_halves(run, "little")) for run in runs]
        if all(c is not None for c in narrow):
            return tuple(c for c in narrow if c is not None)
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
        """uint8 -> uint16 counters, once a bucket needs more than _CARRY_MAX."""
        size = self._layout.size
        self._counters = tuple(_widened(c, size) for c in self._counters)

    def _values(self) -> tuple[array[int], ...]:
        """The counters as arrays whose items are the counts (carry bits added in)."""
        size = self._layout.size
        return tuple(c if len(c) == size else _widened(c, size) for c in self._counters)

    def _carry_to(self, f: int, slot: int, count: int) -> None:
        """Store `count` (256.._CARRY_MAX) at `slot` of narrow counter f, in its low byte
        and its carry bits (which then cover `slot`)."""
        size = self._layout.size
        c = self._counters[f]
        wider = _with_carry_from(c, size, slot)
        if wider is not c:
            self._counters = (*self._counters[:f], wider, *self._counters[f + 1:])
        wider[slot] = count & 0xFF
        _set_carry(wider, size, slot, count >> 8)

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
        size = self._layout.size
        # a narrow ring carries when a bucket passes 255; a wide one saturates
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
                        # inline `_field(c, size, slot) >= 0`: the hot path
                        if len(c) != size and slot >= size - 4 * (len(c) - size):
                            _set_carry(c, size, slot, 0)
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
                        count = new + (_carry(c, size, slot) << 8)
                        if count <= _CARRY_MAX:
                            self._carry_to(f, slot, count)
                            counters = self._counters
                            gained.append(v)
                            continue
                        # the slots written so far are in the widened copies too
                        self._widen()
                        counters, limit = self._counters, COUNTER_MAX
                        c = counters[f]
                        old = c[slot]
                        new = old + v
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
        sources = other._values()
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
                for mine, source in zip(self._counters, sources, strict=True):
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
        size = self._layout.size
        for lo, hi in pieces:
            zeros = _zeros(hi - lo, self._counters[0].typecode)
            for c in self._counters:
                c[off + lo : off + hi] = zeros
                if len(c) != size:
                    _clear_carry(c, size, off + lo, off + hi)

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
        size = self._layout.size
        if start + count <= n:
            pieces = [(off + start, off + start + count)]
        else:
            pieces = [(off + start, off + n), (off, off + start + count - n)]
        out = []
        for c in self._counters:
            total = 0
            for lo, hi in pieces:
                total += sum(c[lo:hi])
                if len(c) != size:
                    total += _carry_sum(c, size, lo, hi) << 8
            out.append(total)
        return out

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
        size = self._layout.size
        body = b"".join(_stored(c, size) for c in self._counters)
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
        old = list(_from_stored(body, size, fields, fit=False))  # read by index
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
        g, v = self._values()
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
        if lo == hi:
            c, slot, size = ring._counters[0], off + lo % n, ring._layout.size
            count = c[slot] if len(c) == size else c[slot] + (_carry(c, size, slot) << 8)
        else:
            count = ring._range(tier, lo, hi)[0]
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
