"""Offline export of closed SLA periods (CSV or JSON) for monthly reporting.

Why a separate read-only accessor instead of StateStore: the export runs while
the daemon may be writing. It opens the SQLite file with `mode=ro` (WAL lets a
reader see the last committed state without blocking the writer), never
migrates or creates anything, and runs in the caller's thread with no event
loop. It only reads the `periods` table, whose rows are final once written.

Row fields (stable; see docs/api.md "Export"): sla, period, start, end (ISO
8601 UTC), good, valid, no_data, sli (ratio, floored to ppm like the signed
report), sli_ppm, objective, objective_ppm, verdict, maintenance_excluded,
maintenance_seconds, evidence_root, policy_digest, closed_at, and per part
good, valid, no_data, sli, sli_ppm, maintenance_excluded. CSV flattens parts
into `part:<target>:<field>` columns (the union over the exported periods);
JSON nests them under `parts`, and adds `judged_by` (the SLA, SLO and maintenance
windows the period was judged by, null for periods closed before they were kept) and
`policy_document` (the canonical text `policy_digest` is the keccak256 of, or null).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from slamon.sla.evidence import hex0x
from slamon.store.sqlite import APPLICATION_ID, SCHEMA_VERSION, ClosedPeriod, period_rows
from slamon.util.units import ppm_to_ratio
from slamon.wallclock import utc_iso

EXPORT_FORMAT = "slamon-export/1"
PART_FIELDS = ("good", "valid", "no_data", "sli", "sli_ppm", "maintenance_excluded")
COLUMNS = (
    "sla", "period", "start", "end", "good", "valid", "no_data", "sli", "sli_ppm",
    "objective", "objective_ppm", "verdict", "maintenance_excluded", "maintenance_seconds",
    "evidence_root", "policy_digest", "closed_at",
)


class ExportError(Exception):
    """A user-facing problem (missing file, bad date, unknown SLA): exit 2."""


#: a closed period as the daemon stored it (one record type for writer and readers)
StoredPeriod = ClosedPeriod


class ReadOnlyState:
    """The state file opened read-only; safe next to a running daemon."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(
                f"state file {self.path} does not exist (state.path in the config; "
                "the daemon creates it on first start)"
            )
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            self._db = sqlite3.connect(uri, uri=True)
            self._db.execute("PRAGMA busy_timeout=5000")
            app_id = int(self._db.execute("PRAGMA application_id").fetchone()[0])
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise ExportError(f"cannot read state file {self.path}: {exc}") from None
        if app_id != APPLICATION_ID:
            self._db.close()
            raise ExportError(f"{self.path} is not a slamon state file")
        if version > SCHEMA_VERSION:
            self._db.close()
            raise ExportError(
                f"{self.path} has schema {version}, written by a newer slamon "
                f"(this one reads up to {SCHEMA_VERSION})"
            )
        if version < 1:
            self._db.close()
            raise ExportError(f"{self.path} is not initialised yet (no schema)")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ReadOnlyState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def known_slas(self) -> list[str]:
        """SLAs with any accounting in this file (closed periods or a start marker)."""
        rows = self._db.execute(
            "SELECT sla FROM sla_progress UNION SELECT DISTINCT sla FROM periods ORDER BY 1"
        )
        return [str(r[0]) for r in rows]

    def periods(self, sla: str, start: int, end: int) -> list[StoredPeriod]:
        """Closed periods of `sla` overlapping [start, end), oldest first."""
        rows = period_rows(self._db, "sla = ? AND start < ? AND end > ? ORDER BY period",
                           (sla, end, start))
        return [StoredPeriod(*row) for row in rows]


def parse_date(value: str, what: str) -> int:
    """ISO 8601 date or date-time as unix seconds; no offset means UTC.

    `2026-11-01` is midnight UTC, so `--from 2026-11-01 --to 2026-12-01` is
    November in UTC; give an offset for another zone's month.
    """
    text = value.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(
            f"invalid --{what} {value!r}: use ISO 8601, e.g. 2026-11-01 or "
            "2026-11-01T00:00:00+01:00"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


#: a closed period's policy document, worked out again where its store kept none
Recover = Callable[[StoredPeriod], "str | None"]


def period_row(p: StoredPeriod, recover: Recover | None = None) -> dict[str, Any]:
    """One export record (JSON form: parts nested). `recover`: the period's document
    when its store kept none (`slamon.sla.tracker.closed_document`)."""
    r = p.result
    parts = {
        target: {
            "good": part.get("good"),
            "valid": part.get("valid"),
            "no_data": part.get("no_data"),
            "sli": ppm_to_ratio(part.get("sli_ppm")),
            "sli_ppm": part.get("sli_ppm"),
            "maintenance_excluded": part.get("maintenance_excluded", 0),
        }
        for target, part in sorted(r.get("parts", {}).items())
    }
    return {
        "sla": p.sla,
        "period": p.period,
        "start": utc_iso(p.start),
        "end": utc_iso(p.end),
        "good": r["good"],
        "valid": r["valid"],
        "no_data": r["no_data"],
        "sli": ppm_to_ratio(r["sli_ppm"]),
        "sli_ppm": r["sli_ppm"],
        "objective": ppm_to_ratio(r["objective_ppm"]),
        "objective_ppm": r["objective_ppm"],
        "verdict": r["verdict"],
        "maintenance_excluded": r["maintenance_excluded"],
        "maintenance_seconds": r["maintenance_seconds"],
        "evidence_root": hex0x(p.root),
        "policy_digest": hex0x(p.policy_digest),
        "closed_at": utc_iso(int(p.closed_at)),
        "parts": parts,
        # JSON only (CSV keeps its flat columns): the rules the period was judged by, and
        # the document its policy_digest hashes
        "judged_by": p.judged_by(),
        "policy_document": p.policy_document() if recover is None else recover(p),
    }


def to_json(sla: str, start: int, end: int, rows: Sequence[dict[str, Any]]) -> str:
    doc = {
        "format": EXPORT_FORMAT,
        "sla": sla,
        "from": utc_iso(start),
        "to": utc_iso(end),
        "periods": list(rows),
    }
    return json.dumps(doc, indent=2) + "\n"


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Flat CSV: COLUMNS, then `part:<target>:<field>` for every part seen.

    Empty cells mean "no value" (no verdict, or a part absent in that period).
    """
    targets = sorted({t for row in rows for t in row["parts"]})
    header = list(COLUMNS) + [f"part:{t}:{f}" for t in targets for f in PART_FIELDS]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        cells: list[Any] = [row[c] for c in COLUMNS]
        for t in targets:
            part = row["parts"].get(t, {})
            cells += [part.get(f) for f in PART_FIELDS]
        writer.writerow(["" if c is None else c for c in cells])
    return buf.getvalue()


def export(
    state_path: str | Path,
    sla: str,
    start: int,
    end: int,
    fmt: str,
    configured: Sequence[str] = (),
    recover: Recover | None = None,
) -> str:
    """The export text; ExportError for anything the user must fix. `recover`: see
    `period_row`."""
    if end <= start:
        raise ExportError("--to must be after --from")
    with ReadOnlyState(state_path) as state:
        known = sorted(set(configured) | set(state.known_slas()))
        if sla not in known:
            listed = ", ".join(known) if known else "none"
            raise ExportError(f"unknown SLA {sla!r}; known SLAs: {listed}")
        rows = [period_row(p, recover) for p in state.periods(sla, start, end)]
    if fmt == "json":
        return to_json(sla, start, end, rows)
    if fmt == "csv":
        return to_csv(rows)
    raise ExportError(f"unknown format {fmt!r}: use csv or json")
