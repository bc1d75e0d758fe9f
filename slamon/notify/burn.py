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


#: SLOs evaluated per check (once a second): with more, a round-robin share, so one check
#: never holds the event loop for long (10,000 SLOs burning at once took ~0.5 s); an SLO's
#: alert then starts or resolves within len(slos) / BUDGET seconds of the burn changing
BUDGET = 2000
#: an SLO whose SLI counted no new event since its last evaluation is evaluated again
#: only after this long: its rates then move only as old events leave the windows
RECHECK = 15.0


def _longest(state: SloState) -> float:
    return max((aw.long for aw in state.slo.alert_windows), default=0.0)


class BurnWatch:
    """Turns `burn_alerts` changes into events. Not thread-safe; call from the loop."""

    def __init__(self, budget: int = BUDGET) -> None:
        self._firing: dict[str, set[Pair]] = {}
        self.budget = budget
        self._cursor = 0
        #: per SLO, (its state object, valid events counted, when) at the last evaluation
        self._evaluated: dict[str, tuple[int, int, float]] = {}
        #: per SLO, (its config, its longest alert window): asked for every SLO each check
        self._longest: dict[str, tuple[Slo, float]] = {}
        #: the live state's config generation at the last forgetting of removed SLOs
        self._generation = 0

    def _share(self, live: LiveState) -> list[str]:
        """The SLOs this check evaluates: all of them, or the next `budget` in turn."""
        ids = list(live.slos)
        n = len(ids)
        if n <= self.budget:
            return ids
        start = self._cursor % n
        self._cursor = (start + self.budget) % n
        chosen = ids[start:start + self.budget]
        return chosen + ids[:self.budget - len(chosen)]

    def check(self, live: LiveState, now: float) -> list[Event]:
        """The events of this check, in one go."""
        events: list[Event] = []
        for slo_id in self._share(live):
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
        for slo_id in self._share(live):
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
        # no bad event within the longest alert window: nothing can fire (rate 0)
        if not before and state.last_bad < now - longest:
            return
        # every rate is a ratio of valid events: without a new one since the last
        # evaluation only the windows' slide can move it, which RECHECK bounds. A
        # burning SLO is then evaluated once per probe interval, not every second
        mark = (id(state), state.valid_total)
        last = self._evaluated.get(slo_id)
        if last is not None and last[:2] == mark and 0 <= now - last[2] < RECHECK:
            return
        self._evaluated[slo_id] = (*mark, now)
        after = burn_alerts(state, now)
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
        self._firing[slo_id] = after

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
