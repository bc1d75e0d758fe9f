"""Long walks on the event loop, cut into turns of a few milliseconds each.

A fixed count of items between two yields is wrong on some host: what takes 2 ms on
one machine takes 8 on a slower or busier one, and every probe due meanwhile starts
that much late. A `Pacer` yields once its turn has run for `budget` seconds, whatever
an item costs. Asking whether it is due is one clock read, so a walk can ask after
every item:

    pacer = Pacer()
    for item in items:
        work(item)
        if pacer.due():
            await pacer.rest()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: seconds of work between two yields to the event loop: probes due meanwhile wait at
#: most this long (goal: no probe delayed by more than 10 ms)
BUDGET = 0.002


class Pacer:
    __slots__ = ("_clock", "_mark", "budget")

    def __init__(self, budget: float = BUDGET,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if budget < 0:
            raise ValueError(f"a pacer's budget must be >= 0 seconds, not {budget}")
        self.budget = budget
        self._clock = clock
        self._mark = clock()

    def due(self) -> bool:
        """Whether this turn has run its budget (0: after every item)."""
        return self._clock() - self._mark >= self.budget

    async def rest(self) -> None:
        """One turn of the event loop, then a new budget."""
        await asyncio.sleep(0)
        self._mark = self._clock()
