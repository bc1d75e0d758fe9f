"""Multiwindow burn-rate alerts (SRE workbook ch. 5), evaluated from the SLO windows.

`burn_alerts` is pure: which (long, short) pairs of an SLO fire at `now`. A
pair fires when the burn rate over *both* its long and its short window is at
least the pair's `burn_rate` (the short window makes the alert resolve soon
after the burning stops). `BurnWatch` remembers the previous answer per SLO
and turns changes into BURN_RATE_FIRING / BURN_RATE_RESOLVED events; the
daemon calls it every few seconds from its advance loop and publishes them.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
from collections.abc import Iterable

from slamon.config.slo import Slo
from slamon.sli.live import LiveState
from slamon.sli.slo import SloState
from slamon.util.durations import format_duration
from slamon.util.events import Event, EventKind
from slamon.util.pace import Pacer

Pair = tuple[float, float]


def burn_alerts(slo_state: SloState, now: float) -> set[Pair]:
    """The (long, short) alert windows of the SLO firing at `now`."""
    firing: set[Pair] = set()
    for aw in slo_state.slo.alert_windows:
        long_rate = slo_state.burn_rate(now, aw.long)
        if long_rate is None or long_rate < aw.burn_rate:
            continue
        short_rate = slo_state.burn_rate(now, aw.short)
        if short_rate is not None and short_rate >= aw.burn_rate:
            firing.add((aw.long, aw.short))
    return firing


@functools.lru_cache(maxsize=256)
def window_name(pair: Pair) -> str:
    return f"{format_duration(pair[0])}/{format_duration(pair[1])}"


@functools.lru_cache(maxsize=256)
def _duration(seconds: float) -> str:
    return format_duration(seconds)


#: SLOs evaluated per check (once a second) at most; the rest wait for the next check in
#: order, so one check never holds the event loop for long (10,000 SLOs burning at once
#: took ~0.5 s); an SLO's alert then starts or resolves within len(slos) / BUDGET seconds
#: of the burn changing
BUDGET = 2000
#: an SLO whose SLI counted no new event since its last evaluation is evaluated again
#: only after this long: its rates then move only as old events leave the windows
RECHECK = 15.0


def _longest(state: SloState) -> float:
    return max((aw.long for aw in state.slo.alert_windows), default=0.0)


class BurnWatch:
    """Turns `burn_alerts` changes into events. Not thread-safe; call from the loop.

    A check looks only at the SLOs that may have changed: those whose windows counted
    an event since the last check (`LiveState.take_counted`), those due a recheck, and
    after a reload (or at the first check) every SLO. A pass over every SLO each second
    cost ~2-3 us per SLO even when nothing was new (docs/benchmarks.md)."""

    def __init__(self, budget: int = BUDGET) -> None:
        self._firing: dict[str, set[Pair]] = {}
        self.budget = budget
        #: SLOs to evaluate, in order (a dict as an ordered set): what a check over
        #: `budget` leaves stays here for the next
        self._queue: dict[str, None] = {}
        #: (when, SLO) to evaluate again without a new event: a firing SLO, or one with a
        #: bad event in its longest window; an entry is stale unless `_recheck_at` agrees
        self._rechecks: list[tuple[float, str]] = []
        self._recheck_at: dict[str, float] = {}
        #: per SLO, (its state object, valid and bad events counted, when) at the last
        #: evaluation
        self._evaluated: dict[str, tuple[int, int, int, float]] = {}
        #: per SLO, (its config, its longest alert window): asked for every SLO each check
        self._longest: dict[str, tuple[Slo, float]] = {}
        #: the live state's config generation at the last queueing of every SLO, and at
        #: the last forgetting of removed SLOs (a reload may come between the two)
        self._queued_generation = 0
        self._generation = 0

    def _share(self, live: LiveState, now: float) -> list[str]:
        """The SLOs this check evaluates: those that may have changed, `budget` at most."""
        queue = self._queue
        if live.generation != self._queued_generation:
            # a new config (or the first check): every SLO, since a restored or rebuilt
            # window's last bad event is unknown until looked at
            self._queued_generation = live.generation
            queue.update(dict.fromkeys(live.slos))
        for state in live.take_counted():
            queue[state.slo.id] = None
        rechecks, recheck_at = self._rechecks, self._recheck_at
        while rechecks and rechecks[0][0] <= now:
            when, slo_id = heapq.heappop(rechecks)
            if recheck_at.get(slo_id) == when:
                del recheck_at[slo_id]
                queue[slo_id] = None
        if len(queue) <= self.budget:
            chosen = list(queue)
            queue.clear()
            return chosen
        chosen = list(itertools.islice(queue, self.budget))
        for slo_id in chosen:
            del queue[slo_id]
        return chosen

    def check(self, live: LiveState, now: float) -> list[Event]:
        """The events of this check, in one go."""
        events: list[Event] = []
        for slo_id in self._share(live, now):
            self._evaluate(live, slo_id, now, events)
        return events + self._forget_removed(live, now)

    async def check_in_pieces(self, live: LiveState, now: float, pacer: Pacer | None = None
                              ) -> list[Event]:
        """`check`, yielding to the event loop whenever `pacer` is due: each SLO costs
        ~50 us when it burns, so a share of 2,000 in one go held the loop ~100 ms and
        delayed the probes due meanwhile. A reload between pieces is fine: an SLO it
        removed is skipped, and forgotten at the end."""
        pacer = pacer or Pacer()
        events: list[Event] = []
        for slo_id in self._share(live, now):
            self._evaluate(live, slo_id, now, events)
            if pacer.due():
                await pacer.rest()
        return events + self._forget_removed(live, now)

    def _evaluate(self, live: LiveState, slo_id: str, now: float, events: list[Event]) -> None:
        """Append the SLO's firing and resolved events."""
        state = live.slos.get(slo_id)
        if state is None:
            return
        before = self._firing.get(slo_id, set())
        known = self._longest.get(slo_id)
        if known is None or known[0] is not state.slo:  # a reload makes a new Slo
            known = self._longest[slo_id] = (state.slo, _longest(state))
        longest = known[1]
        if state.last_bad == math.inf:
            # restored from a snapshot: learn from the window whether it holds bad events
            good, valid = state.counts(now, longest) if longest else (0, 0)
            state.last_bad = now if good < valid else -math.inf
        # no bad event within the longest alert window: nothing can fire (rate 0), and
        # nothing will until a new bad event is counted
        if not before and state.last_bad < now - longest:
            return
        # every rate is a ratio of valid events: without a new one since the last
        # evaluation only the windows' slide can move it, which RECHECK bounds. A
        # burning SLO is then evaluated once per probe interval, not every second.
        # Good events alone only lower every rate (bad / valid; from none to 0 in an
        # empty window), so they cannot start an alert: an SLO not firing is evaluated
        # again only for a new bad event, or once the slide since its last evaluation
        # reaches RECHECK. Otherwise an SLO with a bad event in its windows would be
        # evaluated, all its windows, at each of its good probes
        valid, bad = state.valid_total, state.valid_total - state.good_total
        last = self._evaluated.get(slo_id)
        if (last is not None and last[0] == id(state) and 0 <= now - last[3] < RECHECK
                and (last[1] == valid or (not before and last[2] == bad))):
            return  # its recheck, if it needs one, is still due from that evaluation
        self._evaluated[slo_id] = (id(state), valid, bad, now)
        after = burn_alerts(state, now)
        if after != before:
            self._changed(state, slo_id, before, after, now, events)
            if after:
                self._firing[slo_id] = after
            else:
                del self._firing[slo_id]
        if after or state.last_bad >= now - longest:
            self._recheck(slo_id, now + RECHECK)

    def _recheck(self, slo_id: str, when: float) -> None:
        if self._recheck_at.get(slo_id) != when:
            self._recheck_at[slo_id] = when
            heapq.heappush(self._rechecks, (when, slo_id))

    def _changed(self, state: SloState, slo_id: str, before: set[Pair], after: set[Pair],
                 now: float, events: list[Event]) -> None:
        by_pair = {(aw.long, aw.short): aw for aw in state.slo.alert_windows}
        for pair in sorted(after - before):
            aw = by_pair[pair]
            rate = state.burn_rate(now, aw.long) or 0.0
            events.append(Event(
                EventKind.BURN_RATE_FIRING, now, slo=slo_id,
                summary=(f"SLO {slo_id} burns its error budget {rate:.1f}x too fast "
                         f"over {window_name(pair)}"),
                details={"window": window_name(pair), "long": _duration(pair[0]),
                         "short": _duration(pair[1]), "burn_rate": round(rate, 3),
                         "severity": aw.severity},
            ))
        for pair in sorted(before - after):
            aw_gone = by_pair.get(pair)
            events.append(self._resolved(slo_id, pair, now,
                                         aw_gone.severity if aw_gone else "page"))

    def _forget_removed(self, live: LiveState, now: float) -> list[Event]:
        """Resolve and forget the SLOs a reload removed. Only a reload (a new config
        generation) removes any: three set differences of every SLO each second were
        ~1 % of a core at 10,000 SLOs."""
        if live.generation == self._generation:
            return []
        self._generation = live.generation
        running = live.slos.keys()
        events: list[Event] = []
        for slo_id in set(self._firing) - running:  # SLO removed by a reload
            for pair in sorted(self._firing.pop(slo_id)):
                events.append(self._resolved(slo_id, pair, now, "page"))
        for slo_id in set(self._evaluated) - running:
            del self._evaluated[slo_id]
        for slo_id in set(self._longest) - running:
            del self._longest[slo_id]
        for slo_id in set(self._recheck_at) - running:
            del self._recheck_at[slo_id]  # its entries in the heap are stale now
        return events

    @staticmethod
    def _resolved(slo_id: str, pair: Pair, now: float, severity: str) -> Event:
        return Event(
            EventKind.BURN_RATE_RESOLVED, now, slo=slo_id,
            summary=f"SLO {slo_id} no longer burns too fast over {window_name(pair)}",
            details={"window": window_name(pair), "long": _duration(pair[0]),
                     "short": _duration(pair[1]), "severity": severity},
        )

    def firing(self) -> Iterable[tuple[str, Pair]]:
        for slo_id, pairs in self._firing.items():
            for pair in pairs:
                yield slo_id, pair
