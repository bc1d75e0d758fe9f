"""Status page against real components, rendered by a real headless Chromium.

A real LiveState (with its SloState windows) is fed 90 days of scripted probe
results: `web` has a 4-hour outage three days ago and is down now; `api` is
always up and had a maintenance window ten days ago. A real StateStore and
SlaTracker hold a daily SLA on `shop` with one closed period. The page is served
by aiohttp on 127.0.0.1 and loaded with `chromium --headless --dump-dom` (the
DOM check) and `--screenshot`. Chromium is required: if it is missing the test
fails (CI installs Debian's `chromium`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from slamon.config.root import Config
from slamon.config.status_page import StatusPageConfig
from slamon.probers.base import FailureReason, ProbeResult
from slamon.sla.tracker import SlaTracker
from slamon.sli.live import LiveState, TargetStatus
from slamon.store.sqlite import StateStore
from slamon.util.events import Event, EventBus, EventKind
from slamon.util.log import get_logger
from slamon.wallclock import iso
from slamon.web.status import IncidentLog, add_routes
from slamon.web.status.data import DAY, daily_counts
from tests.misbehaving import serve

EVIL = "<script>alert('x')</script>\"&"
INTERVAL = 600
NOW = (1_780_000_000 // DAY) * DAY + 15 * 3600 + 7  # 15:00:07 UTC
OUTAGE_DAY = (NOW // DAY) * DAY - 3 * DAY
OUTAGE = (OUTAGE_DAY + 10 * 3600, OUTAGE_DAY + 14 * 3600)  # 4 h: day SLI 20/24
MAINT = ((NOW // DAY) * DAY - 10 * DAY + 3600, (NOW // DAY) * DAY - 10 * DAY + 3 * 3600)
TX = "0x" + "ab" * 32


def make_config(tmp_path: Path) -> Config:
    return Config.model_validate({
        "state": {"path": str(tmp_path / "state.sqlite3")},
        "targets": [
            {"id": "web", "kind": "http", "interval": f"{INTERVAL}s", "timeout": "5s",
             "labels": {"team": EVIL}, "http": {"url": "http://user:s3cret@127.0.0.1:9/"}},
            {"id": "api", "kind": "http", "interval": f"{INTERVAL}s", "timeout": "5s",
             "http": {"url": "http://127.0.0.1:9/"}},
        ],
        "slos": [
            {"id": "shop", "targets": ["web"], "objective": 0.99, "window": "30d",
             "description": EVIL},
            {"id": "api", "targets": ["api"], "objective": 0.999, "window": "30d"},
            {"id": "internal", "targets": ["api"], "objective": 0.9, "window": "1d"},
        ],
        "slas": [{"id": "gold", "slo": "shop", "period": {"kind": "daily"},
                  "description": EVIL}],
        "maintenance": [{"kind": "once", "targets": ["api"],
                         "once": {"start": MAINT[0], "end": MAINT[1]}}],
    })


def web_ok(t: float) -> bool:
    return not (OUTAGE[0] <= t < OUTAGE[1]) and t < NOW - 3 * INTERVAL


@dataclass
class Source:
    live: LiveState
    tracker: SlaTracker | None
    config: Config


@dataclass
class Page:
    base: str
    source: Source
    incidents: IncidentLog


async def scripted(tmp_path: Path) -> tuple[Source, IncidentLog, StateStore]:
    config = make_config(tmp_path)
    bus = EventBus()
    incidents = IncidentLog()
    transitions: list[Event] = []

    def transition(status: TargetStatus, result: ProbeResult) -> None:
        assert status.last_scheduled is not None
        kind = EventKind.TARGET_UP if result.ok else EventKind.TARGET_DOWN
        ev = Event(kind, status.last_scheduled, target=status.target.id,
                   labels=status.target.labels,
                   details={"reason": result.reason.value} if result.reason else {})
        bus.publish(ev)
        transitions.append(ev)

    live = LiveState(config, on_transition=transition)
    store = StateStore(tmp_path / "state.sqlite3")
    await store.open()
    tracker = SlaTracker(config, store, get_logger())
    await tracker.start({}, NOW - 2 * DAY)
    web, api = config.target("web"), config.target("api")
    t = float((NOW - 90 * DAY) // INTERVAL * INTERVAL)
    while t <= NOW:
        ok = web_ok(t)
        res = ProbeResult(ok, 0.05, None if ok else FailureReason.STATUS,
                          status_code=200 if ok else 503)
        live.record(web, t, res)
        live.record(api, t, ProbeResult(True, 0.02))
        tracker.record(web, t, ok, 0.05)
        t += INTERVAL
    await store.flush()
    await tracker.close_due(NOW)
    for ev in transitions:
        await incidents.record(ev)
    await incidents.record(Event(EventKind.REPORT_PUBLISHED, NOW - 3600, sla="gold",
                           details={"tx_hash": TX, "period": int(NOW // DAY) - 1}))
    return Source(live, tracker, config), incidents, store


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    source, incidents, store = await scripted(tmp_path)
    cfg = StatusPageConfig(enabled=True, title=f"ACME {EVIL}", public_slos=["shop", "api"],
                           explorer_tx_url="https://explorer.example/tx/{tx_hash}")
    app = web.Application()
    add_routes(app, source, cfg, incidents, clock=lambda: float(NOW))
    runner, port = await serve(app)
    try:
        yield Page(f"http://127.0.0.1:{port}", source, incidents)
    finally:
        await runner.cleanup()
        await store.close()


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium not found: install Debian's `chromium` package "
                "(apt-get install -y --no-install-recommends chromium fonts-dejavu-core)")


async def run_chromium(*args: str, timeout: float = 90.0) -> bytes:
    with tempfile.TemporaryDirectory(prefix="slamon-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
            f"--user-data-dir={profile}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": profile},
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.fail("chromium did not finish in time")
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        return out


# -- pure parts -----------------------------------------------------------------

async def test_daily_counts_are_exact(tmp_path: Path) -> None:
    source, _, store = await scripted(tmp_path)
    try:
        days = daily_counts(source.live.slos["shop"], float(NOW), 90)
        assert len(days) == 90 and days[-1][0] == (NOW // DAY) * DAY
        per_day = DAY // INTERVAL
        by_start = dict(days)
        assert by_start[OUTAGE_DAY] == (per_day - 4 * 3600 // INTERVAL, per_day)
        assert by_start[OUTAGE_DAY - DAY] == (per_day, per_day)
        # the first day of the bar is complete too (the 1 h tier holds 92 days)
        assert days[0][1].valid == per_day
    finally:
        await store.close()


# -- HTTP ---------------------------------------------------------------------------

async def test_json_has_the_page_data(page: Page) -> None:
    async with aiohttp.ClientSession() as s, s.get(page.base + "/api/v1/status") as r:
        assert r.status == 200
        doc: dict[str, Any] = await r.json()
    slos = {x["id"]: x for x in doc["slos"]}
    assert set(slos) == {"shop", "api"}  # "internal" is not public
    assert doc["state"] == "major_outage"
    shop, api = slos["shop"], slos["api"]
    assert shop["state"] == "major_outage" and api["state"] == "operational"
    day = {d["date"]: d for d in shop["days"]}
    bad = [d["date"] for d in shop["days"] if d["color"] != "ok"]
    assert day[bad[0]]["start"] == OUTAGE_DAY and day[bad[0]]["color"] == "bad"
    assert [d["maintenance_seconds"] for d in api["days"] if d["maintenance_seconds"]] == [7200]
    assert shop["sli"]["24h"] is not None and shop["sli"]["24h"] < 1
    assert api["sli"]["30d"] == 1.0
    inc = shop["incidents"]
    assert inc[0]["ongoing"] and inc[0]["target"] == "web"
    assert inc[1]["start"] == OUTAGE[0] and inc[1]["duration"] == OUTAGE[1] - OUTAGE[0]
    (sla,) = shop["slas"]
    assert sla["last_closed"]["verdict"] == "met"
    assert sla["last_report"]["url"] == f"https://explorer.example/tx/{TX}"
    assert 0 < sla["progress"] < 1 and sla["error_budget_remaining"] < 1
    assert "s3cret" not in json.dumps(doc)


async def test_html_escapes_config_strings(page: Page) -> None:
    async with aiohttp.ClientSession() as s, s.get(page.base + "/status") as r:
        assert r.status == 200
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        text = await r.text()
    assert "<script" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;" in text
    assert "s3cret" not in text
    # self-contained: no external stylesheet, script, image or font
    for needle in ("<link", "src=", "url(", "@import"):
        assert needle not in text


async def test_badges(page: Page) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(page.base + "/status/badge/api/uptime.svg") as r:
            assert r.status == 200 and r.content_type == "image/svg+xml"
            svg = await r.text()
            assert "100.00%" in svg and "#1f9d55" in svg
        async with s.get(page.base + "/status/badge/shop/sli.svg?window=24h") as r:
            assert r.status == 200 and "SLI 24h" in await r.text()
        async with s.get(page.base + "/status/badge/shop/state.svg") as r:
            assert "major outage" in await r.text()
        async with s.get(page.base + "/status/badge/internal/sli.svg") as r:
            assert r.status == 404  # not public
        async with s.get(page.base + "/status/badge/shop/sli.svg?window=1y") as r:
            assert r.status == 400


async def test_basic_auth(tmp_path: Path) -> None:
    source, incidents, store = await scripted(tmp_path)
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    cfg = StatusPageConfig.model_validate(
        {"enabled": True, "basic_auth": {"username": "acme", "password_file": str(secret)}})
    app = web.Application()
    add_routes(app, source, cfg, incidents, clock=lambda: float(NOW))
    runner, port = await serve(app)
    base = f"http://127.0.0.1:{port}"
    good = "Basic " + base64.b64encode(b"acme:hunter2").decode()
    bad = "Basic " + base64.b64encode(b"acme:nope").decode()
    try:
        async with aiohttp.ClientSession() as s:
            for path in ("/status", "/api/v1/status", "/status/badge/shop/uptime.svg"):
                async with s.get(base + path) as r:
                    assert r.status == 401 and "Basic" in r.headers["WWW-Authenticate"]
                async with s.get(base + path, headers={"Authorization": bad}) as r:
                    assert r.status == 401
                async with s.get(base + path, headers={"Authorization": good}) as r:
                    assert r.status == 200
    finally:
        await runner.cleanup()
        await store.close()


# -- headless Chromium -------------------------------------------------------------

async def test_chromium_renders_the_scripted_outage(page: Page, tmp_path: Path) -> None:
    url = page.base + "/status"
    dom = (await run_chromium("--dump-dom", url)).decode()
    # the DOM as the browser built it: states, the outage day, maintenance, incidents
    assert 'id="overall" data-state="major_outage"' in dom
    assert 'data-slo="shop" data-state="major_outage"' in dom
    assert 'data-slo="api" data-state="operational"' in dom
    assert 'data-slo="internal"' not in dom
    outage_date = iso(OUTAGE_DAY)[:10]
    assert f'data-date="{outage_date}" data-color="bad"' in dom
    assert dom.count('class="maint"') == 1
    assert 'data-target="web" data-state="down"' in dom
    assert 'data-ongoing="true"' in dom and 'data-ongoing="false"' in dom
    assert f'href="https://explorer.example/tx/{TX}"' in dom
    # the hostile strings stayed text: the browser created no script element
    assert "<script" not in dom
    assert "&lt;script&gt;" in dom
    shot = tmp_path / "status.png"
    await run_chromium(f"--screenshot={shot}", "--window-size=1280,900", url)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    if os.environ.get("SLAMON_UPDATE_SCREENSHOT"):
        Path(__file__).resolve().parent.parent.joinpath("docs", "status-page.png").write_bytes(
            data)


async def test_the_incident_log_keeps_every_open_incident_and_drops_the_oldest_resolved(
    tmp_path: Path,
) -> None:
    """Past its capacity the log drops the oldest resolved incidents, never an open one,
    also after a restart (the count of resolved ones is read back with them)."""
    store = StateStore(tmp_path / "state.sqlite3")
    await store.open()
    try:
        log = IncidentLog(capacity=3)
        await log.load(store)

        def ev(kind: EventKind, target: str, at: float) -> Event:
            return Event(kind, at, target=target, details={"reason": "refused"})

        for i in range(5):  # more open incidents than the capacity: all stay
            await log.record(ev(EventKind.TARGET_DOWN, f"t{i}", 100.0 + i))
        assert [i.target for i in log.incidents] == ["t0", "t1", "t2", "t3", "t4"]
        await log.record(ev(EventKind.TARGET_UP, "t3", 110.0))
        await log.record(ev(EventKind.TARGET_UP, "t1", 111.0))
        # a new one: the oldest resolved goes (t1), then t3: the open ones and the new stay
        await log.record(ev(EventKind.TARGET_DOWN, "t5", 112.0))
        assert [i.target for i in log.incidents] == ["t0", "t2", "t4", "t5"]
        await log.record(ev(EventKind.TARGET_UP, "t0", 113.0))
        again = IncidentLog(capacity=3)
        await again.load(store)
        # read back: the 3 most recent (t3 resolved among them) and every open one
        assert [i.target for i in again.incidents] == ["t2", "t3", "t4", "t5"]
        for log_ in (log, again):
            await log_.record(ev(EventKind.TARGET_DOWN, "t6", 114.0))
        assert [i.target for i in log.incidents] == ["t2", "t4", "t5", "t6"]
        assert [i.target for i in again.incidents] == ["t2", "t4", "t5", "t6"]
        await again.record(ev(EventKind.TARGET_UP, "t4", 115.0))
        await again.record(ev(EventKind.TARGET_DOWN, "t7", 116.0))
        assert [i.target for i in again.incidents] == ["t2", "t5", "t6", "t7"]
    finally:
        await store.close()


def _transition(kind: EventKind, target: str, at: float) -> Event:
    return Event(kind, at, target=target, details={"reason": "refused"})


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def _shown(log: IncidentLog) -> list[tuple[int, str, list[str]]]:
    return [(i.id, i.target, [u.status for u in i.updates]) for i in log.incidents]


async def test_transitions_that_arrive_together_are_written_in_one_transaction(
    tmp_path: Path,
) -> None:
    """What the bus brings within the batch wait is one store round trip, in order: a
    target down and up again inside it is one resolved incident, and a restart reads back
    exactly what the log holds."""
    store = StateStore(tmp_path / "state.sqlite3")
    await store.open()
    trips = 0
    run_sql = store.run_sql

    async def counted(fn: Any) -> Any:
        nonlocal trips
        trips += 1
        return await run_sql(fn)

    store.run_sql = counted  # type: ignore[method-assign]
    bus = EventBus()
    log = IncidentLog()
    try:
        await log.load(store)
        trips = 0
        log.start(bus)
        bus.publish(_transition(EventKind.TARGET_DOWN, "t0", 100.0))
        await _turns(3)  # the log takes it and waits for more
        for kind, target in [(EventKind.TARGET_DOWN, "t1"), (EventKind.TARGET_UP, "t0"),
                             (EventKind.TARGET_DOWN, "t0"),
                             (EventKind.TARGET_DOWN, "t1")]:  # t1 is open already
            bus.publish(_transition(kind, target, 100.0))
        async with asyncio.timeout(10):
            while len(log.incidents) < 3:
                await asyncio.sleep(0.02)
        assert trips == 1
        assert [(t, s) for _, t, s in _shown(log)] == [
            ("t0", ["investigating", "resolved"]), ("t1", ["investigating"]),
            ("t0", ["investigating"])]
        again = IncidentLog()
        await again.load(store)
        assert _shown(again) == _shown(log)
        # a stop writes the transition taken and waiting for more, and the one queued
        trips = 0
        bus.publish(_transition(EventKind.TARGET_UP, "t1", 101.0))
        await _turns(3)
        bus.publish(_transition(EventKind.TARGET_DOWN, "t2", 101.0))
        await log.stop()
        assert trips == 1
        last = IncidentLog()
        await last.load(store)
        assert [(t, s) for _, t, s in _shown(last)] == [
            ("t0", ["investigating", "resolved"]), ("t1", ["investigating", "resolved"]),
            ("t0", ["investigating"]), ("t2", ["investigating"])]
    finally:
        await log.stop()
        await store.close()


async def test_a_batch_whose_write_fails_changes_nothing(tmp_path: Path) -> None:
    """A failed transaction leaves no incident half written and the open ones as they
    were: a target that stays down is resolved by its next recovery, and one whose
    failure was not written opens an incident when it fails again."""
    store = StateStore(tmp_path / "state.sqlite3")
    await store.open()
    log = IncidentLog()
    try:
        await log.load(store)
        await log.record(_transition(EventKind.TARGET_DOWN, "t0", 100.0))
        before = _shown(log)
        await store.run_sql(lambda db: db.execute("ALTER TABLE incident_updates RENAME TO gone"))
        with pytest.raises(Exception, match="incident_updates"):
            await log.record_many([_transition(EventKind.TARGET_UP, "t0", 101.0),
                                   _transition(EventKind.TARGET_DOWN, "t9", 101.0)])
        assert _shown(log) == before
        await store.run_sql(lambda db: db.execute("ALTER TABLE gone RENAME TO incident_updates"))
        await log.record_many([_transition(EventKind.TARGET_UP, "t0", 102.0),
                               _transition(EventKind.TARGET_DOWN, "t9", 102.0)])
        assert [(t, s) for _, t, s in _shown(log)] == [
            ("t0", ["investigating", "resolved"]), ("t9", ["investigating"])]
        again = IncidentLog()
        await again.load(store)
        assert _shown(again) == _shown(log)
    finally:
        await store.close()


async def test_a_stop_waits_for_the_write_under_way(tmp_path: Path) -> None:
    """Cancelled in the middle of its write, the log would lose what the store's thread
    commits anyway: after a stop the log holds exactly what a restart reads back."""
    store = StateStore(tmp_path / "state.sqlite3")
    await store.open()
    writing = asyncio.Event()
    run_sql = store.run_sql

    async def flagged(fn: Any) -> Any:
        writing.set()
        return await run_sql(fn)

    bus = EventBus()
    log = IncidentLog()
    try:
        await log.load(store)
        store.run_sql = flagged  # type: ignore[method-assign]
        log.start(bus)
        bus.publish(_transition(EventKind.TARGET_DOWN, "t3", 100.0))
        bus.publish(_transition(EventKind.TARGET_DOWN, "t4", 100.0))
        async with asyncio.timeout(10):
            await writing.wait()
        await log.stop()
        assert [(t, s) for _, t, s in _shown(log)] == [
            ("t3", ["investigating"]), ("t4", ["investigating"])]
        again = IncidentLog()
        await again.load(store)
        assert _shown(again) == _shown(log)
    finally:
        await log.stop()
        await store.close()
