"""The daemon's garbage-collector policy (`slamon.app.runtime`): the young objects are
walked every second, while they are few, and never before start-up is settled."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from slamon.app.runtime import collect_young, settle_heap, settle_heap_after


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def gc_state() -> Iterator[None]:
    enabled = gc.isenabled()
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()  # what a settle froze goes back to the oldest generation
        gc.set_threshold(*threshold)
        (gc.enable if enabled else gc.disable)()


@pytest.mark.usefixtures("gc_state")
def test_young_objects_are_walked_once_and_moved_on() -> None:
    gc.disable()  # no collection of its own may move them before the call
    kept = _Node()
    garbage = _cycle()
    assert any(o is kept for o in gc.get_objects(0))
    gc.enable()
    collect_young()
    counts = gc.get_count()
    # the cycle made meanwhile is freed; what lives on goes to the oldest generation,
    # which no young collection walks again
    assert counts[:2] == (0, 0)
    assert garbage() is None
    assert not any(o is kept for o in gc.get_objects(0))
    assert any(o is kept for o in gc.get_objects(2))


@pytest.mark.usefixtures("gc_state")
def test_nothing_is_collected_before_start_up_is_settled() -> None:
    gc.disable()  # as `defer_gc` leaves it until `settle_heap`
    garbage = _cycle()
    kept = _Node()
    collect_young()
    assert garbage() is not None
    assert any(o is kept for o in gc.get_objects(0))
    gc.collect()
    assert garbage() is None


@pytest.mark.usefixtures("gc_state")
def test_the_settle_after_the_first_round_walks_no_old_object() -> None:
    walked: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            walked.append(info["generation"])

    gc.disable()
    first = settle_heap()  # start-up's: a full collection frees what start-up left
    garbage = _cycle()
    assert first.full and first.freed >= 0
    kept = _Node()
    collect_young()  # survivors of the first round reach the oldest generation
    assert garbage() is None and any(o is kept for o in gc.get_objects(2))
    gc.callbacks.append(seen)
    try:
        done = asyncio.run(settle_heap_after(0))
    finally:
        gc.callbacks.remove(seen)
    # a full collection here held the event loop 85-155 ms at 10,000 targets, for
    # nothing to free: the old objects are frozen without a walk
    assert walked and max(walked) == 1 and not done.full
    assert not any(o is kept for o in gc.get_objects(2))
    assert gc.isenabled() and gc.get_threshold()[2] == 1000
