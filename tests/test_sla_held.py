"""An open SLA period keeps probing the target definitions its policy names.

A period is judged by the policy in force when it began, and its digest names what
each part probes. When a reload (or a restart on an edited file) changes a part's
definition, the scheduler probes the held definition as well until the periods holding
it close, and only its outcomes count for them; the SLOs, metrics and notifications
follow the config's definition at once. Real probes against a loopback server: the
edit points the target from a healthy path at a failing one.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from slamon.app.daemon import Daemon
from slamon.config.loader import load_config
from slamon.config.targets import Target
from slamon.probers.base import ProbeResult
from slamon.sla.held import Held, held_definitions, held_key
from slamon.sla.periods import period_bounds, period_index
from slamon.sla.policy import canonical_json, target_document
from tests.misbehaving import MisbehavingHttpServer

CONFIG = """
server: {{listen: "127.0.0.1:0"}}
logging: {{level: warning, format: json}}
state: {{path: "{state}", flush_interval: 1s}}
targets:
  - {{id: web, kind: http, interval: 1s, timeout: 500ms, http: {{url: "{url}"}}}}
slos:
  - {{id: shop, targets: [web], objective: 0.9, window: 1h}}
slas:
  - {{id: gold, slo: shop, period: {{kind: fixed, length: 1h, anchor: {anchor}}},
     evidence_resolution: 1m}}
"""


class Outcomes:
    """Counts the outcomes the scheduler hands the daemon, and wakes a waiter."""

    def __init__(self) -> None:
        self.config: list[tuple[str, bool]] = []
        self.held: list[tuple[str, bool | None]] = []
        self.changed = asyncio.Event()

    async def wait(self, done: object, limit: float = 20.0) -> None:
        async def until() -> None:
            while not done():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(until(), limit)


def watch(daemon: Daemon) -> Outcomes:
    seen = Outcomes()
    parts = daemon.parts
    on_result, on_held = parts.on_result, parts.on_held

    def result(target: Target, t: float, r: ProbeResult) -> None:
        on_result(target, t, r)
        seen.config.append((target.http.url if target.http else "", r.ok))
        seen.changed.set()

    def held(key: str, target: Target, t: float, r: ProbeResult | None) -> None:
        on_held(key, target, t, r)
        seen.held.append((key, None if r is None else r.ok))
        seen.changed.set()

    parts.on_result = result  # type: ignore[method-assign]
    parts.on_held = held  # type: ignore[method-assign]
    return seen


def held_gauge(daemon: Daemon) -> float:
    from prometheus_client import generate_latest

    from slamon.metrics.collector import SlamonCollector, make_registry, sla_pieces
    from tests.promtext import parse_metrics, value

    tracker = daemon.parts.tracker
    assert tracker is not None
    collector = SlamonCollector(lambda: daemon.parts.live, lambda: None)
    collector.sliced.append(lambda chunk: sla_pieces(tracker, daemon.parts.config,
                                                     time.time(), chunk))
    samples = parse_metrics(generate_latest(make_registry(collector)).decode())
    return value(samples, "slamon_sla_held_probes")


async def test_an_edited_definition_is_probed_as_held_until_its_period_closes(
    tmp_path: Path,
) -> None:
    async with MisbehavingHttpServer() as server:
        path = tmp_path / "slamon.yaml"
        anchor = int(time.time() // 60) * 60 - 60  # a period of an hour, begun a minute ago
        text = textwrap.dedent(CONFIG.format(state=tmp_path / "state.sqlite3",
                                             url=server.url("/ok"), anchor=anchor))
        path.write_text(text)
        daemon = Daemon(load_config(path), config_path=path, loader=load_config)
        await daemon._open_state()
        parts, tracker, store = daemon.parts, daemon.parts.tracker, daemon.store
        assert tracker is not None and store is not None
        seen = watch(daemon)
        scheduler = parts.build_scheduler()
        # the scheduler was built with the daemon's callbacks: hand it the watched ones
        scheduler._on_result, scheduler._on_held = parts.on_result, parts.on_held
        task = asyncio.create_task(scheduler.run())
        try:
            await seen.wait(lambda: len(seen.config) >= 2)
            rt = tracker.slas["gold"]
            n = period_index(rt.sla.period, time.time())
            old_digest = rt.policy_of(n).digest
            old_target = parts.config.target("web")
            path.write_text(text.replace(server.url("/ok"), server.url("/status/500")))
            with capture_logs() as logs:
                assert await daemon.reload()
            key = held_key("web", target_document(old_target))
            assert tracker.held_targets() == {key: old_target}
            (held_log,) = [e for e in logs if e["event"] == "sla_definition_held"]
            assert (held_log["target"], held_log["probe"], held_log["slas"]) == (
                "web", key, ["gold"])
            assert held_log["until"] == period_bounds(rt.sla.period, n)[1]
            # so does /metrics, as parsed by the Prometheus text rules
            assert held_gauge(daemon) == 1
            # the API's SLA document names it
            from slamon.web.api import Api

            doc = Api(lambda: tracker).sla_document(tracker.slas["gold"])
            assert doc["held_probes"] == [
                {"target": "web", "probe": key, "until": held_log["until"]}]
            ok_hits = server.hits["/ok"]
            # both definitions probed: the config's fails, the held one passes
            await seen.wait(lambda: sum(1 for url, _ in seen.config if "500" in url) >= 3
                            and len(seen.held) >= 3)
            assert server.hits["/ok"] > ok_hits
            assert not any(ok for url, ok in seen.config if "500" in url)
            assert all(ok is True for _, ok in seen.held)
            # the SLO follows the edit at once
            parts.live.settle()
            status = parts.live.targets["web"]
            assert status.last is not None and not status.last.ok and status.failures >= 3
            await parts.flush()
            rt = tracker.slas["gold"]
            start, end = period_bounds(rt.sla.period, n)
            leaves = await store.period_leaves("gold", start, end)
            bad = sum(valid - good for _, good, valid, _ in leaves["web"])
            assert bad == 0, leaves  # no outcome of the edited definition in this period
            assert key in (await store.load()).progress  # where a restart fills it from
            # the period closes under its own digest, then the held probe stops
            with capture_logs() as logs:
                (closed,) = await tracker.close_due(now=end + rt.grace + 1)
                parts._hand_held()
            assert closed.period_id == n and closed.valid > 0 and closed.good == closed.valid
            record = await store.get_period("gold", n)
            assert record is not None and record.policy_digest == old_digest
            assert tracker.held_targets() == {} and scheduler._held == {}
            assert held_gauge(daemon) == 0
            assert [e["probe"] for e in logs if e["event"] == "sla_definition_released"] == [key]
            # its progress row goes with it, even if a held probe in flight ends after
            tracker.record_held(key, old_target, end + 1, True, 0.01)
            await parts.flush()
            assert set((await store.load()).progress) == {"web"}
        finally:
            scheduler.stop()
            await task
            await store.close()


def _target(url: str, **spec: object) -> Target:
    return Target.model_validate({"id": "web", "kind": "http", "interval": 10,
                                  "timeout": 2, "http": {"url": url, **spec}})


def _holds(old: Target, new: Target) -> list[tuple[bool, list[Held]]]:
    """What `old`'s policy holds once the config says `new`: from the models it hashed,
    then from its document as stored (a restart); neither loses a part."""
    stored = canonical_json({"target_specs": [target_document(old)]}).decode("ascii")
    out = []
    for source in ((old,), stored):
        found, lost = held_definitions(source, ["web"], {"web": new})
        assert lost == []
        out.append((isinstance(source, str), found))
    return out


@pytest.mark.parametrize(("edit", "held"), [
    ({"url": "http://127.0.0.1:9/b"}, True),
    ({"method": "HEAD"}, True),
    ({"body_contains": ["shop"]}, True),
    ({"max_response_time": 0.75}, True),
    ({"headers": {"Authorization": "Bearer new"}}, False),  # values are in no document
])
def test_what_an_edit_holds(edit: dict[str, object], held: bool) -> None:
    """Only an edit that changes a part's document holds its old definition; the old
    definition comes back from the document as stored (a restart), secrets from the
    config where their hidden forms agree."""
    old = _target("http://127.0.0.1:9/a", headers={"Authorization": "Bearer old"},
                  max_response_time=0.5)
    new = _target(**{"url": "http://127.0.0.1:9/a",
                     "headers": {"Authorization": "Bearer old"}, "max_response_time": 0.5,
                     **edit})  # type: ignore[arg-type]
    for stored, found in _holds(old, new):
        if not held:
            assert found == []
            continue
        (item,) = found
        assert item.key == held_key("web", target_document(old))
        if stored and "headers" in edit:
            continue
        assert target_document(item.target) == target_document(old)
        assert item.target.http is not None and item.target.http.headers == old.http.headers  # type: ignore[union-attr]


def test_a_removed_part_is_held_and_a_label_edit_is_not() -> None:
    old = _target("http://127.0.0.1:9/a")
    relabelled = old.model_copy(update={"labels": {"team": "shop"}})
    stored = canonical_json({"target_specs": [target_document(old)]}).decode("ascii")
    for source in ((old,), stored):
        assert held_definitions(source, ["web"], {"web": relabelled}) == ([], [])
        (item,), lost = held_definitions(source, ["web"], {})
        assert lost == [] and item.target == old
    # a stored definition whose hidden values the config no longer has: not probeable
    secret = _target("http://127.0.0.1:9/a", body="token=1", method="POST")
    stored = canonical_json({"target_specs": [target_document(secret)]}).decode("ascii")
    found, (lost,) = held_definitions(stored, ["web"], {})
    assert found == [] and lost.target_id == "web" and "hides" in lost.reason
    assert "token=1" not in json.dumps(lost.reason)


async def test_a_restart_on_an_edited_file_holds_the_stored_definition_and_fills_its_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edited while slamon was stopped: the open period's definition comes back from its
    stored document, and the ticks slamon did not run meanwhile are filled as no data
    once, at the held definition's ticks, not again at the config's."""
    from slamon.scheduler import phase_offset
    from slamon.sla.tracker import ticks_per_bucket

    path = tmp_path / "slamon.yaml"
    anchor = int(time.time() // 60) * 60 - 60
    text = textwrap.dedent(CONFIG.format(state=tmp_path / "state.sqlite3",
                                         url="http://127.0.0.1:9/ok", anchor=anchor))
    path.write_text(text)
    daemon = Daemon(load_config(path), config_path=path, loader=load_config)
    # the first run started 50 s ago (its start-up fills the ticks before that)
    from slamon.app import wiring

    first = int(time.time()) - 50
    with monkeypatch.context() as m:
        m.setattr(wiring, "time", type("Clock", (), {"time": staticmethod(lambda: first)}))
        await daemon._open_state()
    assert daemon.store is not None and daemon.parts.tracker is not None
    target = daemon.parts.config.target("web")
    offset = phase_offset("web", 1.0)
    last = first + 19 + offset  # and ran 20 ticks, ending ~30 s ago
    for k in range(20):
        daemon._on_result(target, first + k + offset, ProbeResult(True, 0.01))
    await daemon._flush()
    n = period_index(daemon.parts.tracker.slas["gold"].sla.period, last)
    start, end = period_bounds(daemon.parts.tracker.slas["gold"].sla.period, n)
    before = await daemon.store.period_leaves("gold", start, end)
    await daemon.store.close()

    # rows of held probes: one released while stopped, one of a target configured on
    # another instance sharing the store, and the one held again from the stored
    # document (held in an earlier run, up to the same tick)
    import sqlite3

    key = held_key("web", target_document(target))
    stale, elsewhere = "web@0000000000000000", "other@1111111111111111"
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.executemany("INSERT INTO progress(target, last_tick) VALUES (?, ?)",
                       [(stale, first), (elsewhere, first), (key, last)])
    db.close()
    path.write_text(text.replace("127.0.0.1:9/ok", "127.0.0.1:9/moved"))
    again = Daemon(load_config(path), config_path=path, loader=load_config)
    with capture_logs() as logs:
        await again._open_state()
    tracker, store = again.parts.tracker, again.store
    assert tracker is not None and store is not None
    try:
        assert tracker.held_targets() == {key: target}
        expected = sum(ticks_per_bucket(last, again.parts.start_at, 1.0, offset, 60).values())
        (restored,) = [e for e in logs if e["event"] == "state_restored"]
        assert restored["no_data_ticks_filled"] == expected > 20
        await store.flush()  # as the writer's first flush does
        after = await store.period_leaves("gold", start, end)
        no_data = sum(row[3] for row in after["web"]) - sum(row[3] for row in before["web"])
        assert no_data == expected
        rows = set((await store.load()).progress)
        assert rows == {"web", key, elsewhere}  # the released one is gone
    finally:
        await store.close()


@pytest.mark.parametrize(("kind", "spec"), [
    # (what a dialogue sends is hashed: a stored one comes back from the config only)
    ("tcp", {"host": "127.0.0.1", "port": 80, "expect": "PONG", "tls": True}),
    ("dns", {"server": "127.0.0.1:53", "query_name": "example.com", "query_type": "MX"}),
    ("icmp", {"host": "127.0.0.1", "count": 3, "packet_interval": 0.2}),
    ("grpc", {"host": "127.0.0.1", "port": 50051, "service": "shop", "tls": True}),
    ("http", {"url": "http://127.0.0.1:9/", "max_response_time": 0.25,
              "body_contains": ["ok"], "valid_status_codes": [200, 204]}),
])
def test_every_kind_comes_back_from_its_stored_document(kind: str, spec: dict[str, object]) -> None:
    """After a restart the held definition is read from the document: for every probed
    kind, what comes back probes what the document names (its own document is equal)."""
    target = Target.model_validate({"id": "b", "kind": kind, "interval": 10, "timeout": 2,
                                    kind: spec})
    stored = canonical_json({"target_specs": [target_document(target)]}).decode("ascii")
    (item,), lost = held_definitions(stored, ["b"], {})
    assert lost == [] and target_document(item.target) == target_document(target)
    assert item.target == target  # no labels here: the very same model


def test_hidden_values_come_from_the_config_where_their_hidden_forms_agree() -> None:
    """The document keeps a body's keccak256 and header names only: a definition rebuilt
    from it takes the body and header values from the config's definition of the
    target, when the body hashes alike and the names are there."""
    old = _target("http://127.0.0.1:9/a", method="POST", body="token=1",
                  headers={"Authorization": "Bearer x"})
    moved = _target("http://127.0.0.1:9/b", method="POST", body="token=1",
                    headers={"Authorization": "Bearer x"})
    stored = canonical_json({"target_specs": [target_document(old)]}).decode("ascii")
    (item,), lost = held_definitions(stored, ["web"], {"web": moved})
    assert lost == [] and item.target == old
    other_body = moved.model_copy(update={"http": moved.http.model_copy(  # type: ignore[union-attr]
        update={"body": "token=2"})})
    found, (why,) = held_definitions(stored, ["web"], {"web": other_body})
    assert found == [] and "hides" in why.reason


def test_what_is_not_held() -> None:
    """A part the policy's document does not name (not in the config when the policy
    began) and a heartbeat (pushed, not probed) hold nothing; an unreadable document
    says so for every part."""
    old = _target("http://127.0.0.1:9/a")
    stored = canonical_json({"target_specs": [target_document(old)]}).decode("ascii")
    assert held_definitions(stored, ["web", "api"], {}) == (
        [Held(held_key("web", target_document(old)), old)], [])
    beat = Target.model_validate({"id": "cron", "kind": "heartbeat", "interval": 60,
                                  "timeout": 30, "heartbeat": {"token": "t" * 32}})
    later = beat.model_copy(update={"interval": 120.0})
    beats = canonical_json({"target_specs": [target_document(beat)]}).decode("ascii")
    assert held_definitions(beats, ["cron"], {"cron": later}) == ([], [])
    assert held_definitions((beat,), ["cron"], {}) == ([], [])
    found, lost = held_definitions("{not json", ["web", "api"], {})
    assert found == [] and sorted(item.target_id for item in lost) == ["api", "web"]
    assert all("cannot be read" in item.reason for item in lost)


def _tcp(**spec: object) -> Target:
    return Target.model_validate({"id": "web", "kind": "tcp", "interval": 10, "timeout": 2,
                                  "tcp": {"host": "127.0.0.1", "port": 9, **spec}})


@pytest.mark.parametrize(("old", "new", "held"), [
    # rotated credentials are in no document: nothing to hold
    (_target("http://u:old@127.0.0.1:9/a?token=1"),
     _target("http://u:new@127.0.0.1:9/a?token=2"), False),
    (_target("http://127.0.0.1:9/a", proxy="http://p:old@127.0.0.1:3128"),
     _target("http://127.0.0.1:9/a", proxy="http://p:new@127.0.0.1:3128"), False),
    # another oracle's (or a moved) client certificate: the same definition
    (_target("https://127.0.0.1:9/a", cert_file="/a/c.pem", key_file="/a/k.pem"),
     _target("https://127.0.0.1:9/a", cert_file="/b/c.pem", key_file="/b/k.pem"), False),
    # what the URL names apart from its credentials is held, credentials from the config
    (_target("http://u:pw@127.0.0.1:9/a?token=1&x=1"),
     _target("http://u:pw@127.0.0.1:9/b?token=1&x=1"), True),
    (_tcp(send="AUTH pw\r\n", expect="^\\+OK"), _tcp(send="AUTH pw\r\n", expect="^OK"), True),
    (_tcp(query_response=[{"expect": "^220"}, {"send": "AUTH pw\r\n"}]),
     _tcp(query_response=[{"expect": "^250"}, {"send": "AUTH pw\r\n"}]), True),
    (_target("https://127.0.0.1:9/a", cert_file="/a/c.pem", key_file="/a/k.pem"),
     _target("https://127.0.0.1:9/b", cert_file="/a/c.pem", key_file="/a/k.pem"), True),
])
def test_hidden_values_come_back_from_the_config(old: Target, new: Target, held: bool) -> None:
    """Credentials and local paths are in no document, so editing only them holds
    nothing; a held definition that hid them gets them back from the config's, also from
    the document as stored (a restart), and probes exactly the old definition."""
    for _, found in _holds(old, new):
        if not held:
            assert found == []
            continue
        (item,) = found
        assert item.target == old


def test_a_hidden_value_the_config_lost_is_not_probed() -> None:
    """A stored definition whose URL credentials or TCP dialogue the config no longer
    has cannot be rebuilt: its part follows the config, and the reason quotes nothing."""
    for old, new in (
        (_target("http://u:pw@127.0.0.1:9/a"), _target("http://127.0.0.1:9/b")),
        (_tcp(send="AUTH pw\r\n"), _tcp(send="AUTH other\r\n")),
        (_tcp(query_response=[{"send": "AUTH pw\r\n"}]),
         _tcp(query_response=[{"send": "AUTH pw\r\n"}, {"expect": "^OK"}])),
        (_tcp(send="AUTH pw\r\n"), None),  # removed from the config
    ):
        stored = canonical_json({"target_specs": [target_document(old)]}).decode("ascii")
        found, (lost,) = held_definitions(stored, ["web"], {} if new is None else {"web": new})
        assert found == [] and "hides" in lost.reason
        assert "pw" not in json.dumps(lost.reason)
