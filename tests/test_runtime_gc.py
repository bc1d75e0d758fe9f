"""The daemon's garbage-collector policy (`slamon.app.runtime`): the young objects are
walked every second, while they are few, and never before start-up is settled."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from slamon.app.runtime import collect_young


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
    try:
        yield
    finally:
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
