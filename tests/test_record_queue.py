"""The scheduler's outcomes (`Components.queue_result`): counted in batches, in the order
they came, within RECORD_EVERY, and before whatever reads the live state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from slamon.app import wiring
from slamon.app.daemon import Daemon
from slamon.metrics.exposition import render
from slamon.notify import live_streak
from slamon.probers.base import FailureReason, ProbeResult
from slamon.util.events import Event, EventKind
from slamon.web.status import add_routes as status_routes
from slamon.web.status.data import StatusData
from tests.promtext import parse_metrics, value
from tests.test_logs import drained
from tests.test_slo_edits import config

BASE = """
targets:
  - {id: web, kind: http, interval: 10s, timeout: 2s, http: {url: "http://127.0.0.1:9/"}}
  - {id: api, kind: http, interval: 10s, timeout: 2s, http: {url: "http://127.0.0.1:9/api"}}
slos:
  - {id: avail, targets: [web], objective: 0.99, window: 1d}
"""

WITHOUT_API = BASE.replace('  - {id: api, kind: http, interval: 10s, timeout: 2s, '
                           'http: {url: "http://127.0.0.1:9/api"}}\n', "")

DOWN = ProbeResult.failure(FailureReason.STATUS, 0.2)


def taken(queue: asyncio.Queue[Event]) -> list[tuple[EventKind, str | None, float]]:
    return [(event.kind, event.target, event.at) for event in drained(queue)]


async def test_an_outcome_is_kept_whole_with_the_batch_in_order(tmp_path: Path) -> None:
    daemon = Daemon(config(BASE, state=tmp_path / "state.sqlite3"))
    await daemon._open_state()
    parts, store = daemon.parts, daemon.store
    assert store is not None
    try:
        sub = parts.events.subscribe()
        web = parts.config.target("web")
        t0 = time.time() - 100
        parts.queue_result(web, t0, ProbeResult(True, 0.1))
        parts.queue_missed(web, t0 + 10)
        parts.queue_result(web, t0 + 20, DOWN)
        # nothing yet, read without settling: the status, the windows, the journal and
        # the transitions' events all wait for the batch
        status = parts.live.targets["web"]
        assert (status.successes, status.failures, status.missed) == (0, 0, 0)
        assert status.last is None
        avail = parts.live.slos["avail"]
        assert tuple(avail.counts(t0 + 30, 3600.0)) == (0, 0)
        assert store.batch.journal == []
        assert taken(sub.queue) == []
        parts.record_queued()
        assert (status.successes, status.failures, status.missed) == (1, 1, 1)
        assert status.last_scheduled == t0 + 20 and status.last is DOWN
        assert taken(sub.queue) == [(EventKind.TARGET_UP, "web", t0),
                                    (EventKind.TARGET_DOWN, "web", t0 + 20)]
        assert tuple(avail.counts(t0 + 30, 3600.0)) == (1, 2)
        assert parts.live.events["web"].no_data(t0 + 30, 3600.0) == 1
        assert [(t, ok) for _, t, ok, _ in store.batch.journal] == [
            (t0, 1), (t0 + 10, None), (t0 + 20, 0)]
        parts.record_queued()  # nothing left: nothing counted twice
        assert tuple(avail.counts(t0 + 30, 3600.0)) == (1, 2)
        assert (status.successes, status.failures, status.missed) == (1, 1, 1)
    finally:
        await store.close()


async def test_every_reader_of_the_status_sees_each_outcome_at_once() -> None:
    # /metrics, the status page and the notify streak count the batch before they read
    daemon = Daemon(config(BASE + "status_page: {enabled: true}\n"))
    parts = daemon.parts
    web = parts.config.target("web")
    t0 = time.time() - 100
    parts.queue_result(web, t0, ProbeResult(True, 0.1))
    samples = parse_metrics((await render(parts.registry, parts.collector)).decode())
    assert value(samples, "probe_success", target="web") == 1
    assert value(samples, "slamon_probes_total", target="web", result="success") == 1
    parts.queue_result(web, t0 + 10, DOWN)
    parts.queue_result(web, t0 + 20, DOWN)
    assert live_streak(lambda: parts.live)("web") == (False, 2)
    parts.queue_result(web, t0 + 30, ProbeResult(True, 0.1))
    page = StatusData(parts, parts.config.status_page)
    entry = (await page.document(t0 + 31))["slos"][0]
    assert entry["state"] == "operational"
    assert [(p["target"], p["state"]) for p in entry["parts"]] == [("web", "up")]
    parts.queue_result(web, t0 + 40, DOWN)
    assert page.slo_state("avail", parts.live.slos["avail"])[0] == "major_outage"


async def test_a_badge_counts_the_batch_before_it_reads_the_windows() -> None:
    parts = Daemon(config(BASE + "status_page: {enabled: true}\n")).parts
    app = web.Application()
    status_routes(app, parts, parts.config.status_page)
    web_target = parts.config.target("web")
    parts.queue_result(web_target, time.time() - 5, DOWN)
    async with (TestClient(TestServer(app, host="127.0.0.1")) as client,
                client.get("/status/badge/avail/sli.svg?window=24h") as resp):
        assert resp.status == 200
        svg = await resp.text()
    assert "0.00%" in svg and "no data" not in svg


async def test_a_transition_is_announced_with_the_batch_as_it_was_when_it_happened() -> None:
    # the log line's level and the event's time are the transition's own, though the
    # target has moved on by the time the batch is counted
    parts = Daemon(config(BASE)).parts
    sub = parts.events.subscribe()
    web = parts.config.target("web")
    t0 = time.time() - 100
    with capture_logs() as logs:
        for i, result in enumerate((ProbeResult(True, 0.1), DOWN, ProbeResult(True, 0.1),
                                    ProbeResult(True, 0.1))):
            parts.queue_result(web, t0 + 10 * i, result)
        assert logs == []
        parts.record_queued()
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("target_up", "debug"), ("target_down", "warning"), ("target_up", "info")]
    assert taken(sub.queue) == [(EventKind.TARGET_UP, "web", t0),
                                (EventKind.TARGET_DOWN, "web", t0 + 10),
                                (EventKind.TARGET_UP, "web", t0 + 20)]


async def test_an_outcome_is_counted_within_record_every_with_nothing_else_asking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wiring, "RECORD_EVERY", 0.01)
    parts = Daemon(config(BASE)).parts
    counted = asyncio.Event()
    record_queued = parts.record_queued

    def spy() -> None:
        record_queued()
        counted.set()

    parts.record_queued = spy  # type: ignore[method-assign]
    web = parts.config.target("web")
    t = time.time() - 10
    parts.queue_result(web, t, ProbeResult(True, 0.1))
    await asyncio.wait_for(counted.wait(), 5)
    assert tuple(parts.live.slos["avail"].counts(t + 1, 3600.0)) == (1, 1)


async def test_a_full_batch_is_counted_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # so that one batch holds the event loop only so long, however many targets
    monkeypatch.setattr(wiring, "RECORD_BATCH", 3)
    parts = Daemon(config(BASE)).parts
    web = parts.config.target("web")
    status = parts.live.targets["web"]
    avail = parts.live.slos["avail"]
    t0 = time.time() - 100
    parts.queue_result(web, t0, ProbeResult(True, 0.1))
    parts.queue_result(web, t0 + 10, ProbeResult(True, 0.1))
    assert tuple(avail.counts(t0 + 40, 3600.0)) == (0, 0)
    assert status.successes == 0
    parts.queue_result(web, t0 + 20, DOWN)
    assert tuple(avail.counts(t0 + 40, 3600.0)) == (2, 3)
    assert (status.successes, status.failures) == (2, 1)
    parts.queue_result(web, t0 + 30, ProbeResult(True, 0.1))
    assert tuple(avail.counts(t0 + 40, 3600.0)) == (2, 3)
    assert status.last is DOWN


async def test_a_new_config_takes_over_only_once_the_queued_outcomes_are_counted() -> None:
    # counted under the definitions they were probed with: a target removed keeps the
    # events of its last probe, and has them back when it is added back
    parts = Daemon(config(BASE)).parts
    api = parts.config.target("api")
    t = time.time() - 10
    parts.queue_result(api, t, DOWN)
    parts.apply_config(config(WITHOUT_API))
    parts.record_queued()
    parts.apply_config(config(BASE))
    assert tuple(parts.live.events["api"].counts(t + 1, 3600.0)) == (0, 1)


async def test_the_last_write_holds_the_outcomes_still_queued(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    first = Daemon(config(BASE, state=state))
    await first._open_state()
    web = first.config.target("web")
    now = time.time()
    for i in range(12):
        first.parts.queue_result(web, now - 200 + 10 * i,
                                 ProbeResult(True, 0.1) if i % 3 else DOWN)
    await first.parts.close()
    second = Daemon(config(BASE, state=state))
    await second._open_state()
    try:
        assert tuple(second.live.slos["avail"].counts(now, 3600.0)) == (8, 12)
    finally:
        assert second.store is not None
        await second.store.close()
