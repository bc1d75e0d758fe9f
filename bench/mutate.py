"""Mutation testing of slamon's pure core: can the unit tests tell a broken module?

For every module in `MODULES` it enumerates one-line mutants with `ast` (the same
list, in the same order, on every run of the same source), runs the module's tests
against each mutant and reports how many mutants the tests kill.

    python bench/mutate.py                                  # every module (see bench/README.md)
    python bench/mutate.py --module slamon/sla/periods.py   # one module
    python bench/mutate.py --module periods --max-mutants 40 --json /tmp/m.json
    python bench/mutate.py --module window --list           # only print the mutants

Operators (one change per mutant):

- comparisons: ``==``/``!=``, ``in``/``not in``, ``is``/``is not`` swapped; ``<``
  becomes ``<=`` and ``>=`` (the boundary and the negation), and so on for
  ``<=``, ``>``, ``>=``;
- ``and``/``or`` swapped; ``not x`` and ``-x`` become ``x``;
- arithmetic (also in ``+=`` etc.): ``+``/``-`` swapped, ``*`` -> ``//``,
  ``//`` -> ``*``, ``/`` -> ``*``, ``%`` -> ``//``, ``**`` -> ``*``, ``<<``/``>>``
  and ``|``/``&`` swapped;
- constants: integer ``0`` -> ``1``, ``1`` -> ``0`` and ``2``, other integers
  ``n`` -> ``n + 1`` and ``n - 1``; a float ``x`` -> ``x + 1``; ``True``/``False``
  swapped;
- ``min``/``max`` swapped;
- ``return value`` -> ``return None``; ``continue``/``break`` -> ``pass``, and a bare
  ``return`` that ends an ``if`` block -> ``pass`` (a guard that no longer guards).

Not mutated: annotations, decorators (cache sizes, dataclass options), f-strings
(messages), ``assert`` statements (they narrow types for the checker), ``strict=`` of
``zip`` (an assertion too), code under
``if TYPE_CHECKING:`` and statements whose first line says ``pragma: no cover``.

How a mutant runs, and why the working tree is never touched: the repository's
``slamon/``, ``tests/`` and ``pyproject.toml`` are copied to a private temporary
directory once; a fork of this process (which has already imported pytest,
hypothesis and the other third-party modules, never slamon) puts the copy first on
``sys.path``, installs an import hook that serves the mutated module from a code
object compiled in memory, and runs ``pytest -x -q -p no:cacheprovider`` on the
copy. No mutated source is ever written to a file, so other people running tests on
the same tree, an interrupted run or a stale ``.pyc`` can never see a mutant. The
temporary copy is removed at the end, also on Ctrl-C.

Which tests run: a traced baseline run records which test executes which line of
the module. A mutant runs only the tests that execute its lines, fastest first
(every test when the line runs at import time); a mutant no test executes survives
without a run ("uncovered"). A mutant that survives a subset is run again against
all the module's tests before it is reported as a survivor (``--no-select`` runs
all tests for every mutant). Hypothesis runs derandomized, without a database,
shrinking or deadlines, so the same mutants meet the same examples on every run.
A mutant that makes the tests run past ``--timeout-factor`` x their baseline time
(at least ``--min-timeout`` s) is killed and counted as "timeout", i.e. killed.

Equivalent mutants (no behaviour can change) are listed in `EQUIVALENT` with the
reason, keyed by ``module: function: line -> mutated line``, which survives code
moving around in the file. Score = (killed + timeout) / (mutants - equivalent
survivors).
"""

from __future__ import annotations

import argparse
import ast
import compileall
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import tokenize
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import CodeType, FrameType, ModuleType
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parent.parent

#: module (path in the repo) -> its unit tests
MODULES: dict[str, tuple[str, ...]] = {
    "slamon/sli/window.py": ("tests/test_sli_window.py", "tests/test_sli_events.py"),
    "slamon/sli/slo.py": ("tests/test_sli_slo.py",),
    "slamon/sla/periods.py": ("tests/test_periods.py",),
    "slamon/sla/result.py": ("tests/test_period_result.py",),
    "slamon/sla/maintenance.py": ("tests/test_maintenance.py",),
    "slamon/sla/evidence.py": ("tests/test_evidence.py",),
    "slamon/sla/held.py": ("tests/test_sla_held.py",),
    "slamon/scheduler.py": ("tests/test_scheduler.py",),
    "slamon/wallclock.py": (
        "tests/test_wallclock.py",
        "tests/test_periods.py",
        "tests/test_maintenance.py",
    ),
}

#: mutants that cannot change behaviour, by `Mutant.key`, with the reason
EQUIVALENT: dict[str, str] = {
    'slamon/sli/window.py: _TieredRing: _FIELDS = 0 -> _FIELDS = 1': (
        'the base class is never instantiated: both subclasses set _FIELDS'
    ),
    'slamon/sli/window.py: _TieredRing._add: if b > head: -> if b >= head:': (
        'b == head: the gap-0 branch clears nothing and keeps the head, as the other path '
        'does'
    ),
    'slamon/sli/window.py: _TieredRing._add: if gap == 1: -> if gap == 0:': (
        'the one-bucket fast path and _clear(..., 1) zero the same slot'
    ),
    (
        'slamon/sli/window.py: _TieredRing._clear: if start + count > n: -> if start + count '
        '>= n:'
    ): (
        'at equality the extra piece is (0, 0) and clears nothing'
    ),
    (
        'slamon/sli/window.py: _TieredRing._range: if start + count <= n: -> if start + '
        'count < n:'
    ): (
        'at equality the second segment is empty: the same sums'
    ),
    (
        'slamon/sli/window.py: _TieredRing.to_bytes: parts.append(zlib.compress(body, 1)) -> '
        'parts.append(zlib.compress(body, 2))'
    ): (
        'another zlib level: the snapshot decodes to the same counters'
    ),
    (
        'slamon/sli/window.py: _TieredRing._add: if cache and touched is not None: -> if '
        'cache or touched is not None:'
    ): (
        'touched is a list exactly when the cache holds an answer: both tests agree'
    ),
    'slamon/sli/window.py: _TieredRing._absorb: continue -> pass': (
        'a ring never written has only zeros, which the loop below skips'
    ),
    'slamon/sli/window.py: _TieredRing._absorb: if theirs > head: -> if theirs >= head:': (
        'at equality the clear covers 0 slots and the head is set to itself'
    ),
    (
        'slamon/sli/window.py: _TieredRing._absorb: mine[slot] = new if new < COUNTER_MAX '
        'else COUNTER_MAX -> mine[slot] = new if new <= COUNTER_MAX else COUNTER_MAX'
    ): (
        'at equality both branches store COUNTER_MAX'
    ),
    'slamon/sli/window.py: _TieredRing._restore_tiers: continue -> pass #2': (
        'a never-written tier holds only zeros: copying them changes nothing'
    ),
    (
        'slamon/sli/window.py: _TieredRing._merge_into: new_c[off + nb % n] = total if total '
        '< COUNTER_MAX else COUNTER_MAX -> new_c[off + nb % n] = total if total <= '
        'COUNTER_MAX else COUNTER_MAX'
    ): (
        'at equality both branches store COUNTER_MAX'
    ),
    (
        'slamon/sli/window.py: _TieredRing._merge_into: lo = max(first // factor, new_head - '
        'n + 1) -> lo = min(first // factor, new_head - n + 1)'
    ): (
        'sums are written oldest first: a bucket the new ring does not keep is overwritten '
        'by the newer one in its slot'
    ),
    (
        'slamon/sli/window.py: _TieredRing._merge_into: lo = max(first // factor, new_head - '
        'n + 1) -> lo = max(first // factor, new_head - n - 1)'
    ): (
        'sums are written oldest first: a bucket the new ring does not keep is overwritten '
        'by the newer one in its slot'
    ),
    (
        'slamon/sli/window.py: _TieredRing._merge_into: lo = max(first // factor, new_head - '
        'n + 1) -> lo = max(first // factor, new_head - n + 0)'
    ): (
        'sums are written oldest first: a bucket the new ring does not keep is overwritten '
        'by the newer one in its slot'
    ),
    (
        'slamon/sli/window.py: _divides: return ratio > 1.5 and abs(ratio - round(ratio)) < '
        '1e-9 -> return ratio >= 1.5 and abs(ratio - round(ratio)) < 1e-9'
    ): (
        'a ratio of exactly 1.5 fails the whole-number test anyway'
    ),
    (
        'slamon/sli/window.py: _divides: return ratio > 1.5 and abs(ratio - round(ratio)) < '
        '1e-9 -> return ratio > 1.5 and abs(ratio - round(ratio)) <= 1e-09'
    ): (
        'differs only for a ratio exactly 1e-9 (as a double) off a whole number: no real '
        'tiers'
    ),
    (
        'slamon/sli/window.py: _TieredRing._sums: if was_first <= first <= was_last + 1 and w'
        'as_last <= last and ( -> if was_first <= first < was_last + 1 and was_last <= last a'
        'nd ('
    ): (
        'leaves out the answers the new range starts right after: a slide from there reads '
        "every bucket of the new range and the old answer's too, more than summing afresh, "
        'so the cost test refuses it anyway'
    ),
    (
        'slamon/sli/window.py: _TieredRing._sums: if was_first <= first <= was_last + 1 and w'
        'as_last <= last and ( -> if was_first <= first <= was_last + 0 and was_last <= last '
        'and ('
    ): (
        'leaves out the answers the new range starts right after: a slide from there reads '
        "every bucket of the new range and the old answer's too, more than summing afresh, "
        'so the cost test refuses it anyway'
    ),
    (
        'slamon/sli/window.py: _TieredRing._sums: if was_first <= first <= was_last + 1 and w'
        'as_last <= last and ( -> if was_first <= first <= was_last + 2 and was_last <= last '
        'and ('
    ): (
        "lets in new ranges a bucket past the answer's end: the slide would read more than "
        'the new range, so the cost test refuses it'
    ),
    (
        'slamon/sli/window.py: _TieredRing._sums: (first - was_first) + (last - was_last) < l'
        'ast - first + 1 -> first - was_first + (last - was_last) <= last - first + 1'
    ): (
        'at equality a slide and a fresh sum read as many buckets and give the same sums'
    ),
    (
        'slamon/sli/window.py: _TieredRing._sums: (first - was_first) + (last - was_last) < l'
        'ast - first + 1 -> (first - was_first) + (last - was_last) < last - first + 2'
    ): (
        'at equality a slide and a fresh sum read as many buckets and give the same sums'
    ),
    'slamon/sli/window.py: cell_sums: hi = last if last < head else head -> hi = last if '
    'last <= head else head': (
        'at equality both branches give the head'
    ),
    'slamon/sli/window.py: cell_sums: continue -> pass': (
        'an empty range reads nothing either way: _range of first > last is zeros'
    ),
    (
        'slamon/sli/window.py: <module>: _FIELD_SUMS = bytes(sum((b >> s) & 3 for s in (0, 2,'
        ' 4, 6)) for b in range(256)) -> _FIELD_SUMS = bytes(sum((b >> s) & 3 for s in (0, 2,'
        ' 4, 6)) for b in range(257))'
    ): (
        'a byte indexes the table: its 257th entry is never read'
    ),
    'slamon/sli/window.py: _carry_span: while j < k and j & 3: -> while j < k and j | 3:': (
        'the edge loop then gives every field one by one, the whole bytes none: the same '
        'fields summed or cleared'
    ),
    'slamon/sli/window.py: _carry_span: while k > j and k & 3: -> while k > j and k | 3:': (
        'the edge loop then gives every field one by one, the whole bytes none: the same '
        'fields summed or cleared'
    ),
    'slamon/sli/window.py: _with_carry_from: if more <= 0: -> if more < 0:': (
        'at 0 the counter is copied byte for byte and the copy takes its place'
    ),
    (
        'slamon/sli/window.py: _narrowed: highs = bytes(-base) + high if base < 0 else high[b'
        'ase:] -> highs = bytes(-base) + high if base <= 0 else high[base:]'
    ): (
        'at base 0 both give the high bytes whole'
    ),
    (
        'slamon/sli/window.py: _narrowed: highs = bytes(-base) + high if base < 0 else high[b'
        'ase:] -> highs = bytes(-base) + high if base < 1 else high[base:]'
    ): (
        'at base 0 both give the high bytes whole'
    ),
    'slamon/sli/slo.py: <module>: _NEVER = -(1 << 62) -> _NEVER = -(2 << 62)': (
        'sentinel below every slice index of a finite time; restore accepts any value'
    ),
    'slamon/sli/slo.py: <module>: _NEVER = -(1 << 62) -> _NEVER = -(1 << 63)': (
        'sentinel below every slice index of a finite time; restore accepts any value'
    ),
    'slamon/sli/slo.py: <module>: _NEVER = -(1 << 62) -> _NEVER = -(1 << 61)': (
        'sentinel below every slice index of a finite time; restore accepts any value'
    ),
    (
        'slamon/sli/slo.py: SloState.__init__: self._close_delay = 0.0 -> self._close_delay '
        '= 1.0'
    ): (
        'read only by advance(), which returns at once for a single part'
    ),
    (
        'slamon/sli/slo.py: SloState.record: if not good and t > self.last_bad: -> if not '
        'good and t >= self.last_bad:'
    ): (
        'at equality it stores the value already there'
    ),
    (
        'slamon/sli/slo.py: SloState.advance: if below <= self._closed_below: -> if below < '
        'self._closed_below:'
    ): (
        'at equality no open slice lies below (they would have been late): nothing to close'
    ),
    'slamon/sli/slo.py: SloState.advance: return -> pass #3': (
        'with no open slice the loop that follows does nothing'
    ),
    'slamon/sla/periods.py: period_index: n -= 1 -> n += 1': (
        'unreachable: the guess is the floor of the wall-clock label, never after the period'
    ),
    'slamon/sla/periods.py: period_index: n -= 1 -> n -= 0': (
        'unreachable: the guess is the floor of the wall-clock label, never after the period'
    ),
    'slamon/sla/periods.py: period_index: n -= 1 -> n -= 2': (
        'unreachable: the guess is the floor of the wall-clock label, never after the period'
    ),
    'slamon/sla/periods.py: period_index: elif sec >= end: -> elif sec > end:': (
        'at sec == end the clock reads the next label (or later): the guess is never n'
    ),
    'slamon/sla/periods.py: period_index: n += 1 -> n += 2': (
        'an overshoot is walked back by the sec < start branch: the same period'
    ),
    (
        'slamon/sla/result.py: sli_ppm: def sli_ppm(good: int, valid: int, min_valid: int = '
        '0) -> int | None: -> def sli_ppm(good: int, valid: int, min_valid: int = 1) -> int '
        '| None:'
    ): (
        'valid < 1 is already None through valid <= 0'
    ),
    'slamon/sla/maintenance.py: merge: if b > out[-1][1]: -> if b >= out[-1][1]:': (
        'at equality it stores the same end'
    ),
    'slamon/sla/maintenance.py: intervals: if end <= start: -> if end < start:': (
        'an empty range yields only empty intervals, which merge drops'
    ),
    (
        'slamon/sla/maintenance.py: active_at: return any(a <= t < b for a, b in '
        'intervals(windows, t, t + 1, target, sla)) -> return any(a <= t <= b for a, b in '
        'intervals(windows, t, t + 1, target, sla))'
    ): (
        'intervals are clipped to start at t or later and are non-empty: b > t always'
    ),
    (
        'slamon/sla/maintenance.py: active_at: return any(a <= t < b for a, b in '
        'intervals(windows, t, t + 1, target, sla)) -> return any(a <= t < b for a, b in '
        'intervals(windows, t, t + 2, target, sla))'
    ): (
        'whether an interval holds t does not depend on how far after t the range ends'
    ),
    (
        'slamon/sla/evidence.py: Leaf.encode: abi_word_uint(self.bucket_start, 64), -> '
        'abi_word_uint(self.bucket_start, 65),'
    ): (
        'the width only range-checks, and Leaf already enforces uint64'
    ),
    (
        'slamon/sla/evidence.py: Leaf.encode: abi_word_uint(self.good, 32), -> '
        'abi_word_uint(self.good, 33),'
    ): (
        'the width only range-checks, and Leaf already enforces uint32'
    ),
    (
        'slamon/sla/evidence.py: Leaf.encode: abi_word_uint(self.valid, 32), -> '
        'abi_word_uint(self.valid, 33),'
    ): (
        'the width only range-checks, and Leaf already enforces uint32'
    ),
    (
        'slamon/sla/evidence.py: Leaf.encode: abi_word_uint(self.no_data, 32), -> '
        'abi_word_uint(self.no_data, 33),'
    ): (
        'the width only range-checks, and Leaf already enforces uint32'
    ),
    (
        'slamon/sla/evidence.py: node_hash: return keccak256(a + b if a <= b else b + a) -> '
        'return keccak256(a + b if a < b else b + a)'
    ): (
        'a == b: both orders are the same bytes'
    ),
    (
        'slamon/sla/evidence.py: proof: if not (0 <= index < len(tree)) or 2 * index + 1 < '
        'len(tree): -> if not (0 <= index < len(tree)) or 2 * index + 2 < len(tree):'
    ): (
        'trees have odd length (2n - 1): 2i + 1 < len iff 2i + 2 < len'
    ),
    (
        'slamon/sla/evidence.py: StandardTree.of: index_of = [0] * len(items) -> index_of = '
        '[1] * len(items)'
    ): (
        'every entry is overwritten by the loop that follows'
    ),
    (
        'slamon/sla/evidence.py: verify_evidence_file: if isinstance(res, int) and res > 0 '
        'and leaf.bucket_start % res: -> if isinstance(res, int) and res > 1 and '
        'leaf.bucket_start % res:'
    ): (
        'res == 1: bucket_start % 1 is 0, no problem either way'
    ),
    'slamon/scheduler.py: _Entry: tick: int = 0 -> tick: int = 1': (
        '_add sets it before any use'
    ),
    'slamon/scheduler.py: _Entry: due: float = 0.0 -> due: float = 1.0': (
        '_add sets it before any use'
    ),
    (
        'slamon/scheduler.py: LagHistogram.observe: if value > self.max: -> if value >= '
        'self.max:'
    ): (
        'at equality it stores the same max'
    ),
    (
        'slamon/scheduler.py: StallMonitor.stalled: return sum(max(0.0, min(end, b) - '
        'max(start, a)) for a, b in spans if b > start and a < end) -> return sum(max(0.0, '
        'min(end, b) - max(start, a)) for a, b in spans if b > start or a < end)'
    ): (
        'the filter only skips spans whose clamped overlap is 0 anyway'
    ),
    (
        'slamon/scheduler.py: StallMonitor.stalled: return sum(max(0.0, min(end, b) - '
        'max(start, a)) for a, b in spans if b > start and a < end) -> return sum(max(0.0, '
        'min(end, b) - max(start, a)) for a, b in spans if b >= start and a < end)'
    ): (
        'the filter only skips spans whose clamped overlap is 0 anyway'
    ),
    (
        'slamon/scheduler.py: StallMonitor.stalled: return sum(max(0.0, min(end, b) - '
        'max(start, a)) for a, b in spans if b > start and a < end) -> return sum(max(0.0, '
        'min(end, b) - max(start, a)) for a, b in spans if b > start and a <= end)'
    ): (
        'the filter only skips spans whose clamped overlap is 0 anyway'
    ),
    'slamon/scheduler.py: stalled_verdict: if frozen <= 0: -> if frozen < 0:': (
        'frozen == 0 fails both later tests for every timeout > 0 (config requires it)'
    ),
    (
        'slamon/scheduler.py: StallMonitor.run: if self._timer is not None: -> if '
        'self._timer is None:'
    ): (
        'a timer left after the monitor stops finds no loop (_loop is None) and does '
        'nothing'
    ),
    (
        'slamon/scheduler.py: StallMonitor.check_in: if self._timer_at < now + 0.5 * '
        'self.PERIOD: -> if self._timer_at <= now + 0.5 * self.PERIOD:'
    ): (
        'at equality one more re-arm, for the same expected instant'
    ),
    (
        'slamon/scheduler.py: Scheduler._on_timer: early = bool(self._heap) and '
        'self._heap[0][0] > now + _DUE_TOLERANCE -> early = bool(self._heap) and '
        'self._heap[0][0] >= now + _DUE_TOLERANCE'
    ): (
        'at equality the head is due (the dispatch horizon is the same now + tolerance) '
        'and is dispatched; only the slack of the next arming differs, by < 0.5 ms'
    ),
    'slamon/scheduler.py: Scheduler.__init__: self._seq = 0 -> self._seq = 1': (
        'heap tie-breaker: only its order matters'
    ),
    'slamon/scheduler.py: Scheduler._push: self._seq += 1 -> self._seq += 2': (
        'heap tie-breaker: only its order matters'
    ),
    (
        'slamon/scheduler.py: Scheduler._on_timer: if self._stopping or loop is None: -> if '
        'self._stopping and loop is None:'
    ): (
        'the timer never fires once stopping: stop() disarms it and _arm arms nothing '
        'while stopping; loop is set before the first arm'
    ),
    'slamon/scheduler.py: Scheduler._on_timer: return -> pass': (
        'unreachable: the timer never fires once stopping (see the guard above)'
    ),
    (
        'slamon/scheduler.py: Scheduler._on_timer: if self._stopped is not None and not '
        'self._stopped.done(): -> if self._stopped is not None or not self._stopped.done():'
    ): (
        'while the timer is armed, run() has set _stopped and stop() has not finished it'
    ),
    'slamon/scheduler.py: Scheduler._arm: if due >= self._timer_at: -> if due > self._timer_at:': (
        'at equality the timer is re-armed for the same instant'
    ),
    (
        'slamon/scheduler.py: Scheduler._dispatch_due: while heap and heap[0][0] <= horizon: '
        '-> while heap and heap[0][0] < horizon:'
    ): (
        'only a tick due exactly 1 us after now differs: _arm sets the timer for its due '
        'instant and it starts on the next turn, neither early nor later than that instant'
    ),
    'slamon/scheduler.py: Scheduler._arm: return -> pass #2': (
        "the heap's head only moves earlier between dispatches: the timer is never armed "
        "before the head, so the re-arm is for the same instant"
    ),
    (
        'slamon/scheduler.py: Scheduler._done: if not task.cancelled() and task.exception() '
        'is not None: -> if not task.cancelled() and task.exception() is None:'
    ): (
        'both branches do nothing; exception() is called either way'
    ),
    'slamon/scheduler.py: Scheduler._start_pending: return -> pass': (
        'with nothing pending the loop that follows does nothing'
    ),
    (
        'slamon/scheduler.py: Scheduler._start_pending: entry.busy = False -> entry.busy = '
        'True'
    ): (
        'the entry was removed: nothing reads its busy flag again'
    ),
    (
        'slamon/wallclock.py: resolve_local: stamps = [int(label.replace(tzinfo=tz, '
        'fold=f).timestamp()) for f in (0, 1)] -> stamps = [int(label.replace(tzinfo=tz, '
        'fold=f).timestamp()) for f in (0, 0)]'
    ): (
        'fold 0 is the first of two readings; in a gap the widening loops below find the jump'
    ),
    (
        'slamon/wallclock.py: resolve_local: lo, hi = min(stamps), max(stamps) -> lo, hi = '
        'max(stamps), max(stamps)'
    ): (
        'the (no cover) widening loop moves lo back below the label'
    ),
    (
        'slamon/wallclock.py: resolve_local: lo, hi = min(stamps), max(stamps) -> lo, hi = '
        'min(stamps), min(stamps)'
    ): (
        'the (no cover) widening loop moves hi on past the label'
    ),
    (
        'slamon/wallclock.py: resolve_local: if local_naive(mid, tz) >= label: -> if '
        'local_naive(mid, tz) > label:'
    ): (
        'only runs for a label in a gap, which no instant reads exactly'
    ),
    (
        'slamon/wallclock.py: weekly_cron: days=frozenset(range(1, 32)), -> '
        'days=frozenset(range(0, 32)),'
    ): (
        'day 0 never matches a date'
    ),
    (
        'slamon/wallclock.py: weekly_cron: days=frozenset(range(1, 32)), -> '
        'days=frozenset(range(1, 33)),'
    ): (
        'day 32 never matches a date'
    ),
    (
        'slamon/wallclock.py: weekly_cron: months=frozenset(range(1, 13)), -> '
        'months=frozenset(range(0, 13)),'
    ): (
        'month 0 never matches a date'
    ),
    (
        'slamon/wallclock.py: weekly_cron: months=frozenset(range(1, 13)), -> '
        'months=frozenset(range(1, 14)),'
    ): (
        'month 14 never matches a date'
    ),
    (
        'slamon/wallclock.py: cron_starts: day = local_naive(int(lo // 1), tz).date() - '
        'timedelta(days=1) -> day = local_naive(int(lo * 1), tz).date() - timedelta(days=1)'
    ): (
        'int() differs from floor only by a second below 0; the day before is scanned anyway'
    ),
    (
        'slamon/wallclock.py: cron_starts: day = local_naive(int(lo // 1), tz).date() - '
        'timedelta(days=1) -> day = local_naive(int(lo // 1), tz).date() - timedelta(days=2)'
    ): (
        'scans one day more, whose starts fall outside [lo, hi) and are dropped'
    ),
    (
        'slamon/wallclock.py: cron_starts: last = local_naive(int(hi // 1) + 1, tz).date() + '
        'timedelta(days=1) -> last = local_naive(int(hi // 1) - 1, tz).date() + '
        'timedelta(days=1)'
    ): (
        'two seconds earlier: the day after is scanned anyway'
    ),
    (
        'slamon/wallclock.py: cron_starts: last = local_naive(int(hi // 1) + 1, tz).date() + '
        'timedelta(days=1) -> last = local_naive(int(hi * 1) + 1, tz).date() + '
        'timedelta(days=1)'
    ): (
        'int() differs from floor only by a second below 0; the day after is scanned anyway'
    ),
    (
        'slamon/wallclock.py: cron_starts: last = local_naive(int(hi // 1) + 1, tz).date() + '
        'timedelta(days=1) -> last = local_naive(int(hi // 1) + 0, tz).date() + '
        'timedelta(days=1)'
    ): (
        'one second earlier: the day after is scanned anyway'
    ),
    (
        'slamon/wallclock.py: cron_starts: last = local_naive(int(hi // 1) + 1, tz).date() + '
        'timedelta(days=1) -> last = local_naive(int(hi // 1) + 2, tz).date() + '
        'timedelta(days=1)'
    ): (
        'one second later: starts of the extra day are >= hi and dropped'
    ),
    (
        'slamon/wallclock.py: cron_starts: last = local_naive(int(hi // 1) + 1, tz).date() + '
        'timedelta(days=1) -> last = local_naive(int(hi // 1) + 1, tz).date() + '
        'timedelta(days=2)'
    ): (
        'scans one day more, whose starts fall outside [lo, hi) and are dropped'
    ),
    (
        'slamon/wallclock.py: <module>: _SHORT_DAYS = {d[:3]: d for d in WEEKDAYS} -> '
        '_SHORT_DAYS = {d[:4]: d for d in WEEKDAYS}'
    ): (
        'unused: nothing reads _SHORT_DAYS'
    ),
    (
        'slamon/wallclock.py: <module>: _SHORT_DAYS = {d[:3]: d for d in WEEKDAYS} -> '
        '_SHORT_DAYS = {d[:2]: d for d in WEEKDAYS}'
    ): (
        'unused: nothing reads _SHORT_DAYS'
    ),
}

_STATUS_KILLED = ("killed", "timeout")


# -- mutants ---------------------------------------------------------------------------


@dataclass
class Mutant:
    module: str
    index: int
    line: int
    end_line: int
    op: str
    scope: str
    before: str
    after: str
    key: str = ""
    status: str = "pending"  # killed, timeout, survived, uncovered, error
    killed_by: str | None = None
    tests_run: int = 0
    seconds: float = 0.0
    equivalent: str | None = None


@dataclass
class _Site:
    node: ast.expr | ast.stmt  # what the mutant changes (shown as before -> after)
    op: str
    scope: str
    apply: Callable[[], ast.AST]  # changes the tree in place, returns the new node


_CMP: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Lt: (ast.LtE, ast.GtE),
    ast.LtE: (ast.Lt, ast.Gt),
    ast.Gt: (ast.GtE, ast.LtE),
    ast.GtE: (ast.Gt, ast.Lt),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
}
_BIN: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
    ast.Div: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.BitOr: ast.BitAnd,
    ast.BitAnd: ast.BitOr,
}
_SYMBOL: dict[type[ast.AST], str] = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Div: "/",
    ast.Mod: "%", ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitOr: "|", ast.BitAnd: "&", ast.And: "and", ast.Or: "or",
}  # fmt: skip
#: fields never visited: types and decoration are not behaviour under test here
_SKIP_FIELDS = {"annotation", "returns", "decorator_list", "type_comment", "type_params"}


def _int_variants(value: int) -> tuple[int, ...]:
    if value == 0:
        return (1,)
    if value == 1:
        return (0, 2)
    return (value + 1, value - 1)


class _Enumerator:
    """Mutation sites of one parsed module, in a fixed pre-order."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = lines
        self.sites: list[_Site] = []
        self.scope: list[str] = []

    def run(self, tree: ast.Module) -> list[_Site]:
        for i, stmt in enumerate(tree.body):
            self._visit(stmt, tree, _setter(tree.body, i))
        return self.sites

    def _skipped(self, node: ast.AST) -> bool:
        if isinstance(node, (ast.Assert, ast.JoinedStr)):
            return True
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            return True
        if isinstance(node, ast.stmt):
            return "pragma: no cover" in self.lines[node.lineno - 1]
        return False

    def _visit(self, node: ast.AST, parent: ast.AST, replace: Callable[[ast.AST], None]) -> None:
        if self._skipped(node):
            return
        named = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.scope.append(node.name)
        self._sites(node, parent, replace)
        for name, value in ast.iter_fields(node):
            if name in _SKIP_FIELDS:
                continue
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        self._visit(item, node, _setter(value, i))
            elif isinstance(value, ast.AST):
                self._visit(value, node, _attr_setter(node, name))
        if named:
            self.scope.pop()

    def _add(self, node: ast.expr | ast.stmt, op: str, apply: Callable[[], ast.AST]) -> None:
        self.sites.append(_Site(node, op, ".".join(self.scope) or "<module>", apply))

    def _sites(self, node: ast.AST, parent: ast.AST, replace: Callable[[ast.AST], None]) -> None:
        if isinstance(node, ast.Compare):
            for j, cmp in enumerate(node.ops):
                for new in _CMP.get(type(cmp), ()):
                    label = f"{_SYMBOL[type(cmp)]} -> {_SYMBOL[new]}"
                    self._add(node, label, _set_cmp(node, j, new))
        elif isinstance(node, ast.BoolOp):
            new_bool: type[ast.boolop] = ast.Or if isinstance(node.op, ast.And) else ast.And
            label = f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new_bool]}"
            self._add(node, label, _set_field(node, "op", new_bool()))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            label = "not x -> x" if isinstance(node.op, ast.Not) else "-x -> x"
            self._add(node, label, _replace_with(replace, node.operand))
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _BIN:
            new_op = _BIN[type(node.op)]
            label = f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new_op]}"
            self._add(node, label, _set_field(node, "op", new_op()))
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                if isinstance(parent, ast.keyword) and parent.arg == "strict":
                    return  # zip(strict=...) only checks lengths, like an assert
                self._add(node, "bool", _replace_with(replace, _const(node, not value)))
            elif isinstance(value, int):
                for v in _int_variants(value):
                    self._add(node, f"{value} -> {v}", _replace_with(replace, _const(node, v)))
            elif isinstance(value, float):
                f = value + 1.0
                self._add(node, f"{value!r} -> {f!r}", _replace_with(replace, _const(node, f)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("min", "max")
        ):
            other = "max" if node.func.id == "min" else "min"
            renamed = ast.copy_location(ast.Name(other, ast.Load()), node.func)
            self._add(node, f"{node.func.id} -> {other}", _set_field(node, "func", renamed))
        elif isinstance(node, ast.Return):
            if node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None
            ):
                self._add(node, "return None", _set_field(node, "value", _const(node, None)))
            elif node.value is None and isinstance(parent, ast.If) and node in parent.body:
                self._add(node, "return -> pass", _replace_with(replace, _pass(node)))
        elif isinstance(node, (ast.Continue, ast.Break)):
            label = "continue -> pass" if isinstance(node, ast.Continue) else "break -> pass"
            self._add(node, label, _replace_with(replace, _pass(node)))


def _setter(seq: list[Any], i: int) -> Callable[[ast.AST], None]:
    def put(new: ast.AST) -> None:
        seq[i] = new

    return put


def _attr_setter(node: ast.AST, name: str) -> Callable[[ast.AST], None]:
    def put(new: ast.AST) -> None:
        setattr(node, name, new)

    return put


def _set_cmp(node: ast.Compare, j: int, new: type[ast.cmpop]) -> Callable[[], ast.AST]:
    def apply() -> ast.AST:
        node.ops[j] = new()
        return node

    return apply


def _set_field(node: ast.AST, name: str, value: Any) -> Callable[[], ast.AST]:
    def apply() -> ast.AST:
        setattr(node, name, value)
        return node

    return apply


def _replace_with(replace: Callable[[ast.AST], None], new: ast.AST) -> Callable[[], ast.AST]:
    def apply() -> ast.AST:
        replace(new)
        return new

    return apply


def _const(node: ast.AST, value: float | None) -> ast.Constant:
    return ast.copy_location(ast.Constant(value), node)


def _pass(node: ast.stmt) -> ast.Pass:
    return ast.copy_location(ast.Pass(), node)


def _sites_of(source: str) -> tuple[ast.Module, list[_Site]]:
    tree = ast.parse(source)
    return tree, _Enumerator(source.splitlines()).run(tree)


def _uncomment(line: str) -> str:
    with contextlib.suppress(tokenize.TokenError, SyntaxError):
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.COMMENT:
                return line[: tok.start[1]]
    return line


def _squash(text: str) -> str:
    """One line, single spaces, no comments: comments are not behaviour."""
    return re.sub(r"\s+", " ", " ".join(_uncomment(x) for x in text.splitlines())).strip()


def _shown(
    node: ast.expr | ast.stmt, source: str, lines: Sequence[str], new: ast.AST
) -> tuple[str, str]:
    """(before, after) as the whole source line when the node fits on one line."""
    segment = ast.get_source_segment(source, node) or ast.unparse(node)
    replacement = ast.unparse(new)
    if isinstance(new, (ast.BoolOp, ast.Compare, ast.BinOp, ast.IfExp)) and not isinstance(
        node, type(new)
    ):
        replacement = f"({replacement})"
    if node.lineno == node.end_lineno and node.end_col_offset is not None:
        raw = lines[node.lineno - 1].encode()
        line = raw[: node.col_offset].decode() + replacement + raw[node.end_col_offset :].decode()
        return _squash(lines[node.lineno - 1]), _squash(line)
    return _squash(segment), _squash(replacement)


def enumerate_mutants(module: str, source: str) -> list[Mutant]:
    """Every mutant of `source`, in a fixed order (see `mutant_code`)."""
    lines = source.splitlines()
    _, sites = _sites_of(source)
    out: list[Mutant] = []
    seen: dict[str, int] = {}
    for i, site in enumerate(sites):
        node = site.node
        _, fresh_sites = _sites_of(source)
        new = fresh_sites[i].apply()
        before, after = _shown(node, source, lines, new)
        key = f"{module}: {site.scope}: {before} -> {after}"
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key += f" #{seen[key]}"
        end = node.end_lineno or node.lineno
        out.append(Mutant(module, i, node.lineno, end, site.op, site.scope, before, after, key))
    return out


def mutant_code(source: str, filename: str, index: int | None) -> CodeType:
    """The module compiled with mutant `index` applied (None: unchanged)."""
    tree, sites = _sites_of(source)
    if index is not None:
        sites[index].apply()
        ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec", dont_inherit=True)


# -- the child: one pytest run in a fork ------------------------------------------------


class _InMemoryLoader(importlib.machinery.SourceFileLoader):
    """Loads one module from a code object: the mutant exists only in this process."""

    def __init__(self, fullname: str, path: str, code: CodeType) -> None:
        super().__init__(fullname, path)
        self._code = code

    def get_code(self, fullname: str) -> CodeType:
        return self._code


class _InMemoryFinder(importlib.abc.MetaPathFinder):
    def __init__(self, fullname: str, path: str, code: CodeType) -> None:
        self.fullname, self.path, self.code = fullname, path, code

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.fullname:
            return None
        loader = _InMemoryLoader(fullname, self.path, self.code)
        return importlib.util.spec_from_file_location(fullname, self.path, loader=loader)


_IMPORT = "<import>"  # lines run outside any test (collection, module import)


class _Tracer:
    """Which test executes which line of one file (sys.settrace, this file only)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.current: str | None = None
        self.lines: dict[int, set[str]] = {}

    def global_trace(self, frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename != self.filename:
            return None
        self._hit(frame.f_lineno)
        return self.local_trace

    def local_trace(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "line":
            self._hit(frame.f_lineno)
        return self.local_trace

    def _hit(self, line: int) -> None:
        self.lines.setdefault(line, set()).add(self.current or _IMPORT)


class _Recorder:
    """pytest plugin: outcomes and durations per test, and the tracer's test context."""

    def __init__(self, tracer: _Tracer | None) -> None:
        self.tracer = tracer
        self.collected: list[str] = []
        self.durations: dict[str, float] = {}
        self.failed: str | None = None

    def pytest_collection_finish(self, session: Any) -> None:
        self.collected = [item.nodeid for item in session.items]

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        if self.tracer is not None:
            self.tracer.current = nodeid

    def pytest_runtest_logfinish(self, nodeid: str, location: object) -> None:
        if self.tracer is not None:
            self.tracer.current = None

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if report.failed and self.failed is None:
            self.failed = report.nodeid

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed and self.failed is None:
            self.failed = f"collecting {report.nodeid}"


@dataclass
class _Job:
    """One pytest run in a forked child."""

    copy_root: Path
    fullname: str
    filename: str
    code: CodeType
    tests: Sequence[str]
    result: Path
    log: str
    trace: bool = False
    extra_args: Sequence[str] = ()


def _hypothesis_profile() -> None:
    from hypothesis import HealthCheck, Phase, settings

    settings.register_profile(
        "slamon-mutate",
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target),
    )
    settings.load_profile("slamon-mutate")


def _child(job: _Job) -> NoReturn:
    """Runs in the fork: never returns, never touches anything but the private copy."""
    code = 99
    try:
        os.setpgid(0, 0)
        log = os.open(job.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(job.copy_root)
        here = str(Path(__file__).resolve().parent)
        sys.path[:] = [str(job.copy_root)] + [p for p in sys.path if p not in ("", here)]
        sys.dont_write_bytecode = True  # parallel children share the copy's __pycache__
        sys.meta_path.insert(0, _InMemoryFinder(job.fullname, job.filename, job.code))
        _hypothesis_profile()
        tracer = _Tracer(job.filename) if job.trace else None
        recorder = _Recorder(tracer)
        import pytest

        args = ["-x", "-q", "-p", "no:cacheprovider", "--tb=short", "--no-header"]
        # the fork inherits hypothesis already imported: nothing of ours to rewrite there
        args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
        args += ["--rootdir", str(job.copy_root), "-c", str(job.copy_root / "pyproject.toml")]
        if tracer is not None:
            args.remove("-x")  # coverage of every test, whatever fails under tracing
            threading.settrace(tracer.global_trace)
            sys.settrace(tracer.global_trace)
        rc = pytest.main([*args, *job.extra_args, *job.tests], plugins=[recorder])
        sys.settrace(None)
        code = int(rc)
        origin = getattr(sys.modules.get("slamon"), "__file__", None) or ""
        if origin and not origin.startswith(str(job.copy_root)):
            print(f"slamon was imported from {origin}, not from the copy", flush=True)
            code = 98
        out = {
            "rc": code,
            "failed": recorder.failed,
            "collected": recorder.collected,
            "durations": recorder.durations,
            "modules": sorted(sys.modules),
            "lines": {str(k): sorted(v) for k, v in tracer.lines.items()} if tracer else {},
        }
        job.result.write_text(json.dumps(out))
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


@dataclass
class _Running:
    pid: int
    job: _Job
    started: float
    deadline: float
    mutant: Mutant | None = None


class Pool:
    """At most `jobs` forked children at a time; each is killed by process group on
    timeout, on an exception and on Ctrl-C."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self.running: dict[int, _Running] = {}

    def start(self, job: _Job, timeout: float, mutant: Mutant | None = None) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            _child(job)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        now = time.monotonic()
        self.running[pid] = _Running(pid, job, now, now + timeout, mutant)

    def wait_one(self) -> tuple[_Running, int | None, dict[str, Any] | None]:
        """Next finished child: (its record, exit code or None on timeout, its result)."""
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid and pid in self.running:
                run = self.running.pop(pid)
                rc = os.waitstatus_to_exitcode(status)
                return run, rc, _read_result(run.job.result)
            now = time.monotonic()
            for run in list(self.running.values()):
                if now >= run.deadline:
                    self._kill(run.pid)
                    del self.running[run.pid]
                    return run, None, None
            time.sleep(0.02)

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def kill_all(self) -> None:
        for pid in list(self.running):
            self._kill(pid)
        self.running.clear()


def _read_log(path: str, tail: int = 3000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-tail:]
    except OSError:
        return ""
    finally:
        with contextlib.suppress(OSError):
            Path(path).unlink()


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    return data


# -- one module ------------------------------------------------------------------------


@dataclass
class Options:
    jobs: int = 1
    max_mutants: int | None = None
    select: bool = True
    timeout_factor: float = 3.0
    min_timeout: float = 10.0
    verbose: bool = False


@dataclass
class ModuleReport:
    module: str
    tests: list[str]
    mutants: list[Mutant] = field(default_factory=list)
    seconds: float = 0.0
    baseline_seconds: float = 0.0
    error: str | None = None

    def count(self, *statuses: str) -> int:
        return sum(1 for m in self.mutants if m.status in statuses)

    @property
    def equivalent(self) -> int:
        return sum(1 for m in self.mutants if m.equivalent and m.status not in _STATUS_KILLED)

    @property
    def score(self) -> float | None:
        relevant = len(self.mutants) - self.equivalent
        return self.count(*_STATUS_KILLED) / relevant if relevant else None


def _fullname(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def _select(mutants: list[Mutant], opts: Options, lines: Sequence[int] | None) -> list[Mutant]:
    if lines:
        mutants = [m for m in mutants if any(m.line <= x <= m.end_line for x in lines)]
    return _sample(mutants, opts.max_mutants)


def _sample(mutants: list[Mutant], limit: int | None) -> list[Mutant]:
    """`limit` mutants spread evenly over the module (deterministic)."""
    if limit is None or limit >= len(mutants):
        return mutants
    if limit <= 0:
        return []
    step = len(mutants) / limit
    return [mutants[int(i * step)] for i in range(limit)]


class Runner:
    def __init__(self, copy_root: Path, scratch: Path, opts: Options) -> None:
        self.copy_root = copy_root
        self.scratch = scratch
        self.opts = opts
        self.pool = Pool(opts.jobs)
        self.seq = 0

    def _job(self, module: str, code: CodeType, tests: Sequence[str], **kw: Any) -> _Job:
        self.seq += 1
        return _Job(
            copy_root=self.copy_root,
            fullname=_fullname(module),
            filename=str(self.copy_root / module),
            code=code,
            tests=list(tests),
            result=self.scratch / f"result-{self.seq}.json",
            log=kw.pop("log", str(self.scratch / f"log-{self.seq}.txt")),
            **kw,
        )

    def _run_alone(self, job: _Job, timeout: float) -> tuple[int | None, dict[str, Any] | None]:
        self.pool.start(job, timeout)
        _, rc, result = self.pool.wait_one()
        return rc, result

    def preload(self, module: str, tests: Sequence[str]) -> None:
        """Import in this process the third-party modules the tests use, so each fork
        starts with them loaded; never slamon or the tests (they come from the copy).

        Runs before any baseline, so a preload that upsets a library shows up there.
        """
        source = (self.copy_root / module).read_text()
        code = mutant_code(source, str(self.copy_root / module), None)
        job = self._job(module, code, tests, extra_args=["--collect-only"])
        rc, found = self._run_alone(job, 600.0)
        if rc != 0 or found is None:
            raise RuntimeError(f"collecting {', '.join(tests)} failed (exit {rc})")
        # public packages first, outermost first: importing a C accelerator such as
        # _asyncio before its package leaves the package on its pure-Python fallback
        names = sorted(
            found["modules"],
            key=lambda n: (any(p.startswith("_") for p in n.split(".")), n.count("."), n),
        )
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            for name in names:
                top = name.partition(".")[0]
                if top in ("slamon", "tests", "__main__", "__mp_main__") or name in sys.modules:
                    continue
                with contextlib.suppress(BaseException):
                    importlib.import_module(name)
        leaked = [n for n in sys.modules if n.partition(".")[0] in ("slamon", "tests")]
        if leaked:
            raise RuntimeError(f"the runner imported {leaked[:3]}: mutants would not load")

    def run_module(self, module: str, tests: Sequence[str], mutants: list[Mutant]) -> ModuleReport:
        started = time.monotonic()
        report = ModuleReport(module, list(tests), mutants)
        source = (self.copy_root / module).read_text()
        original = mutant_code(source, str(self.copy_root / module), None)

        # baseline: every test must pass on the unchanged module
        log = str(self.scratch / "baseline.log")
        rc, base = self._run_alone(self._job(module, original, tests, log=log), 900.0)
        if rc != 0 or base is None:
            tail = Path(log).read_text()[-3000:] if Path(log).exists() else ""
            raise RuntimeError(f"{module}: baseline tests fail (exit {rc}):\n{tail}")
        report.baseline_seconds = time.monotonic() - started
        durations: dict[str, float] = base["durations"]
        all_tests: list[str] = base["collected"]

        lines: dict[int, set[str]] = {}
        if self.opts.select:
            log = str(self.scratch / "coverage.log")
            job = self._job(module, original, tests, log=log, trace=True)
            rc, cov = self._run_alone(job, 1800.0)
            if cov is None:
                raise RuntimeError(f"{module}: the traced run did not finish (exit {rc})")
            lines = {int(k): set(v) for k, v in cov["lines"].items()}

        def selection(m: Mutant) -> list[str] | None:
            if not self.opts.select:
                return all_tests
            hit: set[str] = set()
            for line in range(m.line, m.end_line + 1):
                hit |= lines.get(line, set())
            if _IMPORT in hit:
                return all_tests
            return sorted(hit, key=lambda t: (round(durations.get(t, 0.0), 2), t))

        def timeout(chosen: Sequence[str]) -> float:
            expected = sum(durations.get(t, 0.0) for t in chosen)
            return max(self.opts.min_timeout, self.opts.timeout_factor * expected + 2.0)

        queue: list[tuple[Mutant, list[str]]] = []
        for m in mutants:
            chosen = selection(m)
            if not chosen:
                m.status = "uncovered"
                continue
            queue.append((m, chosen))
        self._drain(module, source, queue, timeout)

        # a survivor of a subset must also survive every test of the module
        again = [
            (m, all_tests)
            for m, chosen in queue
            if m.status == "survived" and len(chosen) < len(all_tests)
        ]
        if again:
            self._drain(module, source, again, timeout)
        for m in mutants:
            if m.status in ("survived", "uncovered"):
                m.equivalent = EQUIVALENT.get(m.key)
        report.seconds = time.monotonic() - started
        return report

    def _drain(
        self,
        module: str,
        source: str,
        queue: list[tuple[Mutant, list[str]]],
        timeout: Callable[[Sequence[str]], float],
    ) -> None:
        pending = list(queue)
        done = 0
        t0 = time.monotonic()
        while pending or self.pool.running:
            while pending and len(self.pool.running) < self.pool.jobs:
                nxt, chosen = pending.pop(0)
                code = mutant_code(source, str(self.copy_root / module), nxt.index)
                nxt.tests_run = len(chosen)
                self.pool.start(self._job(module, code, chosen), timeout(chosen), nxt)
            run, rc, result = self.pool.wait_one()
            assert run.mutant is not None
            m = run.mutant
            m.seconds = round(time.monotonic() - run.started, 2)
            log = _read_log(run.job.log)
            # exit 4 is also what pytest says when the conftest or a test module named by
            # node id cannot be imported: the mutant broke the import of its module
            collect_error = str((result or {}).get("failed") or "").startswith("collecting")
            broke_import = rc == 4 and (collect_error or "while loading conftest" in log)
            if rc in (4, 5, 98) and not broke_import:  # not a verdict on the mutant
                raise RuntimeError(f"{module}: pytest could not run the tests (exit {rc}):\n{log}")
            if rc is None:
                m.status, m.killed_by = "timeout", None
            elif rc == 0:
                m.status, m.killed_by = "survived", None
            elif rc == 99:  # the harness itself failed, not a test
                m.status, m.killed_by = "error", None
            else:  # failed tests, a collection error (import broke) or a crash
                m.status = "killed"
                m.killed_by = (result or {}).get("failed") or (
                    "conftest import" if broke_import else f"exit {rc}"
                )
            done += 1
            if self.opts.verbose:
                line = f"  {m.index:4d} L{m.line:<4d} {m.status:8s} {m.op:14s} {m.after}"
                print(line, flush=True)
            elif done % 25 == 0:
                took = time.monotonic() - t0
                print(f"  {module}: {done}/{len(queue)} run, {took:.0f} s", flush=True)


# -- the whole run ---------------------------------------------------------------------


def _copy_repo(dest: Path) -> None:
    """A private snapshot of what the tests need; nothing is written to the repo."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(REPO / "slamon", dest / "slamon", ignore=ignore)
    shutil.copytree(REPO / "tests", dest / "tests", ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    # unchanged modules load from .pyc in every fork; the mutated one never does
    compileall.compile_dir(str(dest / "slamon"), quiet=2)


def _resolve_modules(names: Sequence[str] | None) -> list[str]:
    if not names:
        return list(MODULES)
    out: list[str] = []
    for name in names:
        path = name.removeprefix("./")
        if path.endswith(".py") and path in MODULES:
            out.append(path)
            continue
        dotted = [m for m in MODULES if _fullname(m) == name]
        short = [m for m in MODULES if Path(m).stem == name]
        found = dotted or short
        if len(found) != 1:
            raise SystemExit(f"unknown module {name!r}; choose from: {', '.join(MODULES)}")
        out.append(found[0])
    return out


def _fmt_score(score: float | None) -> str:
    return "-" if score is None else f"{100 * score:.1f} %"


def print_table(reports: Sequence[ModuleReport]) -> None:
    header = (
        f"{'module':28s} {'mutants':>7s} {'killed':>6s} {'timeout':>7s} {'survived':>8s} "
        f"{'equiv':>5s} {'score':>8s} {'time':>7s}"
    )
    print(header)
    print("-" * len(header))
    for r in reports:
        if r.error:
            print(f"{r.module:28s} error: {r.error}")
            continue
        survived = r.count("survived", "uncovered")
        print(
            f"{r.module:28s} {len(r.mutants):7d} {r.count('killed'):6d} "
            f"{r.count('timeout'):7d} {survived:8d} {r.equivalent:5d} "
            f"{_fmt_score(r.score):>8s} {r.seconds:6.0f}s"
        )


def print_survivors(reports: Sequence[ModuleReport]) -> None:
    for r in reports:
        holes = [m for m in r.mutants if m.status in ("survived", "uncovered", "error")]
        stale = [m for m in r.mutants if m.status in _STATUS_KILLED and EQUIVALENT.get(m.key)]
        if not holes and not stale:
            continue
        print(f"\n{r.module}:")
        for m in holes:
            tag = "equivalent" if m.equivalent else m.status
            print(f"  L{m.line:<4d} [{tag}] {m.op}: {m.before}  =>  {m.after}")
            if not m.equivalent:
                print(f"        key: {m.key}")
        for m in stale:
            print(f"  L{m.line:<4d} listed as equivalent but killed by {m.killed_by}: {m.key}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--module", action="append", help="path, dotted name or stem; repeatable")
    parser.add_argument("--max-mutants", type=int, help="per module, spread evenly over it")
    parser.add_argument(
        "--line", type=int, action="append", help="only mutants on this source line; repeatable"
    )
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--json", type=Path, help="write every mutant and the scores here")
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument(
        "--no-select", action="store_true", help="run all of a module's tests for every mutant"
    )
    parser.add_argument("--timeout-factor", type=float, default=3.0)
    parser.add_argument("--min-timeout", type=float, default=10.0)
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per mutant")
    args = parser.parse_args(argv)
    opts = Options(
        jobs=args.jobs,
        max_mutants=args.max_mutants,
        select=not args.no_select,
        timeout_factor=args.timeout_factor,
        min_timeout=args.min_timeout,
        verbose=args.verbose,
    )
    modules = _resolve_modules(args.module)

    if args.list:
        for module in modules:
            source = (REPO / module).read_text()
            mutants = _select(enumerate_mutants(module, source), opts, args.line)
            print(f"{module}: {len(mutants)} mutants")
            for m in mutants:
                print(f"  {m.index:4d} L{m.line:<4d} {m.op:14s} {m.after}")
        return 0

    def interrupt(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    # SIGTERM, SIGHUP and SIGINT (also when started in the background of a script,
    # which ignores it) end the run like Ctrl-C: children killed, the copy removed
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    started = time.monotonic()
    reports: list[ModuleReport] = []
    scratch = Path(tempfile.mkdtemp(prefix="slamon-mutate-"))
    runner: Runner | None = None
    try:
        copy_root = scratch / "repo"
        _copy_repo(copy_root)
        runner = Runner(copy_root, scratch, opts)
        tests_of = {m: [t for t in MODULES[m] if (copy_root / t).exists()] for m in modules}
        runner.preload(modules[0], sorted({t for m in modules for t in tests_of[m]}))
        for module in modules:
            tests = tests_of[module]
            source = (copy_root / module).read_text()
            mutants = _select(enumerate_mutants(module, source), opts, args.line)
            print(f"{module}: {len(mutants)} mutants, tests {', '.join(tests)}", flush=True)
            try:
                reports.append(runner.run_module(module, tests, mutants))
            except RuntimeError as exc:  # the other modules can still be measured
                print(f"  {exc}", flush=True)
                reports.append(ModuleReport(module, tests, [], error=str(exc).split("\n")[0]))
            if args.json:
                write_json(args.json, reports, time.monotonic() - started, opts)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if runner is not None:
            runner.pool.kill_all()
        shutil.rmtree(scratch, ignore_errors=True)

    elapsed = time.monotonic() - started
    print()
    print_table(reports)
    print_survivors(reports)
    print(f"\n{elapsed:.0f} s in all, --jobs {opts.jobs}")
    if args.json:
        write_json(args.json, reports, elapsed, opts)
    return 1 if any(r.error for r in reports) else 0


def write_json(path: Path, reports: Sequence[ModuleReport], elapsed: float, opts: Options) -> None:
    modules = {
        r.module: {
            "tests": r.tests,
            "mutants": len(r.mutants),
            "killed": r.count("killed"),
            "timeout": r.count("timeout"),
            "survived": r.count("survived", "uncovered"),
            "uncovered": r.count("uncovered"),
            "equivalent": r.equivalent,
            "score": r.score,
            "seconds": round(r.seconds, 1),
            "error": r.error,
        }
        for r in reports
    }
    doc = {
        "seconds": round(elapsed, 1),
        "jobs": opts.jobs,
        "select": opts.select,
        "modules": modules,
        "mutants": [asdict(m) for r in reports for m in r.mutants],
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
