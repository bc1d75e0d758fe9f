"""An SLA's period schedule (kind, length, anchor, zone, week start, evidence
resolution) numbers its periods: stored periods, the progress row and the on-chain
registration count in it. A config that changes it under the same SLA id is refused,
by a reload (the old config keeps running, nothing is lost) and at start-up (a clear
error and a non-zero exit, before anything is written)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from slamon.app.daemon import Daemon, StartupError
from slamon.config.loader import load_config
from slamon.probers.base import ProbeResult
from slamon.sla.periods import period_bounds, period_index

CONFIG = """
server: {{listen: "127.0.0.1:0"}}
logging: {{level: warning, format: json}}
state: {{path: "{state}"}}
targets:
  - {{id: web, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/"}}}}
slos:
  - {{id: shop, targets: [web], objective: 0.9, window: 1d}}
slas:
  - {{id: gold, slo: shop, period: {period}, evidence_resolution: {res}}}
"""

DAILY = "{kind: daily}"

#: schedule edits, each refused: (period, evidence resolution)
REFUSED = {
    "kind": ("{kind: hourly}", "5m"),
    "zone": ("{kind: daily, timezone: Europe/Berlin}", "5m"),
    "fixed length": ("{kind: fixed, length: 1h}", "5m"),
    "evidence resolution": (DAILY, "1m"),
}


def write(path: Path, period: str = DAILY, res: str = "5m") -> None:
    state = path.parent / "state.sqlite3"
    path.write_text(textwrap.dedent(CONFIG.format(state=state, period=period, res=res)))


@pytest.mark.parametrize("edit", list(REFUSED))
async def test_a_schedule_edit_is_refused_by_a_reload_and_at_start(
    tmp_path: Path, edit: str
) -> None:
    path = tmp_path / "slamon.yaml"
    write(path)
    daemon = Daemon(load_config(path), config_path=path, loader=load_config)
    await daemon._open_state()
    tracker, store = daemon.parts.tracker, daemon.store
    assert tracker is not None and store is not None
    rt = tracker.slas["gold"]
    n = period_index(rt.sla.period, time.time())
    start = period_bounds(rt.sla.period, n)[0]  # results early in today's period
    web = daemon.config.target("web")
    for i in range(6):
        daemon._on_result(web, start + 10 * i, ProbeResult(i != 2, 0.05))
    await store.flush()
    before = await tracker.compute(rt, n)
    assert (before.good, before.valid) == (5, 6)

    period, res = REFUSED[edit]
    write(path, period, res)
    with capture_logs() as logs:
        assert not await daemon.reload()
    failed = [e for e in logs if e["event"] == "reload_failed"]
    assert len(failed) == 1 and len(failed[0]["errors"]) == 1
    assert failed[0]["errors"][0].startswith("slas[0] (gold): the period and "
                                             "evidence_resolution cannot change")
    assert daemon.reloads.failed == 1
    # the running config and the open period are as they were, and keep counting
    assert tracker.slas["gold"] is rt and rt.sla.period.kind == "daily"
    daemon._on_result(web, start + 60, ProbeResult(True, 0.05))
    await store.flush()
    after = await tracker.compute(rt, n)
    assert (after.good, after.valid) == (6, 7)
    assert period_bounds(rt.sla.period, n) == (after.start, after.end)
    await daemon._flush(snapshot=True)
    await store.close()

    # a restart on the edited file stops before anything is written
    again = Daemon(load_config(path), config_path=path, loader=load_config)
    with pytest.raises(StartupError, match=r"slas\[0\] \(gold\): the period") as raised:
        await again._open_state()
    assert '"evidence_resolution":300' in str(raised.value)
    # and on the file it ran with, everything is there
    write(path)
    third = Daemon(load_config(path), config_path=path, loader=load_config)
    await third._open_state()
    assert third.parts.tracker is not None and third.store is not None
    try:
        restored = await third.parts.tracker.compute(third.parts.tracker.slas["gold"], n)
        assert (restored.good, restored.valid) == (6, 7)
    finally:
        await third.store.close()


async def test_an_unchanged_schedule_is_written_once_and_a_new_sla_gets_its_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "slamon.yaml"
    write(path)
    daemon = Daemon(load_config(path), config_path=path, loader=load_config)
    await daemon._open_state()
    assert daemon.store is not None and daemon.parts.tracker is not None
    loaded = await daemon.store.load()
    assert loaded.sla_schedules == {
        "gold": '{"evidence_resolution":300,"period":{"kind":"daily","timezone":"UTC"}}'}
    # an SLA added by a reload has its schedule stored with its first close check
    text = path.read_text() + "  - {id: silver, slo: shop, period: {kind: hourly}}\n"
    path.write_text(text)
    assert await daemon.reload()
    await daemon.parts.tracker.close_due(time.time())
    loaded = await daemon.store.load()
    assert loaded.sla_schedules["silver"] == (
        '{"evidence_resolution":60,"period":{"kind":"hourly","timezone":"UTC"}}')
    assert loaded.sla_progress["silver"][1] == period_index(
        daemon.parts.tracker.slas["silver"].sla.period, time.time())
    await daemon.store.close()


def test_slamon_run_on_an_edited_schedule_exits_with_the_error(tmp_path: Path) -> None:
    path = tmp_path / "slamon.yaml"
    write(path)
    first = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import asyncio
            from slamon.app.daemon import Daemon
            from slamon.config.loader import load_config
            async def main():
                d = Daemon(load_config({str(path)!r}))
                await d._open_state()
                await d.store.close()
            asyncio.run(main())
        """)], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    write(path, "{kind: weekly}", "15m")
    res = subprocess.run([sys.executable, "-m", "slamon", "run", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "slas[0] (gold): the period and evidence_resolution cannot change" in res.stderr
    assert "Traceback" not in res.stderr
