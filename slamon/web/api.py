"""JSON API under /api/v1: SLAs, period results and their Merkle evidence.

Why here and not in server.py: the server knows nothing about SLAs; the daemon
passes `api_routes(lambda: self.tracker)` as `extra_routes`, so the API reads
the live tracker (whose config follows reloads) and the store behind it.

Everything a customer needs to check a verdict is served from the same stored
leaves the daemon closed the period with: the evidence document is exactly
what `slamon evidence verify` accepts, and its root must equal the stored one.
Field names are stable; see docs/api.md. Errors are `{"error", "status"}`
JSON, never tracebacks, and never carry config values (target URLs may hold
credentials): only ids and numbers appear in responses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from slamon.sla.evidence import Leaf, StandardTree, evidence_document, hex0x
from slamon.sla.periods import period_bounds, period_index
from slamon.sla.policy import period_document
from slamon.sla.tracker import closed_document
from slamon.util.keccak import hashes_to
from slamon.util.log import get_logger
from slamon.util.units import ppm_to_ratio
from slamon.wallclock import utc_iso

if TYPE_CHECKING:
    from slamon.sla.result import PeriodResult
    from slamon.sla.tracker import SlaRuntime, SlaTracker
    from slamon.store.sqlite import ClosedPeriod

PREFIX = "/api/v1"
#: the current period's provisional result is recomputed at most this often
#: per SLA: the list endpoint may be polled by many status pages at once
PROVISIONAL_TTL = 2.0
#: period ids beyond this cannot be stored (SQLite integers) or dated
MAX_PERIOD = 2**53

TrackerGetter = Callable[[], "SlaTracker | None"]
Clock = Callable[[], float]
#: sla id -> the on-chain SLA as the oracle read it (slamon.oracle.service.sla_note)
OnchainGetter = Callable[[str], "dict[str, Any] | None"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """Becomes a JSON error response; the message is shown to the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under /api/ every error is JSON: ApiError, aiohttp's own (404, 405) and bugs.

    Other paths (/metrics, /healthz) keep aiohttp's plain-text behaviour.
    """
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = "no such API endpoint; see docs/api.md" if exc.status == 404 else exc.reason
        return error_response(exc.status, message)
    except Exception as exc:
        get_logger().error("api_error", path=request.path, error=type(exc).__name__)
        return error_response(500, "internal error; see the slamon log")


class Api:
    """Request handlers; state is read per request from the tracker and its store."""

    def __init__(self, tracker: TrackerGetter, clock: Clock = time.time,
                 onchain: OnchainGetter | None = None) -> None:
        self._tracker = tracker
        self._clock = clock
        self._onchain = onchain
        self._provisional: dict[tuple[str, int], tuple[float, PeriodResult]] = {}

    # -- helpers ------------------------------------------------------------
    def tracker(self) -> SlaTracker:
        tracker = self._tracker()
        if tracker is None:
            raise ApiError(503, "state is not open yet; retry shortly")
        return tracker

    def runtime(self, tracker: SlaTracker, sla_id: str) -> SlaRuntime:
        rt = tracker.slas.get(sla_id)
        if rt is None:
            shown = f" {sla_id!r}" if len(sla_id) <= 128 else ""  # ids are at most 128
            raise ApiError(404, f"unknown SLA{shown}")
        return rt

    @staticmethod
    def period_id(raw: str) -> int:
        try:
            n = int(raw, 10)
        except ValueError:
            raise ApiError(400, "period must be an integer period id") from None
        if abs(n) >= MAX_PERIOD:
            raise ApiError(404, f"no period {n}")
        return n

    @staticmethod
    def bounds(rt: SlaRuntime, n: int) -> tuple[int, int]:
        try:
            return period_bounds(rt.sla.period, n)
        except (OverflowError, ValueError, OSError):
            raise ApiError(404, f"no period {n}") from None

    async def provisional(self, tracker: SlaTracker, rt: SlaRuntime, n: int) -> PeriodResult:
        """The open period's result so far (cached briefly: it reads all its leaves)."""
        now = time.monotonic()
        key = (rt.sla.id, n)
        hit = self._provisional.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        result = await tracker.compute(rt, n)
        if len(self._provisional) > 4 * max(len(tracker.slas), 1):
            self._provisional = {k: v for k, v in self._provisional.items() if v[0] > now}
        self._provisional[key] = (now + PROVISIONAL_TTL, result)
        return result

    # -- documents ------------------------------------------------------------
    def sla_document(self, rt: SlaRuntime) -> dict[str, Any]:
        sla = rt.sla
        # the oldest unclosed period's policy: an edit reaches the periods after the one
        # it was made in (`next_policy` until then)
        judged = rt.policies[0]
        objective_ppm = judged.objective_ppm
        upcoming = rt.policies[-1]
        return {
            "id": sla.id,
            "onchain_id": hex0x(sla.onchain_id_bytes),
            "description": sla.description,
            "slo": rt.slo.id,
            "sli": rt.slo.sli,
            "targets": [p.id for p in rt.parts],
            "composite": len(rt.parts) > 1,
            "objective": ppm_to_ratio(objective_ppm),
            "objective_ppm": objective_ppm,
            "period": period_document(sla.period),
            "resolution": rt.resolution,
            "grace": rt.grace,
            "policy": {
                "no_data": judged.sla.policy.no_data,
                "maintenance": judged.sla.policy.maintenance,
                "min_valid_samples": judged.sla.min_valid_samples,
            },
            "policy_digest": hex0x(rt.digest),
            "next_policy": None if upcoming is judged else {
                "from_period": upcoming.start,
                "policy_digest": hex0x(upcoming.digest),
                "objective_ppm": upcoming.objective_ppm,
            },
            # parts whose edited definition the open period does not count: the one its
            # policy names is probed for it until `until`
            "held_probes": sorted(
                ({"target": tid, "probe": h.key, "until": rt.held_until(h.key)}
                 for (_, tid), h in rt.held.items()), key=lambda d: str(d["probe"])),
            # the SLA as registered on-chain (oracle, chain mode, once read): single-oracle
            # SLAs have no fault tolerance, and fields that differ stop this daemon signing
            "onchain": None if self._onchain is None else self._onchain(sla.id),
            "first_period": rt.first_period,
            "last_closed_period": rt.last_closed if rt.last_closed >= rt.first_period else None,
        }

    @staticmethod
    def counts(result: dict[str, Any]) -> dict[str, Any]:
        """The summary fields of a result (stored JSON or PeriodResult.to_json())."""
        return {
            "good": result["good"],
            "valid": result["valid"],
            "no_data": result["no_data"],
            "maintenance_excluded": result["maintenance_excluded"],
            "sli": ppm_to_ratio(result["sli_ppm"]),
            "sli_ppm": result["sli_ppm"],
            "verdict": result["verdict"],
            "breached": result["breached"],
        }

    @staticmethod
    def times(n: int, start: int, end: int) -> dict[str, Any]:
        return {
            "period": n,
            "start": start,
            "end": end,
            "start_iso": utc_iso(start),
            "end_iso": utc_iso(end),
        }

    def closed_document(self, rt: SlaRuntime, cp: ClosedPeriod) -> dict[str, Any]:
        return {
            "sla": rt.sla.id,
            **self.times(cp.period, cp.start, cp.end),
            "state": "closed",
            "final": True,
            "closed_at": cp.closed_at,
            "closed_at_iso": utc_iso(int(cp.closed_at)),
            "evidence_root": hex0x(cp.root),
            "policy_digest": hex0x(cp.policy_digest),
            "judged_by": cp.judged_by(),
            **self.counts(cp.result),
            "result": cp.result,
        }

    def open_document(
        self, rt: SlaRuntime, result: PeriodResult, now: float
    ) -> dict[str, Any]:
        start, end = result.start, result.end
        data = result.to_json()
        return {
            "sla": rt.sla.id,
            **self.times(result.period_id, start, end),
            # "closing": ended, waiting for its grace time before it is closed
            "state": "open" if now < end else "closing",
            "final": False,
            "closed_at": None,
            "closed_at_iso": None,
            "progress": progress(start, end, now),
            "evidence_root": data["evidence_root"],
            "policy_digest": hex0x(rt.policy_of(result.period_id).digest),
            **self.counts(data),
            "result": data,
        }

    # -- handlers -------------------------------------------------------------
    async def list_slas(self, _request: web.Request) -> web.Response:
        tracker = self.tracker()
        now = self._clock()
        out: list[dict[str, Any]] = []
        for rt in list(tracker.slas.values()):
            doc = self.sla_document(rt)
            n = period_index(rt.sla.period, now)
            start, end = period_bounds(rt.sla.period, n)
            current = self.times(n, start, end)
            current["progress"] = progress(start, end, now)
            try:
                result = await self.provisional(tracker, rt, n)
            except ValueError as exc:
                # e.g. leaves not aligned after a resolution change: one SLA's
                # problem must not hide the others
                get_logger().warning("api_current_period_failed", sla=rt.sla.id,
                                     reason=str(exc))
                current["error"] = "cannot compute the current period; see the slamon log"
            else:
                current.update(self.counts(result.to_json()))
                current["evidence_root"] = hex0x(result.evidence_root)
            doc["current_period"] = current
            doc["last_closed"] = None
            if rt.last_closed >= rt.first_period:
                cp = await tracker.store.get_period(rt.sla.id, rt.last_closed)
                if cp is not None:
                    doc["last_closed"] = {
                        **self.times(cp.period, cp.start, cp.end),
                        **self.counts(cp.result),
                        "closed_at": cp.closed_at,
                        "evidence_root": hex0x(cp.root),
                    }
            out.append(doc)
        return web.json_response({"now": now, "now_iso": utc_iso(int(now)), "slas": out})

    async def get_sla(self, request: web.Request) -> web.Response:
        tracker = self.tracker()
        rt = self.runtime(tracker, request.match_info["sla"])
        return web.json_response(self.sla_document(rt))

    async def _closed_or_state(
        self, tracker: SlaTracker, rt: SlaRuntime, n: int
    ) -> tuple[ClosedPeriod | None, float]:
        """The stored period, or None if it is still open; 404 if it is neither."""
        now = self._clock()
        cp = await tracker.store.get_period(rt.sla.id, n)
        if cp is not None:
            return cp, now
        start, end = self.bounds(rt, n)
        if end <= start:
            raise ApiError(404, f"period {n} is empty (a local time skipped by DST)")
        if start > now:
            raise ApiError(404, f"period {n} has not started yet (starts {utc_iso(start)})")
        if n < rt.first_period:
            raise ApiError(
                404, f"period {n} is before this SLA's accounting began "
                f"(first period {rt.first_period})"
            )
        if n <= rt.last_closed:
            raise ApiError(404, f"period {n} was not recorded")
        return None, now

    async def get_period(self, request: web.Request) -> web.Response:
        tracker = self.tracker()
        rt = self.runtime(tracker, request.match_info["sla"])
        n = self.period_id(request.match_info["n"])
        cp, now = await self._closed_or_state(tracker, rt, n)
        if cp is not None:
            return web.json_response(self.closed_document(rt, cp))
        result = await self.provisional(tracker, rt, n)
        return web.json_response(self.open_document(rt, result, now))

    async def get_policy(self, request: web.Request) -> web.Response:
        """The policy document the period is judged by, exactly the bytes its
        `policy_digest` is the keccak256 of."""
        tracker = self.tracker()
        rt = self.runtime(tracker, request.match_info["sla"])
        n = self.period_id(request.match_info["n"])
        cp, _ = await self._closed_or_state(tracker, rt, n)
        if cp is not None:  # checked against its digest as it is read back
            document, digest = closed_policy_document(tracker, rt, cp), cp.policy_digest
        else:
            policy = rt.policy_of(n)
            document, digest = policy.canonical(), policy.digest
            if document is not None and not hashes_to(document, digest):
                get_logger().error("policy_document_mismatch", sla=rt.sla.id, period=n)
                raise ApiError(500, "the policy document does not hash to the period's digest")
        if document is None:
            raise ApiError(404, f"the policy document of period {n} was not kept (the "
                           "period's policy was stored by a slamon that did not keep it, "
                           "and no policy slamon holds now hashes to its digest)")
        return web.Response(body=document.encode(), content_type="application/json",
                            headers={"X-Policy-Digest": hex0x(digest)})

    async def get_evidence(self, request: web.Request) -> web.Response:
        tracker = self.tracker()
        rt = self.runtime(tracker, request.match_info["sla"])
        n = self.period_id(request.match_info["n"])
        cp, now = await self._closed_or_state(tracker, rt, n)
        if cp is None:
            raise ApiError(404, f"period {n} is still open: evidence is final once it closes")
        rows = await tracker.store.period_leaves(rt.sla.id, cp.start, cp.end)
        leaves = [Leaf(t, b, g, v, nd) for t, items in rows.items() for b, g, v, nd in items]
        document = closed_policy_document(tracker, rt, cp)
        doc = await asyncio.to_thread(evidence_with_proofs, rt, cp, leaves, document)
        if doc["root"] != hex0x(cp.root):
            retention = tracker.config.state.evidence_retention
            if cp.start < now - retention:
                raise ApiError(
                    404, f"evidence of period {n} was pruned: leaves are kept for "
                    f"state.evidence_retention ({int(retention)} s) only"
                )
            get_logger().error("evidence_root_mismatch", sla=rt.sla.id, period=n)
            raise ApiError(500, "the stored leaves do not reproduce the stored root")
        return web.json_response(doc)


def progress(start: int, end: int, now: float) -> float:
    """Fraction of the period's time elapsed, in [0, 1]."""
    if end <= start:
        return 1.0
    return min(1.0, max(0.0, (now - start) / (end - start)))


def closed_policy_document(tracker: SlaTracker, rt: SlaRuntime, cp: ClosedPeriod) -> str | None:
    """The document a closed period's digest hashes (`closed_document`), worked out
    again if need be from the policies the tracker holds for its SLA."""
    return closed_document(cp, tracker.known_policies(rt.sla.id), rt.parts)


def evidence_with_proofs(rt: SlaRuntime, cp: ClosedPeriod, leaves: list[Leaf],
                         document: str | None) -> dict[str, Any]:
    """evidence_document plus a proof per leaf (same order as `leaves`); `document`: the
    policy document its digest hashes (`closed_policy_document`).

    Proofs sit in a top-level `proofs` list rather than in each leaf, because a
    leaf object has exactly the five hashed fields (a verifier rejects others).
    Runs in a thread: a month of many targets is many thousand keccaks.
    """
    ordered = sorted(leaves, key=lambda x: (x.target, x.bucket_start))
    tree = StandardTree.of(ordered)
    proofs = [[hex0x(p) for p in tree.proof(i)] for i in range(len(ordered))]
    return evidence_document(
        rt.sla.id, cp.period, cp.start, cp.end, rt.resolution, ordered,
        extra={
            "onchain_id": hex0x(rt.sla.onchain_id_bytes),
            "policy_digest": hex0x(cp.policy_digest),
            # the exact text the digest hashes (a string: re-encoding an object could
            # change its bytes); null for a period closed without it
            "policy_document": document,
            "judged_by": cp.judged_by(),
            "closed_at": cp.closed_at,
            "result": cp.result,
            "proofs": proofs,
        },
    )


def api_routes(
    tracker: TrackerGetter, clock: Clock = time.time, onchain: OnchainGetter | None = None
) -> Callable[[web.Application], None]:
    """`extra_routes` for slamon.server.build_app."""
    api = Api(tracker, clock, onchain)

    def add(app: web.Application) -> None:
        app.middlewares.append(json_errors)
        r = app.router
        r.add_get(f"{PREFIX}/slas", api.list_slas)
        r.add_get(f"{PREFIX}/slas/{{sla}}", api.get_sla)
        r.add_get(f"{PREFIX}/slas/{{sla}}/periods/{{n}}", api.get_period)
        r.add_get(f"{PREFIX}/slas/{{sla}}/periods/{{n}}/evidence", api.get_evidence)
        r.add_get(f"{PREFIX}/slas/{{sla}}/periods/{{n}}/policy", api.get_policy)

    return add
