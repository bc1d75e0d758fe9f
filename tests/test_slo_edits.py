"""Editing an SLO never loses history: its windows are views of its targets' events.

The objective, description, window length and alert windows are read when the
SLI, budget and burn rates are computed, so those edits keep the SLO's whole
state. A latency threshold, the parts or a part's timing make a new state whose
part windows read the same targets' events: after the edit (a reload, as SIGHUP
runs it, and a restart) every window equals a recomputation from the outcomes.
"""

from __future__ import annotations

import asyncio
import math
import textwrap
import time
from pathlib import Path

import pytest

from slamon.app import wiring
from slamon.app.daemon import Daemon
from slamon.config.loader import ConfigError, load_config, parse_config
from slamon.config.root import Config
from slamon.config.targets import Target
from slamon.probers.base import FailureReason, ProbeResult
from slamon.sli.events import DEFAULT_BOUNDS
from slamon.sli.live import LiveState
from slamon.sli.window import DEFAULT_TIERS

BASE = """
targets:
  - {id: web, kind: http, interval: 10s, timeout: 2s, http: {url: "http://127.0.0.1:9/"}}
  - {id: api, kind: http, interval: 30s, timeout: 2s, http: {url: "http://127.0.0.1:9/api"}}
slos:
  - {id: shop, targets: [web, api], objective: 0.95, window: 1d, description: x}
  - {id: avail, targets: [web], objective: 0.99, window: 7d}
  - {id: fast, targets: [web], objective: 0.9, sli: latency, latency_threshold: 300ms}
"""


def config(text: str = BASE, state: Path | None = None) -> Config:
    extra = f'state: {{path: "{state}"}}\nserver: {{listen: "127.0.0.1:0"}}\n' if state else ""
    return parse_config(extra + textwrap.dedent(text))


def feed(live: LiveState, cfg: Config, start: float, n: int) -> None:
    web, api = cfg.target("web"), cfg.target("api")
    for i in range(n):
        t = start + 10 * i
        ok = i % 7 != 0
        live.record(web, t, ProbeResult(ok, 0.1 + (i % 5) * 0.1, None if ok
                                        else FailureReason.STATUS))
        if i % 3 == 0:
            live.record(api, t, ProbeResult(True, 0.05))


def counts(live: LiveState, now: float) -> dict[str, object]:
    return {sid: (tuple(s.counts(now, 86400.0)), tuple(s.counts(now, 3600.0)))
            for sid, s in live.slos.items()}


EDITS = {
    "objective": ("objective: 0.95", "objective: 0.97"),
    "description": ("description: x", "description: \"the shop, all of it\""),
    "window": ("window: 1d", "window: 3d"),
    "alert windows": ("window: 7d}", "window: 7d, alert_windows: [{long: 2h, short: 10m, "
                                     "burn_rate: 10}]}"),
}


def test_objective_description_window_and_alert_edits_keep_every_count() -> None:
    now = time.time()
    before_cfg = config()
    live = LiveState(before_cfg)
    feed(live, before_cfg, now - 3000, 290)
    live.advance(now)
    before = counts(live, now)
    states = dict(live.slos)
    text = BASE
    for old, new in EDITS.values():
        text = text.replace(old, new)
    live.apply_config(config(text))
    assert counts(live, now) == before
    assert all(live.slos[sid] is states[sid] for sid in states)
    # the new objective is the one the budget is computed with
    shop = live.slos["shop"]
    assert shop.slo.objective == 0.97
    good, valid = shop.counts(now, 3 * 86400.0)
    assert shop.error_budget_remaining(now) == 1.0 - (valid - good) / (valid * (1.0 - 0.97))


#: every SLO field an edit can touch, on top of EDITS (which keep the whole state)
RECOUNT = {
    **EDITS,
    "threshold on a bound": ("latency_threshold: 300ms", "latency_threshold: 250ms"),
    "threshold between bounds": ("latency_threshold: 300ms", "latency_threshold: 200ms"),
    "latency to availability": ("sli: latency, latency_threshold: 300ms", "sli: availability"),
    "part order": ("targets: [web, api]", "targets: [api, web]"),
    "a part with history added": ("targets: [web], objective: 0.99", "targets: [web, api], "
                                                                     "objective: 0.99"),
    "a part removed": ("targets: [web, api]", "targets: [web]"),
    "a part's interval": ("interval: 30s", "interval: 20s"),
    "a part's timeout": ("interval: 30s, timeout: 2s", "interval: 30s, timeout: 5s"),
}

Outcomes = dict[str, list[tuple[float, bool, float]]]


def recorded(live: LiveState, cfg: Config, start: float, n: int) -> Outcomes:
    """`feed`, keeping every outcome by target."""
    out: Outcomes = {"web": [], "api": []}
    original = live.record

    def keep(target: Target, t: float, result: ProbeResult) -> None:
        out[target.id].append((t, result.ok, result.duration))
        original(target, t, result)

    live.record = keep  # type: ignore[method-assign]
    try:
        feed(live, cfg, start, n)
    finally:
        del live.record
    return out


def recompute(live: LiveState, outcomes: Outcomes, now: float,
              recorded_with: dict[str, tuple[float, ...]]) -> None:
    """Every part window of every SLO equals the count from the outcomes: good under
    the SLO's threshold if it was a bound of the target while they were recorded,
    else under the bound below it (the events hold nothing finer)."""
    for state in live.slos.values():
        slo = state.slo
        threshold = slo.latency_threshold if slo.sli == "latency" else None
        for part in state.parts:
            answered = threshold if threshold is None else max(
                (b for b in recorded_with[part] if b <= threshold), default=-1.0)
            for length in (600.0, 3600.0, 86400.0):
                res = next(t.resolution for t in DEFAULT_TIERS
                           if length <= (t.buckets - 1) * t.resolution)
                first, last = math.floor((now - length) / res), math.floor(now / res)
                inside = [(ok, d) for t, ok, d in outcomes[part]
                          if first <= math.floor(t / res) <= last]
                good = sum(ok and (answered is None or d <= answered) for ok, d in inside)
                assert state.counts(now, length, part) == (good, len(inside)), (slo.id, part)
                if not state.composite:
                    assert state.counts(now, length) == (good, len(inside))


@pytest.mark.parametrize("edit", list(RECOUNT))
async def test_every_window_equals_a_recount_after_any_edit(tmp_path: Path, edit: str) -> None:
    now = time.time()
    state = tmp_path / "state.db"
    path = tmp_path / "slamon.yaml"
    head = f'state: {{path: "{state}"}}\nserver: {{listen: "127.0.0.1:0"}}\n'
    path.write_text(head + textwrap.dedent(BASE))
    first = Daemon(load_config(path), config_path=path, loader=load_config)
    await first._open_state()
    assert first.store is not None
    outcomes = recorded(first.live, first.config, now - 3000, 290)
    bounds = {tid: events.bounds for tid, events in first.live.events.items()}
    assert bounds["web"] == (*DEFAULT_BOUNDS[:2], 0.3, *DEFAULT_BOUNDS[2:])
    first.live.advance(now)
    combined = {sid: s.counts(now, 3600.0) for sid, s in first.live.slos.items() if s.composite}
    old, new = RECOUNT[edit]
    assert old in BASE
    path.write_text(head + textwrap.dedent(BASE.replace(old, new)))
    assert await first.reload()  # what SIGHUP runs
    recompute(first.live, outcomes, now, bounds)
    for sid, counted in combined.items():  # the service's slices as measured then
        if first.live.slos[sid].composite:
            assert first.live.slos[sid].counts(now, 3600.0) == counted
    await first._flush(snapshot=True)
    await first.store.close()
    second = Daemon(load_config(path), config_path=path, loader=load_config)
    await second._open_state()
    assert second.store is not None
    try:
        recompute(second.live, outcomes, now, bounds)
    finally:
        await second.store.close()


def test_a_threshold_between_bounds_is_exact_for_events_after_the_edit() -> None:
    now = time.time()
    cfg = config()
    live = LiveState(cfg)
    recorded(live, cfg, now - 3 * 86400 - 3000, 290)  # days ago, under 300ms
    edited = config(BASE.replace("latency_threshold: 300ms", "latency_threshold: 200ms"))
    live.apply_config(edited)
    assert 0.2 in live.events["web"].bounds and 0.3 not in live.events["web"].bounds
    outcomes = recorded(live, edited, now - 2950, 290)
    recompute(live, outcomes, now, {tid: e.bounds for tid, e in live.events.items()})


def test_snapshot_shape_of_earlier_releases_still_restores() -> None:
    # computed by release 5c6820a for this very config: its snapshots must restore
    live = LiveState(config())
    assert live.restores("shop", "920ee3453be7da95bbdb7cdde43ff2c4")
    assert live.restores("fast", "c99adfda12e4af3b7487495d30fd856b")
    assert not live.restores("fast", "920ee3453be7da95bbdb7cdde43ff2c4")


def test_advance_closes_the_slices_of_composite_slos_only() -> None:
    """A composite SLO counts a time slice once it is closed: a later result closes the
    ones before it, and `LiveState.advance` (which walks only the composite SLOs) the
    last ones, once their parts' timeout has passed."""
    cfg = config()
    live = LiveState(cfg)
    # a multiple of the 30 s slice: the last results (web at now - 110, api at now - 120)
    # fall in one slice, which no later result closes
    now = 1_800_000_000.0
    feed(live, cfg, now - 3000, 290)
    shop, avail = live.slos["shop"], live.slos["avail"]
    before, single = shop.counts(now, 3600.0), avail.counts(now, 3600.0)
    live.advance(now)
    after = shop.counts(now, 3600.0)
    assert after.valid > before.valid > 0 and avail.counts(now, 3600.0) == single


def test_a_snapshot_read_across_a_reload_keeps_the_shapes_of_its_cut() -> None:
    """The snapshot's SLO states are taken at its cut, and each is written under the shape
    of the window key it had then: a reload before the iterator is read (a snapshot is
    read between turns of the event loop) must not pair an old state with a new shape, nor
    trip over an SLO it removed."""
    live = LiveState(config())
    feed(live, config(), time.time() - 3000, 50)
    shapes = {sid: live.shape(sid) for sid in live.slos}
    fast, shop = live.slos["fast"], live.slos["shop"]
    sources = live.snapshot_sources()
    edited = BASE.replace("latency_threshold: 300ms", "latency_threshold: 1s").replace(
        "  - {id: shop, targets: [web, api], objective: 0.95, window: 1d, description: x}\n",
        "")
    live.apply_config(config(edited))
    assert "shop" not in live.slos and live.shape("fast") != shapes["fast"]
    read = {key: (shape, serialise()) for key, shape, serialise in sources}
    assert read["fast"] == (shapes["fast"], fast.to_bytes())
    assert read["shop"] == (shapes["shop"], shop.to_bytes())
    assert read["avail"][0] == shapes["avail"] == live.shape("avail")
    # what the reload parked of the removed SLO is the same state under the same shape
    assert live.parked["shop"] == read["shop"]


async def test_restart_after_an_objective_edit_restores_the_windows(tmp_path: Path) -> None:
    now = time.time()
    state = tmp_path / "state.db"
    first = Daemon(config(state=state))
    await first._open_state()
    assert first.store is not None
    feed(first.live, first.config, now - 3000, 290)
    first.live.advance(now - 30)
    await first._flush(snapshot=True)
    before = counts(first.live, now)
    await first.store.close()
    text = BASE
    for old, new in EDITS.values():
        text = text.replace(old, new)
    second = Daemon(config(text, state=state))
    await second._open_state()
    assert second.store is not None
    try:
        second.live.advance(now - 30)
        assert counts(second.live, now) == before
        assert any(c != ((0, 0), (0, 0)) for c in before.values())
    finally:
        await second.store.close()


def test_an_slo_removed_and_added_back_gets_its_windows_back() -> None:
    now = time.time()
    cfg = config()
    live = LiveState(cfg)
    outcomes = recorded(live, cfg, now - 3000, 290)
    before = counts(live, now)
    without = BASE.replace(
        "  - {id: avail, targets: [web], objective: 0.99, window: 7d}\n", "")
    live.apply_config(config(without))
    assert "avail" not in live.slos and "avail" in live.parked
    live.apply_config(config())
    assert counts(live, now) == before and "avail" not in live.parked
    # an edit to a default bound and back: the events are recounted both times. A
    # threshold outside latency_bounds is a bound only while configured, so the history
    # is answered at the bound below it (250ms) once it has been edited away
    changed = BASE.replace("latency_threshold: 300ms", "latency_threshold: 1s")
    live.apply_config(config(changed))
    assert counts(live, now)["fast"] != before["fast"]
    live.apply_config(config())
    recompute(live, outcomes, now, {"web": DEFAULT_BOUNDS, "api": DEFAULT_BOUNDS})
    kept = config("state: {latency_bounds: [250ms, 300ms, 1s]}\n" + BASE)
    again = LiveState(kept)
    outcomes = recorded(again, kept, now - 3000, 290)
    before = counts(again, now)
    again.apply_config(config("state: {latency_bounds: [250ms, 300ms, 1s]}\n" + changed))
    again.apply_config(kept)
    assert counts(again, now) == before  # a bound throughout: exact after the revert


async def test_removed_slo_survives_a_restart_in_the_state_file(tmp_path: Path) -> None:
    now = time.time()
    state = tmp_path / "state.db"
    first = Daemon(config(state=state))
    await first._open_state()
    assert first.store is not None
    feed(first.live, first.config, now - 3000, 290)
    first.live.advance(now - 30)
    before = counts(first.live, now)["avail"]
    await first._flush(snapshot=True)
    # a reload without the SLO, two snapshots (the second would have dropped it)
    without = config(BASE.replace(
        "  - {id: avail, targets: [web], objective: 0.99, window: 7d}\n", ""), state=state)
    first.parts.apply_config(without)
    await first._flush(snapshot=True)
    await first._flush(snapshot=True)
    await first.store.close()
    second = Daemon(without)  # restarted without it: still parked, from the file
    await second._open_state()
    assert second.store is not None
    assert "avail" in second.live.parked
    second.parts.apply_config(config(state=state))  # and a reload brings it back
    await second.store.close()
    second.live.advance(now - 30)
    assert counts(second.live, now)["avail"] == before != ((0, 0), (0, 0))


async def test_a_snapshot_taken_while_results_arrive_agrees_with_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The snapshot is serialised in pieces between turns of the loop; results that
    # arrive meanwhile are journaled after the cut, so they must not be in it too
    # (counted twice after a restart) nor lost from the live windows.
    monkeypatch.setattr(wiring, "SNAPSHOT_PACE", 0.0)  # a loop turn after every SLO
    now = time.time()
    state = tmp_path / "state.db"
    first = Daemon(config(state=state))
    await first._open_state()
    assert first.store is not None
    parts = first.parts
    web, api = first.config.target("web"), first.config.target("api")

    def result(i: int) -> ProbeResult:
        ok = i % 4 != 0
        return ProbeResult(ok, 0.1 + (i % 5) * 0.1, None if ok else FailureReason.STATUS)

    for i in range(200):
        parts.on_result(web, now - 3000 + 10 * i, result(i))
    arrived: list[bool] = []

    async def arrive() -> None:
        for i in range(200, 240):
            parts.on_result(web, now - 3000 + 10 * i, result(i))
            if i % 3 == 0:
                parts.on_result(api, now - 3000 + 10 * i, result(i + 1))
            arrived.append(first.live.held)
            await asyncio.sleep(0)

    task = asyncio.create_task(arrive())
    await first._flush(snapshot=True)
    await task
    assert any(arrived) and not first.live.held  # some arrived while held; all applied
    await first._flush()  # what came after the cut: the journal
    first.live.advance(now - 30)
    before = counts(first.live, now)
    await first.store.close()
    second = Daemon(config(state=state))
    await second._open_state()
    assert second.store is not None
    try:
        second.live.advance(now - 30)
        assert counts(second.live, now) == before
        # every result is counted once: 240 probes of web in the day window of avail
        assert before["avail"][0][1] == 240
    finally:
        await second.store.close()


WITHOUT_API = (BASE.replace("  - {id: api, kind: http, interval: 30s, timeout: 2s, "
                            "http: {url: \"http://127.0.0.1:9/api\"}}\n", "")
               .replace("targets: [web, api]", "targets: [web]"))


async def test_a_target_removed_and_added_back_keeps_its_events(tmp_path: Path) -> None:
    """Through a reload, and through a restart while it is away (parked in the file)."""
    assert "api" not in WITHOUT_API
    now = time.time()
    state = tmp_path / "state.db"
    first = Daemon(config(state=state))
    await first._open_state()
    assert first.store is not None
    outcomes = recorded(first.live, first.config, now - 3000, 290)
    bounds = {tid: e.bounds for tid, e in first.live.events.items()}
    first.parts.apply_config(config(WITHOUT_API, state=state))
    assert "api" not in first.live.events
    first.parts.apply_config(config(state=state))
    recompute(first.live, outcomes, now, bounds)
    first.parts.apply_config(config(WITHOUT_API, state=state))
    await first._flush(snapshot=True)
    await first._flush(snapshot=True)
    await first.store.close()
    second = Daemon(config(WITHOUT_API, state=state))
    await second._open_state()
    assert second.store is not None
    try:
        second.parts.apply_config(config(state=state))
        recompute(second.live, outcomes, now, bounds)
        assert second.live.slos["shop"].counts(now, 86400.0, "api").valid == len(outcomes["api"])
    finally:
        await second.store.close()


def test_latency_bounds_are_configured_and_checked() -> None:
    live = LiveState(config("state: {latency_bounds: []}\n" + BASE))
    assert live.events["web"].bounds == (0.3,) and live.events["api"].bounds == ()
    live.apply_config(config("state: {latency_bounds: [200ms, 1s]}\n" + BASE))
    assert live.events["web"].bounds == (0.2, 0.3, 1.0)
    with pytest.raises(ConfigError) as err:
        config("state: {latency_bounds: [1s, 200ms]}\n" + BASE)
    assert "state.latency_bounds" in str(err.value) and "increasing" in str(err.value)
