"""A closed SLA period is final: whatever is edited afterwards (objective, targets, parts,
maintenance, sample minimum, grace, descriptions), its stored result, evidence root and
policy digest stay byte for byte, also after a restart; an edit that changes how periods are
counted gives a new policy digest from the period after the open one on (the open one
closes under the policy it began with). Real StateStore (SQLite) and
SlaTracker, periods closed deterministically."""

from __future__ import annotations

import dataclasses
import random
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from slamon.config.loader import load_config
from slamon.sla import tracker as tracker_module
from slamon.sla.periods import period_bounds
from slamon.sla.policy import policy_digest_for
from slamon.sla.tracker import SlaTracker
from slamon.store.sqlite import StateStore
from slamon.util.log import get_logger
from slamon.wallclock import utc_iso
from tests.test_api import RES, P, make_state

Edit = Callable[[str], str]


def _maintenance(text: str) -> str:
    """A window over the first half of the (closed) period P, for the api target."""
    start, end = utc_iso(P * 60), utc_iso(P * 60 + 30)
    return text + textwrap.dedent(f"""
        maintenance:
          - {{id: m1, kind: once, once: {{start: "{start}", end: "{end}"}}, targets: [api]}}
    """)


def _shop(where: Path) -> str:
    """A config of one target, `web`, and its SLO, `shop`, with its state in `where`; the
    `slas:` list it ends with is the caller's to fill."""
    return textwrap.dedent(f"""
        server: {{listen: "127.0.0.1:0"}}
        state: {{path: "{where / 'state.sqlite3'}"}}
        targets:
          - {{id: web, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/"}}}}
        slos:
          - {{id: shop, targets: [web], objective: 0.9, window: 1h}}
        slas:
        """)


EDITS: dict[str, tuple[Edit, bool]] = {
    # name: (edit of the config text, whether it changes how periods are counted)
    "objective": (lambda t: t.replace("objective: 0.9,", "objective: 0.95,"), True),
    "slo description": (lambda t: t.replace("window: 1h}", "window: 1h, description: x}"),
                        False),
    "target url": (lambda t: t.replace('9/"}}', '9/moved"}}', 1), True),
    "parts": (lambda t: t.replace("targets: [web, api]", "targets: [web]"), True),
    "maintenance": (_maintenance, True),
    "grace": (lambda t: t.replace("grace: 1s", "grace: 2s"), False),
}


@pytest.mark.parametrize("name", list(EDITS))
async def test_closed_periods_are_final_whatever_is_edited(tmp_path: Path, name: str) -> None:
    edit, counts = EDITS[name]
    state = await make_state(tmp_path)
    store, tracker = state.store, state.tracker
    before = await store.periods("gold")
    assert [c.period for c in before] == [P, P + 1]
    old_digest = before[-1].policy_digest

    text = state.config_path.read_text()
    edited = edit(text)
    assert edited != text, f"the {name} edit did not apply"
    state.config_path.write_text(edited)
    config = load_config(state.config_path)
    tracker.apply_config(config, state.now)
    assert await store.periods("gold") == before
    if name in ("maintenance", "parts"):
        # recomputed under the edit, period P would read differently: the stored one stays
        rt = tracker.slas["gold"]
        start, end = period_bounds(rt.sla.period, P)
        recomputed = tracker._result(rt.policies[-1], start, end,
                                     await store.period_leaves("gold", start, end))
        assert recomputed.to_json() != before[0].result
    # a period closed again (a second daemon, a replayed close) cannot overwrite it
    forged = dataclasses.replace(before[0], result={**before[0].result, "good": 0},
                                 root=b"\x01" * 32)
    assert await store.close_period(forged, P) is False
    assert await store.periods("gold") == before

    # the open period closes under the policy it began with, the next under the edit
    assert tracker.slas["gold"].last_closed == P + 1
    for n in (P + 2, P + 3):
        for b in range(n * 60 + RES, (n + 1) * 60, RES):
            store.add_leaf("gold", "web", b, 1, 1, 0)
            store.add_leaf("gold", "api", b, 1, 1, 0)
        closed = await tracker.close_due(now=(n + 1) * 60 + 5)
        assert [r.period_id for r in closed] == [n]
    after = await store.periods("gold")
    assert after[:2] == before
    sla, slo = config.slas[0], config.slos[0]
    new_digest = policy_digest_for(sla, slo, config)
    assert [p.policy_digest for p in after[2:]] == [old_digest, new_digest]
    assert (new_digest != old_digest) is counts

    # and after a restart (the file reopened) the closed periods are the same
    await store.close()
    reopened = StateStore(config.state.resolved_path())
    await reopened.open()
    try:
        assert await reopened.periods("gold") == after
    finally:
        await reopened.close()


async def test_periods_due_together_close_in_batches_as_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seven SLAs with three periods due each: closed in batches (one leaves read and one
    transaction per batch), every record equals the one closing them one by one writes,
    and each SLA's periods close oldest first."""
    slas = "".join(
        f"""  - {{id: s{i}, slo: shop, period: {{kind: fixed, length: 1m}},
       evidence_resolution: {RES}s, grace: 1s}}
""" for i in range(7))
    async def close_all(batch: int, where: Path) -> tuple[list[tuple[str, int]], int, list[object]]:
        where.mkdir()
        path = where / "slamon.yaml"
        path.write_text(textwrap.dedent(f"""
            server: {{listen: "127.0.0.1:0"}}
            state: {{path: "{where / 'state.sqlite3'}"}}
            targets:
              - {{id: web, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/"}}}}
              - {{id: api, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/"}}}}
            slos:
              - {{id: shop, targets: [web, api], objective: 0.9, window: 1h}}
            slas:
            """) + slas)
        config = load_config(path)
        store = StateStore(config.state.resolved_path())
        await store.open()
        calls = 0
        real = store.close_periods

        async def counted(periods: list[tuple[object, int]]) -> list[bool]:
            nonlocal calls
            calls += 1
            return await real(periods)  # type: ignore[arg-type]

        store.close_periods = counted  # type: ignore[method-assign,assignment]
        monkeypatch.setattr(tracker_module, "CLOSE_BATCH", batch)
        tracker = SlaTracker(config, store, get_logger())
        await tracker.start({}, start_at=P * 60 + 1)
        rng = random.Random(7)
        for i in range(7):
            for b in range(P * 60, (P + 3) * 60, RES):
                for target in ("web", "api"):
                    store.add_leaf(f"s{i}", target, b, int(rng.random() > 0.15), 1, 0)
        closed = await tracker.close_due(now=(P + 3) * 60 + 5)
        order = [(r.sla_id, r.period_id) for r in closed]
        records = [p for i in range(7) for p in await store.periods(f"s{i}")]
        await store.close()
        return order, calls, records

    order, calls, batched = await close_all(4, tmp_path / "batched")
    one_order, one_calls, single = await close_all(1, tmp_path / "single")
    assert (calls, one_calls) == (6, 21)  # 21 periods, 4 per transaction
    assert len(batched) == 21 and [dataclasses.replace(p, closed_at=0) for p in batched] == [
        dataclasses.replace(p, closed_at=0) for p in single]
    assert order == one_order
    for i in range(7):
        assert [n for s, n in order if s == f"s{i}"] == [P, P + 1, P + 2]
    assert len({p.root for p in batched}) > 7  # the leaves differ: a mix-up would show


async def test_periods_due_together_are_judged_off_the_event_loop(tmp_path: Path) -> None:
    """Many periods due at one instant (every SLA of a kind ends its period together) are
    judged on a thread: a month's evidence tree is ~1,500 hashes, and a batch judged in
    one turn of the loop held every probe due meanwhile. The results and records are
    the same as judged anywhere (test_periods_due_together_close_in_batches_as_one_by_one
    compares them with closing one by one)."""
    count = 40
    slas = "".join(
        f"""  - {{id: s{i}, slo: shop, period: {{kind: fixed, length: 1m}},
       evidence_resolution: {RES}s, grace: 1s}}
""" for i in range(count))
    path = tmp_path / "slamon.yaml"
    path.write_text(_shop(tmp_path) + slas)
    config = load_config(path)
    store = StateStore(config.state.resolved_path())
    await store.open()
    try:
        tracker = SlaTracker(config, store, get_logger())
        await tracker.start({}, start_at=P * 60 + 1)
        for i in range(count):
            for b in range(P * 60, (P + 1) * 60, RES):
                store.add_leaf(f"s{i}", "web", b, int(b % 20 == 0), 1, 0)
        threads: list[int] = []
        real = tracker._result

        def result(*args: Any) -> Any:
            threads.append(threading.get_ident())
            return real(*args)

        tracker._result = result  # type: ignore[method-assign]
        closed = await tracker.close_due(now=(P + 1) * 60 + 5)
        assert len(closed) == len(threads) == count
        assert threading.get_ident() not in threads
        stored = [p for i in range(count) for p in await store.periods(f"s{i}")]
        assert [(p.sla, p.period, p.root) for p in stored] == [
            (r.sla_id, r.period_id, r.evidence_root) for r in closed]
    finally:
        await store.close()


async def test_the_next_close_is_found_after_each_close_and_each_reload(tmp_path: Path) -> None:
    """close_due skips the SLAs until the earliest instant one of them closes; that
    instant is worked out again after each close (the next period's turn) and after a
    reload (an added SLA whose period ends sooner)."""
    head = _shop(tmp_path) + (
        "  - {id: slow, slo: shop, period: {kind: fixed, length: 1h}, evidence_resolution: 1m,\n"
        "     grace: 1s}\n")
    path = tmp_path / "slamon.yaml"
    path.write_text(head)
    config = load_config(path)
    store = StateStore(config.state.resolved_path())
    await store.open()
    try:
        tracker = SlaTracker(config, store, get_logger())
        start = P * 3600 + 1
        await tracker.start({}, start_at=start)
        slow = tracker.slas["slow"]
        end = period_bounds(slow.sla.period, P)[1]
        assert await tracker.close_due(now=start + 5) == []
        # an SLA whose minutes close long before the hour
        quick_sla = ("  - {id: quick, slo: shop, period: {kind: fixed, length: 1m},\n"
                     "     evidence_resolution: 1m, grace: 1s}\n")
        path.write_text(head + quick_sla)
        tracker.apply_config(load_config(path), start + 5)
        quick = tracker.slas["quick"]
        first_end = period_bounds(quick.sla.period, quick.first_period)[1]
        closed = await tracker.close_due(now=first_end + quick.grace + 0.5)
        assert [(r.sla_id, r.period_id) for r in closed] == [("quick", quick.first_period)]
        # the next minute closes on its own turn, the hour on its
        closed = await tracker.close_due(now=first_end + 60 + quick.grace + 0.5)
        assert [(r.sla_id, r.period_id) for r in closed] == [("quick", quick.first_period + 1)]
        closed = await tracker.close_due(now=end + slow.grace + 0.5)
        assert sorted((r.sla_id, r.period_id) for r in closed) == [
            ("quick", n) for n in range(quick.first_period + 2,
                                        period_index_of(quick, end) + 1)] + [("slow", P)]
    finally:
        await store.close()


def period_index_of(rt: object, t: float) -> int:
    """The last period of `rt` that ends at or before t."""
    from slamon.sla.periods import period_index

    return period_index(rt.sla.period, t) - 1  # type: ignore[attr-defined]
