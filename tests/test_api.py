"""The JSON API against real components: a StateStore file, the SlaTracker that
closes periods from it, and the aiohttp server on 127.0.0.1.

Periods are closed deterministically with `close_due(now=...)` and the API gets
a fixed clock, because the config refuses fixed periods shorter than 1m.
Evidence documents are checked with the real `slamon evidence verify` CLI.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from slamon.config.loader import load_config
from slamon.config.root import Config
from slamon.metrics.collector import SlamonCollector, make_registry
from slamon.sla.evidence import Leaf, hex0x
from slamon.sla.maintenance import intervals_by_target
from slamon.sla.policy import policy_digest_for
from slamon.sla.result import compute_period_result
from slamon.sla.tracker import SlaTracker
from slamon.store.sqlite import StateStore
from slamon.util.log import get_logger
from slamon.web.api import api_routes
from slamon.web.server import HttpServer, build_app
from tests.misbehaving import MisbehavingHttpServer

#: first period id; fixed 1m periods from the epoch, so it starts at P * 60
P = 1_780_000_000 // 60
RES = 10  # evidence resolution (s): six buckets per period


def write_config(tmp_path: Path, url: str = "http://127.0.0.1:9/", listen: str = "127.0.0.1:0",
                 retention: str = "400d") -> Path:
    path = tmp_path / "slamon.yaml"
    path.write_text(textwrap.dedent(f"""
        server: {{listen: "{listen}"}}
        logging: {{level: warning, format: json}}
        state: {{path: "{tmp_path / 'state.sqlite3'}", evidence_retention: {retention}}}
        targets:
          - {{id: web, kind: http, interval: 10s, timeout: 2s, http: {{url: "{url}"}}}}
          - {{id: api, kind: http, interval: 10s, timeout: 2s, http: {{url: "{url}"}}}}
        slos:
          - {{id: shop, targets: [web, api], objective: 0.9, window: 1h}}
        slas:
          - id: gold
            slo: shop
            period: {{kind: fixed, length: 1m}}
            evidence_resolution: {RES}s
            grace: 1s
            onchain_id: "0x{'ab' * 32}"
    """))
    return path


def fill(store: StateStore) -> None:
    """P: api fails once (5 of 6 buckets good: breached at 0.9); P+1: all good
    plus a no-data tick (met); P+2 (open): one good bucket so far."""
    p0, p1, p2 = P * 60, (P + 1) * 60, (P + 2) * 60
    for b in range(p0, p0 + 60, RES):
        store.add_leaf("gold", "web", b, 1, 1, 0)
        store.add_leaf("gold", "api", b, 0 if b == p0 + 20 else 1, 1, 0)
    for b in range(p1, p1 + 60, RES):
        store.add_leaf("gold", "web", b, 1, 1, 0)
        store.add_leaf("gold", "api", b, 1, 1, 1 if b == p1 else 0)
    store.add_leaf("gold", "web", p2, 1, 1, 0)
    store.add_leaf("gold", "api", p2, 1, 1, 0)


@dataclass
class State:
    config: Config
    config_path: Path
    store: StateStore
    tracker: SlaTracker
    now: float


async def make_state(tmp_path: Path, retention: str = "400d") -> State:
    """Store + tracker with periods P (breached) and P+1 (met) closed, P+2 open."""
    config_path = write_config(tmp_path, retention=retention)
    config = load_config(config_path)
    store = StateStore(config.state.resolved_path())
    await store.open()
    tracker = SlaTracker(config, store, get_logger())
    await tracker.start({}, start_at=P * 60 + 1)
    fill(store)
    closed = await tracker.close_due(now=(P + 2) * 60 + 5)
    assert [r.period_id for r in closed] == [P, P + 1]
    assert [r.verdict for r in closed] == ["breached", "met"]
    return State(config, config_path, store, tracker, now=(P + 2) * 60 + 30.0)


@dataclass
class Api:
    state: State
    base: str
    session: aiohttp.ClientSession

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.base + path) as resp:
            assert resp.content_type == "application/json", await resp.text()
            return resp.status, await resp.json()


async def serve(state: State) -> AsyncIterator[Api]:
    registry = make_registry(SlamonCollector(lambda: None, lambda: None))
    app = build_app(registry, asyncio.Event(),
                    extra_routes=api_routes(lambda: state.tracker, clock=lambda: state.now))
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(state, f"http://127.0.0.1:{server.bound_port}", session)
    finally:
        await server.stop()
        await state.store.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    state = await make_state(tmp_path)
    async for a in serve(state):
        yield a


def recompute(state: State, n: int, leaves: list[Leaf]) -> dict[str, Any]:
    rt = state.tracker.slas["gold"]
    start, end = n * 60, (n + 1) * 60
    by_target: dict[str, list[Leaf]] = {"web": [], "api": []}
    for leaf in leaves:
        by_target[leaf.target].append(leaf)
    maint = intervals_by_target(state.config.maintenance, start, end, ["web", "api"], "gold")
    return compute_period_result(rt.sla, (start, end), by_target, maint, True,
                                 slo_objective=rt.slo.objective).to_json()


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slamon", *args], input=stdin,
                          capture_output=True, text=True, timeout=30)


async def test_list_slas(api: Api) -> None:
    status, body = await api.get("/api/v1/slas")
    assert status == 200
    assert body["now"] == api.state.now
    [sla] = body["slas"]
    rt = api.state.tracker.slas["gold"]
    assert sla["id"] == "gold"
    assert sla["onchain_id"] == "0x" + "ab" * 32
    assert sla["slo"] == "shop" and sla["targets"] == ["web", "api"] and sla["composite"]
    assert sla["objective"] == 0.9 and sla["objective_ppm"] == 900_000
    assert sla["period"] == {"kind": "fixed", "length": 60, "anchor": 0}
    digest = policy_digest_for(rt.sla, rt.slo, api.state.tracker.config)
    assert sla["policy_digest"] == hex0x(digest)
    assert sla["resolution"] == RES
    assert sla["first_period"] == P and sla["last_closed_period"] == P + 1
    cur = sla["current_period"]
    assert cur["period"] == P + 2
    assert (cur["start"], cur["end"]) == ((P + 2) * 60, (P + 3) * 60)
    assert cur["start_iso"].endswith("Z") and cur["end_iso"].endswith("Z")
    assert cur["progress"] == 0.5
    assert (cur["good"], cur["valid"], cur["no_data"]) == (1, 1, 0)
    assert cur["sli"] == 1.0 and cur["sli_ppm"] == 1_000_000
    last = sla["last_closed"]
    assert last["period"] == P + 1 and last["verdict"] == "met"
    assert (last["good"], last["valid"]) == (6, 6)


async def test_closed_period_equals_recomputation(api: Api) -> None:
    status, body = await api.get(f"/api/v1/slas/gold/periods/{P}")
    assert status == 200
    assert body["final"] is True and body["state"] == "closed"
    assert body["closed_at"] == (P + 2) * 60 + 5
    assert body["verdict"] == "breached" and body["breached"] is True
    assert (body["good"], body["valid"], body["sli_ppm"]) == (5, 6, 833_333)
    rows = await api.state.store.period_leaves("gold", P * 60, (P + 1) * 60)
    leaves = [Leaf(t, *row) for t, items in rows.items() for row in items]
    expected = recompute(api.state, P, leaves)
    assert body["result"] == expected
    assert body["evidence_root"] == expected["evidence_root"]
    rt = api.state.tracker.slas["gold"]
    assert body["policy_digest"] == hex0x(rt.digest)
    # the SLA, SLO and windows it was judged by, in the config's own form
    judged = body["judged_by"]
    assert judged["sla"]["id"] == "gold" and judged["slo"]["id"] == "shop"
    assert judged["slo"]["objective"] == 0.9 and judged["maintenance"] == []
    assert rt.slo.model_validate(judged["slo"]) == rt.slo


async def test_open_period_is_provisional(api: Api) -> None:
    status, body = await api.get(f"/api/v1/slas/gold/periods/{P + 2}")
    assert status == 200
    assert body["final"] is False and body["state"] == "open"
    assert body["closed_at"] is None and body["progress"] == 0.5
    assert (body["good"], body["valid"]) == (1, 1)
    status, err = await api.get(f"/api/v1/slas/gold/periods/{P + 2}/evidence")
    assert status == 404 and "still open" in err["error"]


@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        (f"/api/v1/slas/gold/periods/{P + 3}", 404, "not started"),
        (f"/api/v1/slas/gold/periods/{P + 3}/evidence", 404, "not started"),
        (f"/api/v1/slas/gold/periods/{P - 1}", 404, "before"),
        ("/api/v1/slas/nope/periods/1", 404, "unknown SLA"),
        ("/api/v1/slas/nope", 404, "unknown SLA"),
        ("/api/v1/slas/gold/periods/abc", 400, "integer"),
        ("/api/v1/slas/gold/periods/1.5/evidence", 400, "integer"),
        ("/api/v1/slas/gold/periods/99999999999999999999999", 404, "no period"),
        ("/api/v1/nothing", 404, "no such API endpoint"),
    ],
)
async def test_errors_are_json(api: Api, path: str, status: int, needle: str) -> None:
    got, body = await api.get(path)
    assert got == status
    assert body["status"] == status and needle in body["error"], body
    assert set(body) == {"error", "status"}


async def test_method_not_allowed_is_json(api: Api) -> None:
    async with api.session.post(api.base + "/api/v1/slas") as resp:
        assert resp.status == 405
        assert (await resp.json())["status"] == 405


async def test_evidence_verifies_with_cli(api: Api, tmp_path: Path) -> None:
    status, doc = await api.get(f"/api/v1/slas/gold/periods/{P}/evidence")
    assert status == 200
    assert doc["format"] == "slamon-evidence/1"
    assert (doc["sla"], doc["period"], doc["resolution"]) == ("gold", P, RES)
    assert len(doc["leaves"]) == 12 and len(doc["proofs"]) == 12
    stored = await api.state.store.get_period("gold", P)
    assert stored is not None and doc["root"] == hex0x(stored.root)
    leaves = [Leaf.from_json(x) for x in doc["leaves"]]
    assert recompute(api.state, P, leaves) == doc["result"]

    good = tmp_path / "evidence.json"
    good.write_text(json.dumps(doc))
    ok = run_cli("evidence", "verify", str(good))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK root {doc['root']}")
    assert run_cli("evidence", "verify", "-", stdin=json.dumps(doc)).returncode == 0

    tampered = json.loads(json.dumps(doc))
    tampered["leaves"][0]["good"] = tampered["leaves"][0]["valid"] - 1
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(tampered))
    fail = run_cli("evidence", "verify", str(bad))
    assert fail.returncode == 1 and "root mismatch" in fail.stdout

    swapped = json.loads(json.dumps(doc))
    swapped["proofs"][0], swapped["proofs"][1] = swapped["proofs"][1], swapped["proofs"][0]
    fail = run_cli("evidence", "verify", "-", stdin=json.dumps(swapped))
    assert fail.returncode == 1 and "proofs[0]" in fail.stdout

    assert run_cli("evidence", "verify", "-", stdin="{not json").returncode == 2
    assert run_cli("evidence", "verify", str(tmp_path / "missing.json")).returncode == 2
    assert run_cli("evidence", "verify", "-", stdin="[1, 2]").returncode == 2


async def test_pruned_evidence_is_404(tmp_path: Path) -> None:
    state = await make_state(tmp_path, retention="1m")
    async for api in serve(state):
        await state.store.prune_leaves("gold", (P + 1) * 60)
        status, body = await api.get(f"/api/v1/slas/gold/periods/{P}/evidence")
        assert status == 404 and "pruned" in body["error"]
        # the stored result and root outlive the leaves
        status, body = await api.get(f"/api/v1/slas/gold/periods/{P}")
        assert status == 200 and body["verdict"] == "breached"
        status, _ = await api.get(f"/api/v1/slas/gold/periods/{P + 1}/evidence")
        assert status == 200


async def test_daemon_serves_the_api(tmp_path: Path) -> None:
    """The wiring in Daemon.start(): the real daemon answers /api/v1/slas."""
    from slamon.app.daemon import Daemon

    async with MisbehavingHttpServer() as target:
        config = load_config(write_config(tmp_path, url=target.url("/")))
        daemon = Daemon(config)
        await daemon.start()
        try:
            assert daemon.server is not None
            base = f"http://127.0.0.1:{daemon.server.bound_port}"
            async with aiohttp.ClientSession() as session:
                async with session.get(base + "/api/v1/slas") as resp:
                    assert resp.status == 200
                    body = await resp.json()
                [sla] = body["slas"]
                assert sla["id"] == "gold" and sla["last_closed"] is None
                n = sla["current_period"]["period"]
                async with session.get(f"{base}/api/v1/slas/gold/periods/{n}") as resp:
                    assert resp.status == 200
                    assert (await resp.json())["final"] is False
        finally:
            await daemon.shutdown()
