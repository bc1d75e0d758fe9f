"""SLA period report from a real state file: a real StateStore and SlaTracker close
a period with a scripted outage and a maintenance window; the report is rendered
by the function and by `slamon report render` (reading the file read-only)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from slamon.cli import main as cli_main
from slamon.config.loader import load_config
from slamon.sla.report import Period, outages, read_period, render_period
from slamon.sla.tracker import SlaTracker
from slamon.store.sqlite import StateStore
from slamon.util.log import configure_logging, get_logger

EVIL = "<script>alert(\"x\")</script>'&"
HOUR = 3600
P0 = 1_780_002_000 // HOUR * HOUR  # start of the period (fixed 1 h periods from the epoch)
N = P0 // HOUR
OUTAGE = (P0 + 600, P0 + 900)  # 5 min
MAINT = (P0 + 1800, P0 + 2400)  # 10 min, excluded


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "slamon.yaml"
    path.write_text(textwrap.dedent(f"""
        state: {{path: "{tmp_path / 'state.sqlite3'}"}}
        targets:
          - id: web
            kind: http
            interval: 10s
            timeout: 2s
            labels: {{team: shop}}
            http: {{url: "http://user:s3cret@127.0.0.1:9/"}}
        slos:
          - {{id: shop, targets: [web], objective: 0.99, window: 1d,
             description: {json.dumps(EVIL)}}}
        slas:
          - id: gold
            slo: shop
            description: {json.dumps(EVIL)}
            period: {{kind: fixed, length: 1h}}
            evidence_resolution: 60s
            grace: 1s
            policy: {{maintenance: exclude}}
        maintenance:
          - kind: once
            targets: [web]
            once: {{start: {MAINT[0]}, end: {MAINT[1]}}}
    """))
    return path


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    # the CLI points logging at pytest's captured stderr, which is closed afterwards
    configure_logging("info", "json")


@pytest.fixture
async def closed(tmp_path: Path) -> Path:
    cfg_path = write_config(tmp_path)
    config = load_config(cfg_path)
    store = StateStore(config.state.resolved_path())
    await store.open()
    tracker = SlaTracker(config, store, get_logger())
    await tracker.start({}, P0)
    web = config.target("web")
    for t in range(P0, P0 + HOUR, 10):
        ok = not (OUTAGE[0] <= t < OUTAGE[1]) and not (MAINT[0] <= t < MAINT[1])
        tracker.record(web, float(t), ok, 0.01)
    (result,) = await tracker.close_due(P0 + HOUR + 60)
    assert result.verdict == "breached"  # 30 bad of 300 valid outside maintenance
    await store.close()
    return cfg_path


def test_outage_runs() -> None:
    rows = {"a": [(0, 6, 6, 0), (60, 5, 6, 0), (120, 0, 6, 0), (180, 6, 6, 0), (240, 5, 6, 0)]}
    assert [(o.start, o.end, o.bad) for o in outages(rows, 60)] == [(60, 180, 7), (240, 300, 1)]


async def test_render_html_and_md(closed: Path) -> None:
    config = load_config(closed)
    period, leaves = read_period(config.state.resolved_path(), "gold", N)
    assert leaves is not None
    sla = config.slas[0]
    att = {"signer": "0x" + "11" * 20, "signature": "0x" + "22" * 65, "note": EVIL}
    page = render_period(period, sla, config, att, "html", leaves)
    assert 'id="verdict">breached<' in page
    assert "90.0000%" in page and "99.0000%" in page  # SLI and objective
    (row,) = [line for line in page.splitlines() if 'class="outage"' in line]
    assert "30 / 30" in row and ":10:00Z" in row  # 5 minutes of 10 s probes, all bad
    (mrow,) = [line for line in page.splitlines() if 'class="outage maint"' in line]
    assert "60 / 60 (during maintenance: excluded)" in mrow
    assert "10m 00s, excluded from the SLI (60 valid events excluded)" in page
    assert "0x" + period.root.hex() in page and "0x" + "22" * 65 in page
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "s3cret" not in page
    for needle in ("<link", "src=", "url(", "@import"):
        assert needle not in page
    md = render_period(period, sla, config, att, "md", leaves)
    assert md.startswith("# SLA report: gold") and "| Verdict | breached |" in md
    assert "&lt;script&gt;" in md and "<script" not in md


async def test_cli_writes_report(closed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                 ) -> None:
    out = tmp_path / "report.html"
    att = tmp_path / "att.json"
    att.write_text(json.dumps({"signature": "0xabc"}))
    state = tmp_path / "state.sqlite3"
    before = state.stat().st_mtime_ns
    code = cli_main(["report", "render", "-c", str(closed), "--sla", "gold", "--period", str(N),
                     "-o", str(out), "--attestation", str(att)])
    assert code == 0
    text = out.read_text()
    assert "breached" in text and "0xabc" in text
    assert state.stat().st_mtime_ns == before  # read-only
    assert cli_main(["report", "render", "-c", str(closed), "--sla", "gold",
                     "--period", str(N), "--format", "md"]) == 0
    assert "| Verdict | breached |" in capsys.readouterr().out
    assert cli_main(["report", "render", "-c", str(closed), "--sla", "gold",
                     "--period", str(N + 5)]) == 2
    assert "not closed" in capsys.readouterr().err
    assert cli_main(["report", "render", "-c", str(closed), "--sla", "nope",
                     "--period", str(N)]) == 2


def test_period_dataclass_matches_store() -> None:
    from dataclasses import fields

    from slamon.store.sqlite import ClosedPeriod

    assert [f.name for f in fields(Period)] == [f.name for f in fields(ClosedPeriod)]
