"""One closed SLA period as a self-contained document for a customer (HTML or Markdown).

`slamon report render --sla ID --period N -c CONFIG [-o FILE] [--format html|md]
[--attestation FILE]` reads the state file read-only (safe next to a running
daemon) and writes: SLI, objective, verdict, the outages (runs of evidence
buckets with bad events, per target), maintenance (excluded or counted, as
the SLA's policy says), the evidence root and policy digest, and the signed
attestation if one is given. The HTML has inline CSS only: no external assets.
Every string from the config goes through `html.escape` (HTML) or is
backslash-escaped (Markdown).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slamon.config.root import Config
from slamon.config.sla import Sla
from slamon.sla.maintenance import Interval, intervals_by_target, merge
from slamon.util.args import add_config_argument
from slamon.util.units import ppm_percent
from slamon.wallclock import utc_iso

Leaves = Mapping[str, Sequence[tuple[int, int, int, int]]]


class RenderError(Exception):
    """A user-facing problem: exit 2."""


@dataclass(frozen=True, slots=True)
class Period:
    """A closed period as stored (same fields as store.ClosedPeriod)."""

    sla: str
    period: int
    start: int
    end: int
    closed_at: float
    result: Mapping[str, Any]
    root: bytes
    policy_digest: bytes
    #: the policy the period was judged by (JSON); None in files from before it was kept
    policy: str | None = None


@dataclass(frozen=True, slots=True)
class Outage:
    target: str
    start: int
    end: int
    bad: int
    valid: int


def outages(leaves: Leaves, resolution: int) -> list[Outage]:
    """Runs of consecutive buckets with at least one bad event, per target, by start."""
    out: list[Outage] = []
    for target, rows in leaves.items():
        cur: Outage | None = None
        for bucket, good, valid, _no_data in sorted(rows):
            if valid > good:
                if cur is not None and cur.end == bucket:
                    cur = Outage(target, cur.start, bucket + resolution,
                                 cur.bad + valid - good, cur.valid + valid)
                else:
                    if cur is not None:
                        out.append(cur)
                    cur = Outage(target, bucket, bucket + resolution, valid - good, valid)
            elif cur is not None and valid > 0:
                out.append(cur)
                cur = None
        if cur is not None:
            out.append(cur)
    return sorted(out, key=lambda o: (o.start, o.target))


def _dur(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"


def _md(text: object) -> str:
    """Markdown-safe text: HTML-significant characters as entities (raw HTML in
    Markdown is rendered by most viewers), Markdown syntax backslash-escaped."""
    escaped = html.escape(str(text), quote=False)
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", escaped).replace("\n", " ")


def _facts(period: Period, sla: Sla, config: Config) -> list[tuple[str, str]]:
    r = period.result
    slo = next((s for s in config.slos if s.id == sla.slo), None)
    return [
        ("SLA", sla.id),
        ("SLO", sla.slo + (f" ({slo.description})" if slo and slo.description else "")),
        ("Period", f"{period.period}: {utc_iso(period.start)} to {utc_iso(period.end)}"),
        ("SLI", ppm_percent(r.get("sli_ppm"))),
        ("Objective", ppm_percent(r.get("objective_ppm"))),
        ("Verdict", str(r.get("verdict", "unknown"))),
        ("Good / valid events", f"{r.get('good', 0)} / {r.get('valid', 0)}"
         + (" (time buckets: composite SLA)" if r.get("composite") else "")),
        ("No data (not counted)", str(r.get("no_data", 0))),
        ("Maintenance", f"{_dur(r.get('maintenance_seconds', 0))}, "
         + ("excluded from the SLI" if sla.exclude_maintenance else "counted like other time")
         + f" ({r.get('maintenance_excluded', 0)} valid events excluded)"),
        ("No-data policy", sla.policy.no_data),
        ("Evidence root", "0x" + period.root.hex()),
        ("Policy digest", "0x" + period.policy_digest.hex()),
        ("Closed at", utc_iso(int(period.closed_at))),
    ]


def render_period(
    period: Period,
    sla: Sla,
    config: Config,
    attestation: Mapping[str, Any] | None = None,
    fmt: str = "html",
    leaves: Leaves | None = None,
) -> str:
    """The report of one closed period; `leaves` (from the store) give the outage timeline."""
    slo = next((s for s in config.slos if s.id == sla.slo), None)
    parts = list(slo.targets) if slo is not None else list((leaves or {}).keys())
    maint = intervals_by_target(config.maintenance, period.start, period.end, parts, sla.id)
    maint_all: list[Interval] = merge(iv for ivs in maint.values() for iv in ivs)
    outs = outages(leaves or {}, sla.resolution_s)
    facts = _facts(period, sla, config)
    part_rows = [
        (t, p.get("good", 0), p.get("valid", 0), p.get("no_data", 0), ppm_percent(p.get("sli_ppm")))
        for t, p in sorted(dict(period.result.get("parts", {})).items())
    ]
    if fmt == "md":
        return _markdown(period, sla, facts, part_rows, outs, maint_all, attestation, leaves)
    if fmt != "html":
        raise ValueError(f"unknown format {fmt!r}")
    return _html(period, sla, facts, part_rows, outs, maint_all, attestation, leaves)


def _maint_note(o: Outage, maint: list[Interval], sla: Sla) -> str:
    if not any(a < o.end and b > o.start for a, b in maint):
        return ""
    return " (during maintenance: excluded)" if sla.exclude_maintenance else (
        " (during maintenance)")


def _att_rows(attestation: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list):
            rows.append((prefix, json.dumps(value)))
        else:
            rows.append((prefix, str(value)))

    walk("", attestation)
    return rows


def _html(period: Period, sla: Sla, facts: list[tuple[str, str]],
          part_rows: list[tuple[str, Any, Any, Any, str]], outs: list[Outage],
          maint: list[Interval], attestation: Mapping[str, Any] | None,
          leaves: Leaves | None) -> str:
    e = html.escape
    verdict = str(period.result.get("verdict", "unknown"))
    vclass = {"met": "met", "breached": "breached"}.get(verdict, "none")
    out = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f"<title>SLA report {e(sla.id)} period {period.period}</title><style>",
        "body{font:15px/1.5 system-ui,'DejaVu Sans',sans-serif;max-width:900px;margin:24px auto;"
        "padding:0 16px;color:#1d2330}table{border-collapse:collapse;width:100%;margin:8px 0 18px}"
        "td,th{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}"
        "th{color:#5b6477;font-weight:500;width:30%}code{word-break:break-all;font-size:13px}"
        ".verdict{display:inline-block;padding:4px 14px;border-radius:999px;color:#fff;"
        "font-weight:700}.met{background:#1f9d55}.breached{background:#c8102e}"
        ".none{background:#6b7280}.muted{color:#6b7280;font-size:13px}",
        "</style></head><body>",
        f"<h1>SLA report: {e(sla.id)}</h1>",
        f'<p class="muted">{e(sla.description)}</p>' if sla.description else "",
        f'<p><span class="verdict {vclass}" id="verdict">{e(verdict)}</span></p>',
        "<table>",
    ]
    for k, v in facts:
        cell = f"<code>{e(v)}</code>" if k in ("Evidence root", "Policy digest") else e(v)
        out.append(f"<tr><th>{e(k)}</th><td>{cell}</td></tr>")
    out.append("</table>")
    if part_rows:
        out.append("<h2>Per target</h2><table><tr><th>target</th><th>good</th><th>valid</th>"
                   "<th>no data</th><th>SLI</th></tr>")
        for t, g, v, nd, s in part_rows:
            out.append(f"<tr><td>{e(t)}</td><td>{e(str(g))}</td><td>{e(str(v))}</td>"
                       f"<td>{e(str(nd))}</td><td>{e(s)}</td></tr>")
        out.append("</table>")
    out.append("<h2>Outages</h2>")
    if leaves is None:
        out.append('<p class="muted">Evidence leaves not available (pruned).</p>')
    elif not outs:
        out.append("<p>No bad events in this period.</p>")
    else:
        out.append("<table id=\"outages\"><tr><th>target</th><th>from</th><th>to</th>"
                   "<th>bad / valid events</th></tr>")
        for o in outs:
            note = _maint_note(o, maint, sla)
            cls = "outage maint" if note else "outage"
            out.append(f'<tr class="{cls}"><td>{e(o.target)}</td><td>{utc_iso(o.start)}</td>'
                       f"<td>{utc_iso(o.end)}</td><td>{o.bad} / {o.valid}{e(note)}</td></tr>")
        out.append('</table><p class="muted">Resolution: evidence buckets of '
                   f"{sla.resolution_s}s.</p>")
    out.append("<h2>Maintenance</h2>")
    if maint:
        out.append("<ul>" + "".join(
            f"<li>{utc_iso(int(a))} to {utc_iso(int(b))} ({_dur(b - a)})</li>" for a, b in maint
        ) + "</ul>")
    else:
        out.append("<p>None.</p>")
    out.append("<h2>Attestation</h2>")
    if attestation:
        out.append('<table id="attestation">')
        for k, v in _att_rows(attestation):
            out.append(f"<tr><th>{e(k)}</th><td><code>{e(v)}</code></td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No signed attestation attached.</p>")
    out.append('<p class="muted">Generated by slamon from the evidence leaves in its state; '
               "anyone holding them can recompute the root and the verdict "
               "(slamon evidence verify).</p></body></html>")
    return "\n".join(x for x in out if x)


def _markdown(period: Period, sla: Sla, facts: list[tuple[str, str]],
              part_rows: list[tuple[str, Any, Any, Any, str]], outs: list[Outage],
              maint: list[Interval], attestation: Mapping[str, Any] | None,
              leaves: Leaves | None) -> str:
    lines = [f"# SLA report: {_md(sla.id)}", ""]
    if sla.description:
        lines += [_md(sla.description), ""]
    lines += ["| | |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in facts]
    if part_rows:
        lines += ["", "## Per target", "", "| target | good | valid | no data | SLI |",
                  "|---|---|---|---|---|"]
        lines += [f"| {_md(t)} | {g} | {v} | {nd} | {_md(s)} |" for t, g, v, nd, s in part_rows]
    lines += ["", "## Outages", ""]
    if leaves is None:
        lines.append("Evidence leaves not available (pruned).")
    elif not outs:
        lines.append("No bad events in this period.")
    else:
        lines += ["| target | from | to | bad / valid |", "|---|---|---|---|"]
        lines += [f"| {_md(o.target)} | {utc_iso(o.start)} | {utc_iso(o.end)} | "
                  f"{o.bad} / {o.valid}{_md(_maint_note(o, maint, sla))} |" for o in outs]
    lines += ["", "## Maintenance", ""]
    lines += [f"- {utc_iso(int(a))} to {utc_iso(int(b))} ({_dur(b - a)})" for a, b in maint]
    if not maint:
        lines.append("None.")
    lines += ["", "## Attestation", ""]
    if attestation:
        lines += ["| field | value |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in _att_rows(attestation)]
    else:
        lines.append("No signed attestation attached.")
    return "\n".join(lines) + "\n"


# -- state file (read-only) -------------------------------------------------------------

def read_period(path: Path, sla: str, n: int) -> tuple[Period, dict[str, list[tuple[int, int, int, int]]] | None]:  # noqa: E501
    """The closed period and its evidence leaves (None when pruned), opened read-only."""
    from slamon.store.sqlite import APPLICATION_ID, period_rows

    if not path.is_file():
        raise RenderError(f"state file {path} does not exist (state.path in the config)")
    try:
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise RenderError(f"cannot read state file {path}: {exc}") from None
    try:
        db.execute("PRAGMA busy_timeout=5000")
        if int(db.execute("PRAGMA application_id").fetchone()[0]) != APPLICATION_ID:
            raise RenderError(f"{path} is not a slamon state file")
        found = period_rows(db, "sla = ? AND period = ?", (sla, n))
        if not found:
            raise RenderError(f"period {n} of SLA {sla!r} is not closed (or unknown)")
        period = Period(*found[0])
        leaves: dict[str, list[tuple[int, int, int, int]]] = {}
        for target, bucket, good, valid, no_data in db.execute(
            "SELECT s.target, l.bucket, l.good, l.valid, l.no_data FROM leaves l "
            "JOIN series s ON s.id = l.series WHERE s.sla = ? AND l.bucket >= ? "
            "AND l.bucket < ? ORDER BY s.target, l.bucket", (sla, period.start, period.end)):
            leaves.setdefault(str(target), []).append(
                (int(bucket), int(good), int(valid), int(no_data)))
    except sqlite3.Error as exc:
        raise RenderError(f"cannot read state file {path}: {exc}") from None
    finally:
        db.close()
    has_data = period.result.get("valid", 0) or period.result.get("no_data", 0)
    return period, (leaves if leaves or not has_data else None)


def _cmd_render(args: argparse.Namespace) -> int:
    from slamon.config.loader import load_config_for_cli

    config = load_config_for_cli(args.config, count=False)
    if config is None:
        return 2
    sla = next((s for s in config.slas if s.id == args.sla), None)
    try:
        if sla is None:
            raise RenderError(f"unknown SLA {args.sla!r} in {args.config}")
        period, leaves = read_period(config.state.resolved_path(), args.sla, args.period)
        attestation = None
        if args.attestation:
            try:
                attestation = json.loads(Path(args.attestation).read_text())
            except (OSError, ValueError) as exc:
                raise RenderError(f"cannot read attestation {args.attestation}: {exc}") from None
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = render_period(period, sla, config, attestation, args.format, leaves)
    if args.output and args.output != "-":
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def configure_render(p: argparse.ArgumentParser) -> None:
    """`slamon report render` (listed in slamon.cli.PLUGINS)."""
    add_config_argument(p, "config file (names the state file)")
    p.add_argument("--sla", required=True, help="SLA id")
    p.add_argument("--period", required=True, type=int, help="period id")
    p.add_argument("--format", choices=("html", "md"), default="html")
    p.add_argument("--attestation", metavar="FILE", help="signed report JSON to include")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default stdout)")
    p.set_defaults(func=_cmd_render)
