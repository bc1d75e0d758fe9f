"""Server-rendered HTML of the status page and SVG badges. No external assets:
inline CSS and inline SVG only, so the page works offline and under a strict CSP.
Every string that comes from the config or the outside goes through `esc`.
"""

from __future__ import annotations

import html
from typing import Any

from slamon.wallclock import iso
from slamon.web.status.data import fmt_pct

STATE_TEXT = {
    "operational": "Operational",
    "partial_outage": "Partial outage",
    "major_outage": "Major outage",
    "degraded": "Degraded",
    "no_data": "No data yet",
}

CSS = """
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"DejaVu Sans",sans-serif;background:#f5f6f8;color:#1d2330}
main{max-width:1040px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:0}
.muted{color:#677086;font-size:13px}
.banner{border-radius:8px;padding:14px 18px;margin:16px 0 22px;color:#fff;font-weight:600}
.banner.operational{background:#1f9d55}.banner.partial_outage,.banner.degraded{background:#d97706}
.banner.major_outage{background:#c8102e}.banner.no_data{background:#6b7280}
.slo{background:#fff;border:1px solid #e2e5ec;border-radius:10px;padding:16px 18px;margin:0 0 18px}
.head{display:flex;justify-content:space-between;align-items:center;gap:12px;flex-wrap:wrap}
.pill{border-radius:999px;padding:2px 12px;font-size:13px;font-weight:600;color:#fff}
.pill.operational,.pill.up{background:#1f9d55}.pill.partial_outage,.pill.degraded{background:#d97706}
.pill.major_outage,.pill.down{background:#c8102e}.pill.no_data,.pill.unknown{background:#6b7280}
.pill.maint{background:#2563eb}
table{border-collapse:collapse;width:100%;margin:8px 0}td,th{padding:4px 8px;text-align:left;
font-size:14px;border-bottom:1px solid #eef0f4}th{color:#677086;font-weight:500}
.bar{margin:10px 0 2px;width:100%;height:auto}.bar rect.ok{fill:#1f9d55}.bar rect.warn{fill:#f59e0b}
.bar rect.bad{fill:#c8102e}.bar rect.none{fill:#d6d9e0}.bar rect.maint{fill:#2563eb}
.legend{display:flex;justify-content:space-between}
.progress{background:#e8eaf0;border-radius:4px;height:8px;overflow:hidden;width:160px;
display:inline-block;vertical-align:middle}
.progress span{display:block;height:8px;background:#4f46e5}
ul.incidents{margin:6px 0 0;padding-left:18px}ul.incidents li{font-size:14px}
ul.timeline{margin:4px 0 8px;padding-left:16px}ul.timeline li{font-size:13px}
.ongoing{color:#c8102e;font-weight:600}code{font-size:12px;word-break:break-all}
footer{margin-top:28px;font-size:12px;color:#8a92a6}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def duration_text(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    return f"{s // 86400}d {(s % 86400) // 3600}h"


def _bar(slo: dict[str, Any]) -> str:
    days = slo["days"]
    w, gap, h = 8, 2, 34
    width = len(days) * (w + gap)
    rects = []
    for i, d in enumerate(days):
        x = i * (w + gap)
        sli = fmt_pct(d["sli"]) if d["sli"] is not None else "no data"
        tip = f"{d['date']}: {sli}"
        if d["maintenance_seconds"]:
            tip += f", maintenance {duration_text(d['maintenance_seconds'])}"
        rects.append(
            f'<rect class="day {esc(d["color"])}" data-date="{esc(d["date"])}" '
            f'data-color="{esc(d["color"])}" x="{x}" y="0" width="{w}" height="{h}" rx="1.5">'
            f"<title>{esc(tip)}</title></rect>"
        )
        if d["maintenance_seconds"]:
            rects.append(f'<rect class="maint" data-date="{esc(d["date"])}" x="{x}" '
                         f'y="{h + 3}" width="{w}" height="4"/>')
    return (f'<svg class="bar" viewBox="0 0 {width} {h + 8}" role="img" '
            f'aria-label="daily SLI, last {len(days)} days">{"".join(rects)}</svg>'
            f'<div class="legend muted"><span>{len(days)} days ago</span>'
            f'<span>blue mark: maintenance</span><span>today</span></div>')


def _sla_rows(slo: dict[str, Any]) -> str:
    if not slo["slas"]:
        return ""
    rows = []
    for s in slo["slas"]:
        last = s["last_closed"]
        last_text = "–"
        if last is not None:
            last_text = (f'period {esc(last["period"])}: {esc(last["verdict"])} '
                         f'({fmt_pct(last["sli"])})')
        report = s["last_report"]
        rep_text = "–"
        if report is not None and report["tx_hash"]:
            tx = esc(report["tx_hash"])
            short = esc(report["tx_hash"][:10] + "…" + report["tx_hash"][-6:])
            link = (f'<a href="{esc(report["url"])}" rel="noopener">{short}</a>'
                    if report["url"] else f"<code>{tx}</code>")
            rep_text = f'period {esc(report["period"])}: {link}'
        pct = round(s["progress"] * 100, 1)
        onchain = s.get("onchain")
        note = ""
        if onchain is not None:
            if onchain["single_oracle"]:
                note += ('<div class="single-oracle">single oracle: one signer, '
                         "no fault tolerance</div>")
            else:
                note += (f'<div class="muted">{esc(onchain["quorum"])} of '
                         f'{esc(onchain["signers"])} oracles</div>')
            if onchain["mismatches"]:
                note += ('<div class="mismatch">on-chain terms differ from this monitor\'s '
                         f'config ({esc(", ".join(onchain["mismatches"]))}): not signed</div>')
        rows.append(
            f'<tr class="sla" data-sla="{esc(s["id"])}"><td>{esc(s["id"])}'
            f'<div class="muted">{esc(s["description"])}</div>{note}</td>'
            f'<td><span class="progress"><span style="width:{pct}%"></span></span> {pct}%'
            f'<div class="muted">period {esc(s["period"])}, ends {esc(s["period_end"])}</div></td>'
            f'<td>{fmt_pct(s["sli"])} / {fmt_pct(s["objective"])}</td>'
            f'<td class="budget">{fmt_pct(s["error_budget_remaining"], 1)}</td>'
            f"<td>{last_text}</td><td>{rep_text}</td></tr>"
        )
    return ("<table><tr><th>SLA</th><th>current period</th><th>SLI / objective</th>"
            "<th>error budget left</th><th>last closed</th><th>last on-chain report</th></tr>"
            + "".join(rows) + "</table>")


def _timeline(inc: dict[str, Any]) -> str:
    """An incident's updates, newest first, as status pages show them."""
    rows = "".join(
        f'<li class="update" data-status="{esc(u["status"])}"><b>{esc(u["status"])}</b> '
        f'<span class="muted">{esc(iso(u["at"]).replace("T", " "))}</span>: '
        f'{esc(u["message"])}</li>'
        for u in reversed(inc["updates"]))
    return f'<ul class="timeline">{rows}</ul>'


def _manual(inc: dict[str, Any]) -> str:
    state = "ongoing" if inc["ongoing"] else "resolved"
    return (f'<li class="incident manual" data-incident="{esc(inc["id"])}" '
            f'data-status="{esc(inc["status"])}" data-ongoing="{str(inc["ongoing"]).lower()}">'
            f'<b>{esc(inc["title"])}</b> <span class="{state}">{esc(inc["status"])}</span>'
            f"{_timeline(inc)}</li>")


def general_incidents(doc: dict[str, Any]) -> str:
    items = doc.get("incidents") or []
    if not items:
        return ""
    return ('<section class="incidents-general"><h2>Incidents</h2><ul class="incidents">'
            + "".join(_manual(i) for i in items) + "</ul></section>")


def _incidents(slo: dict[str, Any]) -> str:
    if not slo["incidents"]:
        return '<p class="muted">No recent incidents.</p>'
    items = []
    for inc in slo["incidents"]:
        if inc.get("source") == "manual":
            items.append(_manual(inc))
            continue
        when = esc(iso(inc["start"]).replace("T", " "))
        reason = f", {esc(inc['reason'])}" if inc["reason"] else ""
        if inc["ongoing"]:
            text = (f'<span class="ongoing">ongoing</span> since {when} '
                    f'({duration_text(inc["duration"])})')
        else:
            text = f"{when}, lasted {duration_text(inc['duration'])}"
        items.append(f'<li class="incident" data-target="{esc(inc["target"])}" '
                     f'data-ongoing="{str(inc["ongoing"]).lower()}">'
                     f"<b>{esc(inc['target'])}</b> down: {text}{reason}</li>")
    return '<ul class="incidents">' + "".join(items) + "</ul>"


def _slo(slo: dict[str, Any]) -> str:
    state = slo["state"]
    maint = ('<span class="pill maint" data-maintenance="true">maintenance</span> '
             if slo["in_maintenance"] else "")
    parts = "".join(
        f'<tr class="part" data-target="{esc(p["target"])}" data-state="{esc(p["state"])}">'
        f'<td>{esc(p["target"])}</td><td><span class="pill {esc(p["state"])}">'
        f'{esc(p["state"])}</span></td><td class="muted">'
        f'{esc(", ".join(f"{k}={v}" for k, v in sorted(p["labels"].items())))}</td>'
        f'<td class="muted">{esc(p["reason"] or "")}</td></tr>'
        for p in slo["parts"]
    )
    sli = slo["sli"]
    return (
        f'<section class="slo" id="slo-{esc(slo["id"])}" data-slo="{esc(slo["id"])}" '
        f'data-state="{esc(state)}">'
        f'<div class="head"><div><h2>{esc(slo["id"])}</h2>'
        f'<div class="muted">{esc(slo["description"])}</div></div>'
        f'<div>{maint}<span class="pill state {esc(state)}">'
        f"{esc(STATE_TEXT.get(state, state))}</span></div></div>"
        f'<table><tr><th>SLI 24 h</th><th>7 d</th><th>30 d</th><th>objective</th>'
        f"<th>error budget left ({esc(slo['sli_kind'])})</th></tr>"
        f'<tr class="sli"><td data-window="24h">{fmt_pct(sli["24h"])}</td>'
        f'<td data-window="7d">{fmt_pct(sli["7d"])}</td>'
        f'<td data-window="30d">{fmt_pct(sli["30d"])}</td>'
        f'<td>{fmt_pct(slo["objective"])}</td>'
        f'<td>{fmt_pct(slo["error_budget_remaining"], 1)}</td></tr></table>'
        f"{_bar(slo)}"
        f"<table>{parts}</table>"
        f"{_sla_rows(slo)}"
        f"<h3>Recent incidents</h3>{_incidents(slo)}</section>"
    )


def render_page(doc: dict[str, Any]) -> str:
    state = doc["state"]
    body = "".join(_slo(s) for s in doc["slos"]) or '<p class="muted">Nothing to show.</p>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta http-equiv="refresh" content="60">'
        f"<title>{esc(doc['title'])}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{esc(doc['title'])}</h1>"
        f'<div class="muted">Updated {esc(doc["generated_at"])} (UTC), every minute</div>'
        f'<div class="banner {esc(state)}" id="overall" data-state="{esc(state)}">'
        f"{esc(STATE_TEXT.get(state, state))}</div>{general_incidents(doc)}{body}"
        "<footer>Measured from the customer side by slamon. "
        '<a href="../api/v1/status">JSON</a></footer></main></body></html>'
    )


def _text_width(text: str) -> int:
    # DejaVu Sans at 11px is ~6.5px per char on average; good enough for a badge
    return int(len(text) * 6.5) + 12


def badge(label: str, value: str, color: str) -> str:
    """A flat shields.io-style SVG badge (self-contained)."""
    lw, vw = _text_width(label), _text_width(value)
    w = lw + vw
    label_e, value_e = html.escape(label), html.escape(value)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" '
        f'aria-label="{label_e}: {value_e}"><title>{label_e}: {value_e}</title>'
        f'<rect width="{lw}" height="20" rx="3" fill="#555"/>'
        f'<rect x="{lw}" width="{vw}" height="20" rx="3" fill="{color}"/>'
        f'<rect x="{lw}" width="4" height="20" fill="{color}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="DejaVu Sans,Verdana,sans-serif" '
        'font-size="11">'
        f'<text x="{lw / 2}" y="14">{label_e}</text>'
        f'<text x="{lw + vw / 2}" y="14">{value_e}</text></g></svg>'
    )


BADGE_COLORS = {"ok": "#1f9d55", "warn": "#d97706", "bad": "#c8102e", "none": "#6b7280"}
