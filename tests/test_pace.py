"""`Pacer`: long walks on the event loop yield once a turn has run its time budget."""

from __future__ import annotations

import asyncio

import pytest

from slamon.util.pace import Pacer


def test_due_once_the_budget_is_spent() -> None:
    now = [10.0]
    pacer = Pacer(0.0025, clock=lambda: now[0])
    marks = []
    for _ in range(10):
        now[0] += 0.001  # an item of 1 ms
        marks.append(pacer.due())
        if marks[-1]:
            asyncio.run(pacer.rest())
    # 2.5 ms of budget: due after every third item, counted from the last rest
    assert marks == [False, False, True] * 3 + [False]
    assert Pacer(0.0, clock=lambda: now[0]).due()


def test_rest_lets_other_tasks_run() -> None:
    async def main() -> int:
        ran = 0

        async def other() -> None:
            nonlocal ran
            ran += 1

        task = asyncio.create_task(other())
        await Pacer(0.0).rest()
        await task
        return ran

    assert asyncio.run(main()) == 1


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match=r"budget must be >= 0 seconds, not -1"):
        Pacer(-1)
