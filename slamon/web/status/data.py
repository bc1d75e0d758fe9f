"""What the status page, its badges and /api/v1/status show: one dict, JSON-able.

Per-day SLIs for the uptime bar come from differences of windows that end
now: every tier's resolution divides a day, so a window starting exactly at a
UTC midnight counts exactly the events from that midnight on, whichever tier
answers; day d = from(d) - from(d + 1). Exact while 90 days + today fit in the
largest tier (92 days by default).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from slamon.sla.maintenance import Interval, merge, overlap_seconds, window_intervals
from slamon.sla.periods import period_bounds, period_index
from slamon.sli.window import Counts
from slamon.util.units import ppm_to_ratio
from slamon.wallclock import iso

if TYPE_CHECKING:
    from slamon.config.maintenance import MaintenanceWindow
    from slamon.config.root import Config
    from slamon.config.status_page import StatusPageConfig
    from slamon.sla.result import PeriodResult
    from slamon.sla.tracker import SlaTracker
    from slamon.sli.live import LiveState
    from slamon.sli.slo import SloState
    from slamon.web.status.incidents import IncidentLog

DAY = 86400
WINDOWS = (("24h", 86400.0), ("7d", 7 * 86400.0), ("30d", 30 * 86400.0))
#: the current period's provisional result is recomputed at most this often
PROVISIONAL_TTL = 5.0


class StatusSource(Protocol):
    """What the status page reads; slamon.daemon.Daemon has these attributes."""

    @property
    def live(self) -> LiveState: ...

    @property
    def tracker(self) -> SlaTracker | None: ...

    @property
    def config(self) -> Config: ...


def from_start(state: SloState, now: float, start: float) -> Counts:
    """Counts of events scheduled at or after `start` (a multiple of every tier
    resolution, e.g. a UTC midnight), up to now."""
    length = now - start - 1e-3  # stays inside start's bucket despite float rounding
    if length < 0:
        return Counts(0, 0)
    return state.counts(now, length)


def daily_counts(state: SloState, now: float, days: int) -> list[tuple[int, Counts]]:
    """(UTC day start, counts) for the last `days` days, today last (partial)."""
    today = int(now // DAY) * DAY
    starts = [today - DAY * i for i in range(days - 1, -1, -1)]
    cumulative = [from_start(state, now, s) for s in starts] + [Counts(0, 0)]
    out: list[tuple[int, Counts]] = []
    for i, s in enumerate(starts):
        a, b = cumulative[i], cumulative[i + 1]
        out.append((s, Counts(max(0, a.good - b.good), max(0, a.valid - b.valid))))
    return out


def maintenance_for(windows: Sequence[MaintenanceWindow], parts: Sequence[str],
                    start: float, end: float) -> list[Interval]:
    """Maintenance touching any part of an SLO (whatever SLA it is scoped to)."""
    found: list[Interval] = []
    for w in windows:
        if not w.targets or any(p in w.targets for p in parts):
            found.extend(window_intervals(w, start, end))
    return merge(found)


def day_color(sli: float | None, objective: float) -> str:
    if sli is None:
        return "none"
    if sli >= objective:
        return "ok"
    if sli >= 1 - 10 * (1 - objective):
        return "warn"
    return "bad"


def _ratio(counts: Counts) -> float | None:
    return counts.good / counts.valid if counts.valid else None


class StatusData:
    """Builds the status document; caches provisional SLA results briefly."""

    def __init__(self, source: StatusSource, cfg: StatusPageConfig,
                 incidents: IncidentLog | None = None) -> None:
        self.source = source
        self.cfg = cfg
        self.incidents = incidents
        self._provisional: dict[tuple[str, int], tuple[float, PeriodResult]] = {}

    def public(self, slo_id: str) -> bool:
        return self.cfg.public_slos is None or slo_id in self.cfg.public_slos

    async def document(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        live = self.source.live
        slos = []
        for slo_id, state in live.slos.items():
            if self.public(slo_id):
                slos.append(await self.slo_entry(slo_id, state, now))
        overall = "operational"
        states = {s["state"] for s in slos}
        for worst in ("major_outage", "partial_outage", "degraded"):
            if worst in states:
                overall = worst
                break
        if slos and states == {"no_data"}:
            overall = "no_data"
        general = ([i.to_json(now) for i in self.incidents.general(self.cfg.incidents)]
                   if self.incidents is not None else [])
        return {"version": "slamon-status/1", "title": self.cfg.title,
                "generated_at": iso(now), "state": overall, "slos": slos,
                "incidents": general}

    def slo_state(self, slo_id: str, state: SloState) -> tuple[str, list[dict[str, Any]]]:
        live = self.source.live
        live.settle()
        parts = []
        downs = known = 0
        for tid in state.parts:
            status = live.targets.get(tid)
            last = status.last if status is not None else None
            part_state = "unknown" if last is None else ("up" if last.ok else "down")
            known += last is not None
            downs += part_state == "down"
            parts.append({
                "target": tid,
                "state": part_state,
                "reason": (last.reason.value if last is not None and last.reason else None),
                "labels": dict(status.target.labels) if status is not None else {},
            })
        if not known:
            overall = "no_data"
        elif downs == 0:
            overall = "operational"
        elif downs == len(state.parts):
            overall = "major_outage"
        else:
            overall = "partial_outage"
        return overall, parts

    async def slo_entry(self, slo_id: str, state: SloState, now: float) -> dict[str, Any]:
        config = self.source.config
        slo = state.slo
        overall, parts = self.slo_state(slo_id, state)
        days = self.cfg.days
        first_day = int(now // DAY) * DAY - DAY * (days - 1)
        maint = maintenance_for(config.maintenance, state.parts, first_day, now + DAY)
        in_maintenance = any(a <= now < b for a, b in maint)
        day_rows = []
        for start, counts in daily_counts(state, now, days):
            sli = _ratio(counts)
            mx = overlap_seconds(maint, start, start + DAY)
            day_rows.append({
                "date": iso(start)[:10], "start": start, "good": counts.good,
                "valid": counts.valid, "sli": sli, "maintenance_seconds": int(mx),
                "color": day_color(sli, slo.objective),
            })
        slis = {name: self._sli(state, now, length) for name, length in WINDOWS}
        incidents = []
        if self.incidents is not None:
            incidents = [i.to_json(now) for i in
                         self.incidents.for_targets(state.parts, self.cfg.incidents)]
        return {
            "id": slo_id,
            "description": slo.description,
            "sli_kind": slo.sli,
            "objective": slo.objective,
            "state": overall,
            "in_maintenance": in_maintenance,
            "parts": parts,
            "sli": slis,
            "error_budget_remaining": state.error_budget_remaining(now),
            "days": day_rows,
            "slas": await self.sla_entries(slo_id, now),
            "incidents": incidents,
        }

    @staticmethod
    def _sli(state: SloState, now: float, length: float) -> float | None:
        try:
            return state.sli(now, length)
        except ValueError:  # longer than the windows retain
            return None

    async def sla_entries(self, slo_id: str, now: float) -> list[dict[str, Any]]:
        tracker = self.source.tracker
        if tracker is None:
            return []
        out = []
        for sla_id, rt in tracker.slas.items():
            if rt.sla.slo != slo_id:
                continue
            n = period_index(rt.sla.period, now)
            start, end = period_bounds(rt.sla.period, n)
            result = await self._current(tracker, sla_id, n, now)
            judged = rt.policy_of(n)  # an edit reaches the periods after the current one
            objective_ppm = judged.objective_ppm
            budget: float | None = None
            sli: float | None = None
            if result is not None and result.valid:
                sli = result.good / result.valid
                allowed = result.valid * (1 - ppm_to_ratio(objective_ppm))
                bad = result.valid - result.good
                budget = 1 - bad / allowed if allowed > 0 else None
            last = tracker.last_result.get(sla_id)
            report = None
            if self.incidents is not None and sla_id in self.incidents.reports:
                rep = self.incidents.reports[sla_id]
                report = {"period": rep.period, "tx_hash": rep.tx_hash, "at": iso(rep.at),
                          "chain_id": rep.chain_id, "url": self.explorer_url(rep.tx_hash)}
            out.append({
                "id": sla_id,
                "description": rt.sla.description,
                "period": n,
                "period_start": iso(start),
                "period_end": iso(end),
                "progress": min(1.0, max(0.0, (now - start) / (end - start))) if end > start
                else 1.0,
                "objective": ppm_to_ratio(objective_ppm),
                "sli": sli,
                "good": result.good if result is not None else 0,
                "valid": result.valid if result is not None else 0,
                "error_budget_remaining": budget,
                "last_closed": None if last is None else {
                    "period": last.period_id, "verdict": last.verdict,
                    "sli": ppm_to_ratio(last.sli_ppm),
                    "evidence_root": "0x" + last.evidence_root.hex(),
                },
                "last_report": report,
                # the on-chain SLA as the oracle read it (None without one): single-oracle
                # SLAs and fields that differ from the config are shown on the page
                "onchain": self._onchain(sla_id),
            })
        return out

    def _onchain(self, sla_id: str) -> dict[str, Any] | None:
        note = getattr(self.source, "onchain_note", None)  # sources without an oracle
        if note is None:
            return None
        found: dict[str, Any] | None = note(sla_id)
        if found is None:
            return None
        # no signer addresses or digests on the public page: what kind of SLA it is
        # and which fields differ is what a customer needs
        return {"single_oracle": found["single_oracle"], "quorum": found["quorum"],
                "signers": len(found["signers"]),
                "mismatches": [m["field"] for m in found["mismatches"]]}

    def explorer_url(self, tx_hash: str | None) -> str | None:
        if tx_hash is None or self.cfg.explorer_tx_url is None:
            return None
        return self.cfg.explorer_tx_url.replace("{tx_hash}", tx_hash)

    async def _current(self, tracker: SlaTracker, sla_id: str, n: int,
                       now: float) -> PeriodResult | None:
        cached = self._provisional.get((sla_id, n))
        if cached is not None and time.monotonic() - cached[0] < PROVISIONAL_TTL:
            return cached[1]
        rt = tracker.slas[sla_id]
        try:
            result = await tracker.compute(rt, n)
        except Exception:  # a store problem must not break the page
            return None
        self._provisional = {k: v for k, v in self._provisional.items() if k[0] != sla_id}
        self._provisional[(sla_id, n)] = (time.monotonic(), result)
        return result


def fmt_pct(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value * 100:.{digits}f}%"
