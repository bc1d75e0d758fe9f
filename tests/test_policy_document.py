"""The policy document a period's digest is the keccak256 of, kept with the period.

A period is judged by, and closes with the digest of, the policy in force when it
began, and that digest also covers what each target probes (docs/evidence.md,
section 7). When a target's definition is edited during the period, the config no
longer holds what the digest hashed: the daemon keeps the document from the moment
the digest is made (in memory, in the stored policy of the open period, and in the
closed period), so anyone can check keccak256(document) == policy_digest from the API,
the evidence file or the export. Real daemon, a real SQLite file and a real PostgreSQL
database (each test runs on both backends), real HTTP server, the real
`slamon evidence verify`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from slamon.app.daemon import Daemon
from slamon.config.loader import load_config
from slamon.config.targets import Target
from slamon.metrics.collector import SlamonCollector, make_registry
from slamon.probers.base import ProbeResult
from slamon.sla.export import export
from slamon.sla.periods import period_bounds, period_index
from slamon.sla.policy import document_url, policy_digest_for, target_document
from slamon.sla.tracker import SlaTracker
from slamon.util.docpack import pack_document, unpack_document
from slamon.util.keccak import hashes_to, keccak256
from slamon.web.api import api_routes
from slamon.web.server import HttpServer, build_app

TOKEN = "policy-doc-secret-7f3a91"

CONFIG = """
server: {{listen: "127.0.0.1:0"}}
logging: {{level: warning, format: json}}
state: {state}
targets:
  - id: web
    kind: http
    interval: 10s
    timeout: 2s
    http:
      url: "{url}"
      headers: {{Authorization: "Bearer ${{SLAMON_TEST_POLICY_TOKEN}}"}}
  - {{id: api, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/a"}}}}
slos:
  - {{id: shop, targets: [web, api], objective: 0.9, window: 1d}}
maintenance:
  - id: m
    kind: once
    targets: [web]
    once: {{start: "2020-01-01T00:00:00Z", end: "2020-01-02T00:00:00Z"}}
slas:
  - id: gold
    slo: shop
    period: {{kind: fixed, length: 1d, anchor: {anchor}}}
    evidence_resolution: 5m
    grace: 1m
"""

OLD_URL, NEW_URL = "http://127.0.0.1:9/old", "http://127.0.0.1:9/new"


@dataclass(frozen=True)
class Backend:
    """Where the daemon keeps its state, and the test's own SQL on it (`?` parameters)."""

    dir: Path
    dsn: str | None = None  # PostgreSQL when set

    @property
    def state(self) -> str:
        """The config's `state:` value."""
        if self.dsn is None:
            return json.dumps({"path": str(self.dir / "state.sqlite3")})
        return json.dumps({"backend": "postgres", "dsn": self.dsn})

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.dsn is None:
            with sqlite3.connect(self.dir / "state.sqlite3") as db:
                return list(db.execute(statement, params))
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            cur = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
            return list(cur.fetchall()) if cur.description else []

    def holds(self, secret: str) -> bool:
        """Whether any byte the backend keeps for this state contains `secret`."""
        if self.dsn is None:
            return secret.encode() in b"".join(
                p.read_bytes() for p in sorted(self.dir.glob("state.sqlite3*")))
        tables = self.sql("SELECT table_name FROM information_schema.tables "
                          "WHERE table_schema = 'public'")
        return any(secret in str(row[0])
                   for (table,) in tables
                   for row in self.sql(f'SELECT t::text FROM "{table}" AS t'))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend(tmp_path)
    return Backend(tmp_path, request.getfixturevalue("pg_dsn"))


def write(path: Path, backend: Backend, anchor: int, url: str) -> None:
    path.write_text(textwrap.dedent(CONFIG.format(state=backend.state, url=url,
                                                  anchor=anchor)))


def specs(document: str) -> dict[str, Any]:
    """The document's target definitions by id."""
    return {t["id"]: t for t in json.loads(document)["target_specs"]}


async def opened(path: Path) -> Daemon:
    daemon = Daemon(load_config(path), config_path=path, loader=load_config)
    await daemon._open_state()
    return daemon


def tracker_of(daemon: Daemon) -> SlaTracker:
    tracker = daemon.parts.tracker
    assert tracker is not None and daemon.store is not None
    return tracker


async def serve(tracker: SlaTracker,
                now: float) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    registry = make_registry(SlamonCollector(lambda: None, lambda: None))
    app = build_app(registry, asyncio.Event(),
                    extra_routes=api_routes(lambda: tracker, clock=lambda: now))
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield f"http://127.0.0.1:{server.bound_port}/api/v1/slas/gold/periods", session
    finally:
        await server.stop()


def run_cli(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slamon", *args], input=stdin,
                          capture_output=True, text=True, timeout=30)


async def test_a_period_keeps_the_document_of_the_definitions_it_began_with(
    tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target's URL edited during period n: n's document still names the old URL and
    hashes to n's digest, in memory after the reload, from the store after a restart on
    the edited file, and once n closed: from the API (exact bytes), in the evidence file
    (`slamon evidence verify` checks it and fails a forged one) and in the export. The
    header's secret value is in none of them, nor in the state file."""
    monkeypatch.setenv("SLAMON_TEST_POLICY_TOKEN", TOKEN)
    path = tmp_path / "slamon.yaml"
    anchor = int(time.time() // 300) * 300
    write(path, backend, anchor, OLD_URL)
    first = load_config(path)

    daemon = await opened(path)
    tracker = tracker_of(daemon)
    rt = tracker.slas["gold"]
    n = period_index(rt.sla.period, anchor)
    old = rt.policy_of(n)
    document = old.canonical()
    assert document is not None
    assert old.digest == policy_digest_for(first.slas[0], first.slos[0], first)
    assert hashes_to(document, old.digest)
    assert specs(document)["web"]["spec"]["url"] == OLD_URL
    assert specs(document)["web"]["spec"]["headers"] == ["Authorization"]
    assert [w["id"] for w in json.loads(document)["maintenance_windows"]] == ["m"]
    assert TOKEN not in document
    try:
        write(path, backend, anchor, NEW_URL)
        assert await daemon.reload()
        assert rt is not tracker.slas["gold"]
        rt = tracker.slas["gold"]
        assert rt.policy_of(n).canonical() == document
        upcoming = rt.policy_of(n + 1)
        later = upcoming.canonical()
        assert later is not None and hashes_to(later, upcoming.digest)
        assert upcoming.digest != old.digest
        assert specs(later)["web"]["spec"]["url"] == NEW_URL
        for i in range(6):  # outcomes in period n, under the edited definition
            daemon._on_result(daemon.config.target("web"), anchor + 10 + 300 * i,
                              ProbeResult(i != 3, 0.01))
        await daemon._flush()
    finally:
        assert daemon.store is not None
        await daemon.store.close()

    # a restart on the edited file: n's policy (and its document) come from the store
    daemon = await opened(path)
    tracker = tracker_of(daemon)
    assert daemon.store is not None
    try:
        rt = tracker.slas["gold"]
        assert rt.policy_of(n).canonical() == document
        assert rt.policy_of(n + 1).canonical() == later
        end = period_bounds(rt.sla.period, n)[1]
        now = end + rt.grace + 1
        (closed,) = await tracker.close_due(now=now)
        assert closed.period_id == n
        record = await daemon.store.get_period("gold", n)
        assert record is not None and record.policy_digest == old.digest
        assert record.policy_document() == document

        async for base, session in serve(tracker, now):
            async with session.get(f"{base}/{n}/policy") as resp:
                assert resp.status == 200 and resp.content_type == "application/json"
                body = await resp.read()
                assert resp.headers["X-Policy-Digest"] == "0x" + old.digest.hex()
            assert body == document.encode() and keccak256(body) == old.digest
            async with session.get(f"{base}/{n + 1}/policy") as resp:
                assert resp.status == 200
                assert await resp.read() == later.encode()
            async with session.get(f"{base}/{n}/evidence") as resp:
                assert resp.status == 200
                evidence = await resp.json()
        assert evidence["policy_document"] == document
        ok = run_cli("evidence", "verify", "-", stdin=json.dumps(evidence))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "policy document matches policy_digest" in ok.stdout
        forged = dict(evidence, policy_document=document.replace(OLD_URL, NEW_URL))
        fail = run_cli("evidence", "verify", "-", stdin=json.dumps(forged))
        assert fail.returncode == 1
        assert fail.stdout.startswith("FAIL policy_document does not hash to policy_digest")
    finally:
        await daemon.store.close()

    if backend.dsn is None:  # the export reads the SQLite file only
        exported = json.loads(export(tmp_path / "state.sqlite3", "gold", anchor - 86400,
                                     end + 86400, "json"))
        [period] = exported["periods"]
        assert period["policy_document"] == document
    assert not backend.holds(TOKEN)
    assert backend.holds("gold")  # the check above reads the rows the state keeps


async def test_a_document_missing_or_not_matching_its_digest_is_not_served(
    tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy stored without its document (by a slamon that kept none) is written again
    with the config's when the config still hashes to its digest; a closed period without
    one, or with one that does not hash to its digest, gets a 404 naming why, never a
    document it was not judged by."""
    monkeypatch.setenv("SLAMON_TEST_POLICY_TOKEN", TOKEN)
    path = tmp_path / "slamon.yaml"
    anchor = int(time.time() // 300) * 300
    write(path, backend, anchor, OLD_URL)

    daemon = await opened(path)
    assert daemon.store is not None
    rt = tracker_of(daemon).slas["gold"]
    n = period_index(rt.sla.period, anchor)
    document = rt.policy_of(n).canonical()
    assert document is not None
    await daemon.store.close()

    def held() -> list[dict[str, Any]]:
        [(text,)] = backend.sql("SELECT policies FROM sla_progress WHERE sla = 'gold'")
        docs: list[dict[str, Any]] = json.loads(text)
        return docs

    [stored] = held()
    assert unpack_document(stored["document"]) == document
    stored_digest = rt.policy_of(n).digest
    bare = {k: v for k, v in stored.items() if k != "document"}
    # as an older slamon stored it (written again, with the document); then one whose
    # document was altered in the file (read back, it is not taken for the policy's)
    for row in (bare, dict(bare, document=pack_document(document.replace(OLD_URL, NEW_URL)))):
        backend.sql("UPDATE sla_progress SET policies = ? WHERE sla = 'gold'",
                    (json.dumps([row]),))
        daemon = await opened(path)
        assert daemon.store is not None
        try:
            if row is bare:
                assert [unpack_document(p["document"]) for p in held()] == [document]
            assert tracker_of(daemon).slas["gold"].policy_of(n).canonical() == document
        finally:
            await daemon.store.close()

    # the altered one again, and the config edited meanwhile: nothing holds the document
    # any more, and what the file says is not taken for it
    write(path, backend, anchor, NEW_URL)
    with capture_logs() as logs:
        daemon = await opened(path)
    assert daemon.store is not None
    try:
        policy = tracker_of(daemon).slas["gold"].policy_of(n)
        assert policy.digest == stored_digest and policy.canonical() is None
        # nor can the old definitions be probed for the open period: said, by part
        assert sorted(e["target"] for e in logs
                      if e["event"] == "sla_definition_unprobeable") == ["api", "web"]
        assert tracker_of(daemon).held_targets() == {}
    finally:
        await daemon.store.close()
    backend.sql("UPDATE sla_progress SET policies = ? WHERE sla = 'gold'",
                (json.dumps([stored]),))
    write(path, backend, anchor, OLD_URL)

    daemon = await opened(path)
    assert daemon.store is not None
    tracker = tracker_of(daemon)
    try:
        rt = tracker.slas["gold"]
        end = period_bounds(rt.sla.period, n)[1]
        now = end + rt.grace + 1
        assert len(await tracker.close_due(now=now)) == 1

        def kept(text: str | None) -> None:
            [(policy,)] = backend.sql("SELECT policy FROM periods WHERE period = ?", (n,))
            doc = json.loads(policy)
            if text is None:
                doc.pop("document")
            else:
                doc["document"] = pack_document(text)
            backend.sql("UPDATE periods SET policy = ? WHERE period = ?", (json.dumps(doc), n))

        async for base, session in serve(tracker, now):
            async with session.get(f"{base}/{n}/policy") as resp:
                assert resp.status == 200 and await resp.read() == document.encode()
            # kept altered or not at all: worked out again from the rules slamon still
            # holds, which hash to the digest (never what the file says)
            for text, why in ((document.replace(OLD_URL, NEW_URL), "forged"),
                              (None, "closed without it")):
                kept(text)
                record = await daemon.store.get_period("gold", n)
                assert record is not None and record.policy_document() is None, why
                async with session.get(f"{base}/{n}/policy") as resp:
                    assert resp.status == 200 and await resp.read() == document.encode(), why
                async with session.get(f"{base}/{n}/evidence") as resp:
                    assert (await resp.json())["policy_document"] == document, why
    finally:
        await daemon.store.close()
    # restarted on an edited config, its held policy stored without a document: nothing
    # slamon holds hashes to the digest, a 404 naming why, never a document the period
    # was not judged by
    write(path, backend, anchor, NEW_URL)
    backend.sql("UPDATE sla_progress SET policies = ? WHERE sla = 'gold'",
                (json.dumps([bare]),))
    daemon = await opened(path)
    assert daemon.store is not None
    try:
        async for base, session in serve(tracker_of(daemon), now):
            for text, why in ((document.replace(OLD_URL, NEW_URL), "forged"),
                              (None, "closed without it")):
                kept(text)
                async with session.get(f"{base}/{n}/policy") as resp:
                    assert resp.status == 404, why
                    assert "was not kept" in (await resp.json())["error"]
                async with session.get(f"{base}/{n}/evidence") as resp:
                    assert (await resp.json())["policy_document"] is None, why
    finally:
        await daemon.store.close()


@given(st.text())
def test_a_packed_document_unpacks_to_its_text(text: str) -> None:
    packed = pack_document(text)
    assert packed.isascii() and unpack_document(packed) == text


@pytest.mark.parametrize("packed", [None, 7, "", "z1:", "z1:!!", "eJwrSS0u0c1NLS5OTE8F",
                                    "z1:" + pack_document("x")[3:-2]])
def test_what_pack_did_not_make_unpacks_to_nothing(packed: object) -> None:
    assert unpack_document(packed) is None


async def test_a_schema_1_period_gets_its_document_worked_out_again(
    tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A period closed by a slamon that hashed the schema-1 document and kept neither it
    nor the rules in config form: its document is worked out again from the SLA and SLO
    slamon runs, served only because it hashes to the period's digest; once the
    objective is edited (and nothing held hashes to it), a 404."""
    from slamon.sla.policy import POLICY_SCHEMA, policy_digest

    monkeypatch.setenv("SLAMON_TEST_POLICY_TOKEN", TOKEN)
    path = tmp_path / "slamon.yaml"
    anchor = int(time.time() // 300) * 300
    write(path, backend, anchor, OLD_URL)
    daemon = await opened(path)
    tracker = tracker_of(daemon)
    rt = tracker.slas["gold"]
    n = period_index(rt.sla.period, anchor)
    now = period_bounds(rt.sla.period, n)[1] + rt.grace + 1
    try:
        assert len(await tracker.close_due(now=now)) == 1
    finally:
        assert daemon.store is not None
        await daemon.store.close()
    slo = rt.slo
    digest = policy_digest(rt.sla, slo.objective, slo.targets, True, slo.sli,
                           slo.latency_threshold)
    backend.sql("UPDATE periods SET policy = NULL, policy_digest = ? WHERE period = ?",
                (digest, n))
    for objective, status in (("0.9", 200), ("0.95", 404)):
        # and no progress row: nothing held from before (that period's rules would be)
        backend.sql("DELETE FROM sla_progress WHERE sla = 'gold'")
        text = path.read_text().replace("objective: 0.9,", f"objective: {objective},")
        path.write_text(text)
        daemon = await opened(path)
        try:
            async for base, session in serve(tracker_of(daemon), now):
                async with session.get(f"{base}/{n}/policy") as resp:
                    assert resp.status == status, objective
                    body = await resp.read()
                if status == 200:
                    assert keccak256(body) == digest
                    assert json.loads(body)["schema"] == POLICY_SCHEMA
                    assert resp.headers["X-Policy-Digest"] == "0x" + digest.hex()
        finally:
            assert daemon.store is not None
            await daemon.store.close()
        if backend.dsn is None:  # `slamon export` reads the SQLite file, with the config
            day = time.strftime("%Y-%m-%d", time.gmtime(anchor - 86400))
            out = subprocess.run(
                [sys.executable, "-m", "slamon", "export", "-c", str(path), "--sla", "gold",
                 "--from", day, "--to", "2100-01-01", "--format", "json"],
                capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            [period] = json.loads(out.stdout)["periods"]
            assert period["policy_document"] == (body.decode() if status == 200 else None)


def _doc(kind: str, **spec: object) -> dict[str, Any]:
    return target_document(Target.model_validate(
        {"id": "t", "kind": kind, "interval": 10, "timeout": 2, kind: spec}))


SECRETS = ("s3cr3t-pass", "tok-9f2e", "prox-pw-41", "AUTH-pw-77", "step-pw-12")


def test_a_document_holds_no_credential() -> None:
    """The document is served to anyone (`/periods/{n}/policy`, evidence files, export):
    URL and proxy credentials, secret-looking query values and what a TCP dialogue sends
    are in none of it; certificate and key paths (one oracle's machine) only count as
    set or not."""
    http = _doc("http", url=f"https://user:{SECRETS[0]}@127.0.0.1:9/p?x=1&api_token={SECRETS[1]}",
                proxy=f"http://me:{SECRETS[2]}@127.0.0.1:3128", cert_file="/etc/a/c.pem",
                key_file="/etc/a/k.pem")
    tcp = _doc("tcp", host="127.0.0.1", port=25, send=f"{SECRETS[3]}\r\n", tls=True,
               cert_file="/etc/a/c.pem")
    smtp = _doc("tcp", host="127.0.0.1", port=25,
                query_response=[{"expect": "^220"}, {"send": f"AUTH {SECRETS[4]}\r\n"}])
    text = json.dumps([http, tcp, smtp])
    assert not [s for s in SECRETS if s in text]
    assert "/etc/a" not in text
    assert http["spec"]["url"] == "https://user:xxxxx@127.0.0.1:9/p?x=1&api_token=xxxxx"
    assert http["spec"]["proxy"] == "http://me:xxxxx@127.0.0.1:3128"
    assert (http["spec"]["cert_file"], http["spec"]["key_file"]) == (True, True)
    assert (tcp["spec"]["cert_file"], tcp["spec"]["key_file"]) == (True, False)
    assert tcp["spec"]["send"] == "0x" + keccak256(f"{SECRETS[3]}\r\n".encode()).hex()
    assert smtp["spec"]["query_response"][1]["send"].startswith("0x")
    assert smtp["spec"]["query_response"][0] == {"expect": "^220", "send": None,
                                                 "starttls": False}


def test_what_a_document_commits_to() -> None:
    """Rotated credentials and another oracle's file paths give the same document (as a
    header's value does); what is probed does not: the path and plain query, whether
    credentials or a client certificate are sent, and what a dialogue sends."""
    def url(u: str, **spec: object) -> dict[str, Any]:
        return _doc("http", url=u, **spec)

    base = url("http://u:a@127.0.0.1:9/p?x=1&key=a")
    assert url("http://u:b@127.0.0.1:9/p?x=1&key=b") == base
    for other in ("http://u:a@127.0.0.1:9/q?x=1&key=a", "http://u:a@127.0.0.1:9/p?x=2&key=a",
                  "http://127.0.0.1:9/p?x=1&key=a", "http://v:a@127.0.0.1:9/p?x=1&key=a"):
        assert url(other) != base, other
    assert url("https://h.test/", cert_file="/a") == url("https://h.test/", cert_file="/b")
    assert url("https://h.test/", cert_file="/a") != url("https://h.test/")
    tcp = {"host": "127.0.0.1", "port": 25}
    assert _doc("tcp", **tcp, send="A") != _doc("tcp", **tcp, send="B")


@given(st.text(alphabet=st.sampled_from("abcXYZ019-._~%/:#"), max_size=30))
def test_a_url_with_nothing_to_hide_is_named_verbatim(rest: str) -> None:
    """Digests made before credentials were hidden stay as they were for every URL that
    has none: such a URL is not parsed and written again (which would lower-case the
    scheme or drop an empty query)."""
    for url in (f"http://127.0.0.1:9/{rest}", f"HTTPS://Host.Test{rest}",
                f"http://h.test/{rest}?", f"http://h.test/{rest}?a=1&b=&c"):
        assert document_url(url) == url
