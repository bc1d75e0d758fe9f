"""The incident log past its capacity, against a naive model: every open incident stays,
the oldest resolved ones go, and the log is trimmed in passes, once a tenth of the
capacity can go, so that thousands of open incidents do not make each new one walk them
all."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from slamon.util.events import Event, EventKind
from slamon.web.status import IncidentLog
from slamon.web.status.incidents import Incident


def _event(down: bool, target: str, at: float) -> Event:
    kind = EventKind.TARGET_DOWN if down else EventKind.TARGET_UP
    return Event(kind, at, target=target, details={"reason": "refused"})


async def _replay(capacity: int, flips: list[tuple[int, bool]]) -> None:
    log = IncidentLog(capacity=capacity)
    slack = log.trim_step
    for step, (target, down) in enumerate(flips):
        before = {i.id: i for i in log.incidents}
        await log.record(_event(down, f"t{target}", float(step)))
        held = {i.id: i for i in log.incidents}
        gone = sorted(set(before) - set(held))
        # only resolved incidents go, the oldest first: never one newer than an incident
        # that was resolved when it went and is still held (one still open then may
        # resolve later and be older than what went)
        assert all(not before[g].ongoing for g in gone)
        kept_resolved = [i for i in held if i in before and not before[i].ongoing]
        if gone and kept_resolved:
            assert max(gone) < min(kept_resolved)
        resolved_held = [i for i in held if not held[i].ongoing]
        ongoing = sum(1 for i in held.values() if i.ongoing)
        if set(held) - set(before):  # an incident added: the log trims (a resolve does not)
            assert len(held) <= max(capacity, ongoing) + slack - 1
        assert [i.id for i in log.incidents] == sorted(held)  # oldest first, as before
        # what the log counts as resolved is what it holds
        assert log._resolved == len(resolved_held)


@settings(max_examples=100, deadline=None)
# ten resolved, then more open ones than the capacity leaves room for: the first pass
# drops two resolved ones (a tenth of 20), which must be the two oldest
@example(capacity=20, flips=[*((t, True) for t in range(10)), *((t, False) for t in range(10)),
                             *((t, True) for t in range(10, 25))])
# t1 is still open when t0's first incident goes, and resolves after it: older than
# what went, and rightly held
@example(capacity=1, flips=[(1, True), (0, True), (0, False), (0, True), (1, False)])
@given(capacity=st.integers(1, 40),
       flips=st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=300))
def test_the_log_keeps_the_open_and_the_newest_resolved_incidents(
        capacity: int, flips: list[tuple[int, bool]]) -> None:
    asyncio.run(_replay(capacity, flips))


def test_thousands_open_do_not_make_each_new_incident_walk_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """4,000 targets down for good, then 1,000 more flapping: their resolved incidents
    sit behind the 4,000 open ones. Trimmed one at a time, each incident added walked
    past all 4,000 (~20 million looks at an incident in all); in passes, each pass
    drops every resolved incident it can, and starts once a tenth of the capacity can
    go."""
    looks = 0
    ongoing = Incident.ongoing

    def counted(inc: Incident) -> bool:
        nonlocal looks
        looks += 1
        return bool(ongoing.fget(inc))  # type: ignore[misc]

    monkeypatch.setattr(Incident, "ongoing", property(counted))
    log = IncidentLog(capacity=500)

    async def run() -> None:
        await log.record_many([_event(True, f"s{i}", 0.0) for i in range(4000)])
        for r in range(1, 6):
            await log.record_many([_event(True, f"f{i}", r) for i in range(1000)])
            await log.record_many([_event(False, f"f{i}", r + 0.5) for i in range(1000)])
        await log.record_many([_event(True, f"f{i}", 6.0) for i in range(1000)])

    asyncio.run(run())
    held = list(log.incidents)
    assert sum(1 for i in held if i.ongoing) == 5000
    assert len(held) < 5000 + 500 // 10
    # the newest resolved incidents are those held
    assert [i.start for i in held if not i.ongoing] == [5.0] * (len(held) - 5000)
    # 5,000 resolved incidents went in a pass a round, ~5,000 looks each (~45,000 in all
    # with the resolves' own looks); the old trim made 20,025,000
    assert looks < 1_000_000
