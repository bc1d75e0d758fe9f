"""`slamon export`: the CLI as a subprocess on a real state file, read offline.

The store stays open (WAL, as under a running daemon) while the export reads it
read-only, which is the situation operators will be in.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from slamon.sla.evidence import hex0x
from slamon.wallclock import utc_iso
from tests.test_api import P, make_state, run_cli, write_config


async def test_export_csv_and_json_while_store_is_open(tmp_path: Path) -> None:
    state = await make_state(tmp_path)
    try:
        cfg = str(state.config_path)
        # a calendar-free window: the whole day around the two closed periods
        day = utc_iso(P * 60)[:10]
        out = run_cli("export", "-c", cfg, "--sla", "gold", "--from", day,
                      "--to", utc_iso((P + 2) * 60 + 86400)[:10], "--format", "csv")
        assert out.returncode == 0, out.stderr
        rows = list(csv.DictReader(io.StringIO(out.stdout)))
        assert [int(r["period"]) for r in rows] == [P, P + 1]  # open P+2 is not exported
        breached, met = rows
        assert breached["verdict"] == "breached" and met["verdict"] == "met"
        assert (breached["good"], breached["valid"], breached["no_data"]) == ("5", "6", "0")
        assert breached["sli"] == "0.833333" and breached["sli_ppm"] == "833333"
        assert breached["objective"] == "0.9" and breached["objective_ppm"] == "900000"
        assert breached["start"] == utc_iso(P * 60) and breached["end"] == utc_iso(P * 60 + 60)
        assert breached["part:api:sli_ppm"] == "833333"
        assert breached["part:web:sli"] == "1.0"
        assert met["part:api:no_data"] == "1"
        stored = await state.store.get_period("gold", P)
        assert stored is not None and breached["evidence_root"] == hex0x(stored.root)
        assert breached["policy_digest"] == hex0x(stored.policy_digest)
        assert "judged_by" not in breached  # CSV keeps its flat columns

        # JSON to a file; [from, to) selects by overlap: only P+1 here
        target = tmp_path / "out.json"
        out = run_cli("export", "-c", cfg, "--sla", "gold",
                      "--from", utc_iso((P + 1) * 60 + 30), "--to", utc_iso((P + 2) * 60),
                      "--format", "json", "-o", str(target))
        assert out.returncode == 0, out.stderr
        doc = json.loads(target.read_text())
        assert doc["format"] == "slamon-export/1" and doc["sla"] == "gold"
        [only] = doc["periods"]
        assert only["period"] == P + 1 and only["verdict"] == "met"
        assert only["sli"] == 1.0 and only["parts"]["api"]["no_data"] == 1
        assert set(only["parts"]) == {"api", "web"}
        # the rules the period was judged by, as kept when it closed (the API's form)
        kept = await state.store.get_period("gold", P + 1)
        assert kept is not None and kept.policy is not None
        judged = only["judged_by"]
        assert judged == kept.judged_by()
        assert judged["sla"]["id"] == "gold" and judged["slo"]["objective"] == 0.9
        assert sorted(judged["slo"]["targets"]) == ["api", "web"]
    finally:
        await state.store.close()


async def test_export_errors(tmp_path: Path) -> None:
    state = await make_state(tmp_path)
    await state.store.close()
    cfg = str(state.config_path)
    base = ["export", "-c", cfg, "--from", "2026-11-01", "--to", "2026-12-01"]

    out = run_cli(*base, "--sla", "bronze")
    assert out.returncode == 2
    assert "unknown SLA 'bronze'" in out.stderr and "gold" in out.stderr
    assert "Traceback" not in out.stderr

    out = run_cli("export", "-c", cfg, "--sla", "gold", "--from", "yesterday", "--to", "2026-12")
    assert out.returncode == 2 and "--from" in out.stderr

    out = run_cli("export", "-c", cfg, "--sla", "gold", "--from", "2026-12-01",
                  "--to", "2026-11-01")
    assert out.returncode == 2 and "after" in out.stderr

    out = run_cli(*base, "--sla", "gold", "--format", "xml")
    assert out.returncode == 2

    # an empty range is not an error: a header and no rows
    out = run_cli(*base, "--sla", "gold")
    assert out.returncode == 0 and out.stdout.startswith("sla,period,start,end,")
    assert len(out.stdout.splitlines()) == 1

    other = tmp_path / "other"
    other.mkdir()
    missing = write_config(other)
    out = run_cli("export", "-c", str(missing), "--sla", "gold", "--from", "2026-11-01",
                  "--to", "2026-12-01")
    assert out.returncode == 2 and "does not exist" in out.stderr
    assert not (other / "state.sqlite3").exists()  # the export never creates state


async def test_export_of_a_state_file_from_before_the_kept_policies(tmp_path: Path) -> None:
    """A state file whose periods have no `policy` column (schema 7, before closed
    periods kept their policy) exports as before, `judged_by` null."""
    import sqlite3

    state = await make_state(tmp_path)
    await state.store.close()
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    try:
        db.execute("ALTER TABLE periods DROP COLUMN policy")
        db.execute("PRAGMA user_version = 7")
        db.commit()
    finally:
        db.close()
    out = run_cli("export", "-c", str(state.config_path), "--sla", "gold",
                  "--from", utc_iso(P * 60)[:10], "--to", utc_iso((P + 2) * 60 + 86400)[:10],
                  "--format", "json")
    assert out.returncode == 0, out.stderr
    periods = json.loads(out.stdout)["periods"]
    assert [p["period"] for p in periods] == [P, P + 1]
    assert [p["judged_by"] for p in periods] == [None, None]
    assert periods[0]["verdict"] == "breached"
