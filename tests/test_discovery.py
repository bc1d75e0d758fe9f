"""Target discovery: Prometheus file_sd / http_sd target groups, templates, SLO selectors.

The pure part (groups, templates, the running config) is checked directly; the
running part with a real daemon probing loopback servers, a file_sd file edited
on disk and an HTTP SD server on 127.0.0.1. Waits are on events (a probe
recorded, a config applied), never on time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from slamon.app.daemon import Daemon
from slamon.config.discovery import (
    EntryError,
    Group,
    parse_groups,
    placeholder_values,
    render,
    resolve,
    target_id,
)
from slamon.config.loader import ConfigError, parse_config
from slamon.config.root import Config
from slamon.config.targets import Target
from slamon.metrics.rules import generate_rules
from slamon.probers.base import ProbeResult
from slamon.util.schema import PathError
from tests.misbehaving import MisbehavingHttpServer
from tests.promtext import parse_metrics, value

TEMPLATE = """
    template:
      kind: http
      interval: 1s
      timeout: 500ms
      labels: {source: inventory}
      http: {url: "http://{{target}}/", body_contains: [OK]}
"""


def config_text(tmp_path: Path, source: str, extra: str = "") -> str:
    return textwrap.dedent(f"""
        server: {{listen: "127.0.0.1:0"}}
        state: {{path: {tmp_path / 'state.db'}}}
        discovery:
          - id: inv
        """) + textwrap.indent(textwrap.dedent(source).strip() + "\n" + textwrap.dedent(
        TEMPLATE).strip(), "    ") + "\n" + textwrap.dedent(extra)


def groups(*entries: tuple[list[str], dict[str, str]]) -> list[dict[str, Any]]:
    return [{"targets": t, "labels": labels} for t, labels in entries]


# ------------------------------------------------------------------- pure part


def _source(config: Config) -> Any:
    return config.discovery[0]


def test_groups_in_prometheus_format_and_every_bad_item_named() -> None:
    parsed = parse_groups([{"targets": ["a:1", "b:2"], "labels": {"team": "x"}},
                           {"targets": ["c:3"]}])
    assert parsed == [Group(("a:1", "b:2"), (("team", "x"),)), Group(("c:3",), ())]
    with pytest.raises(PathError) as exc:
        parse_groups([{"targets": "a:1"}, {"targets": ["", 5]}, "x",
                      {"targets": ["a"], "labels": {"t": 1}, "extra": 1}])
    where = {loc for loc, _ in exc.value.items}
    assert where == {(0, "targets"), (1, "targets", 0), (1, "targets", 1), (2,),
                     (3, "extra"), (3, "labels", "t")}
    with pytest.raises(PathError):
        parse_groups({"targets": ["a"]})


def test_placeholders_from_urls_and_host_port() -> None:
    assert placeholder_values("https://shop.example.com/health") == {
        "target": "https://shop.example.com/health", "url": "https://shop.example.com/health",
        "host": "shop.example.com", "port": "443"}
    assert placeholder_values("10.0.0.1:9100/x") == {
        "target": "10.0.0.1:9100/x", "url": "http://10.0.0.1:9100/x", "host": "10.0.0.1",
        "port": "9100"}
    assert placeholder_values("[::1]:53")["host"] == "::1"
    assert "port" not in placeholder_values("db.internal")


def test_ids_are_valid_and_stable() -> None:
    assert target_id("inv:https://a.example/x?y=1") == "inv:https:__a.example_x_y_1"
    long = target_id("x" * 300)
    assert len(long) == 128 and long == target_id("x" * 300) != target_id("x" * 299 + "y")


def test_render_merges_labels_and_hides_meta_labels(tmp_path: Path) -> None:
    config = parse_config(config_text(tmp_path, "file_sd: {files: [sd.json]}"))
    group = Group(("127.0.0.1:8080",), (("__meta_zone", "a"), ("team", "shop")))
    target = render(_source(config), group, "127.0.0.1:8080")
    assert target.id == "inv:127.0.0.1:8080"
    assert target.labels == {"source": "inventory", "team": "shop"}
    assert target.http is not None and target.http.url == "http://127.0.0.1:8080/"
    assert target.interval == 1.0
    with pytest.raises(EntryError, match="url"):
        render(_source(config), Group(("bad host:x",), ()), "bad host:x")
    with pytest.raises(EntryError, match="reserved"):
        render(_source(config), Group(("a:1",), (("slo", "x"),)), "a:1")


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        ('url: "http://{{target}}/"', "discovery[0].template.http.url",
         "unknown placeholder '{{nope}}'"),
        ("kind: http", "discovery[0].template.kind", "required"),
        ("timeout: 500ms", "discovery[0].template.timeout", "must be shorter than interval"),
        ("interval: 1s", "discovery[0].template.interval", "at least 1s"),
    ],
)
def test_template_checked_at_load(tmp_path: Path, change: str, where: str, message: str) -> None:
    replacement = {
        'url: "http://{{target}}/"': 'url: "http://{{target}}/{{nope}}"',
        "kind: http": "description: x",
        "timeout: 500ms": "timeout: 5s",
        "interval: 1s": "interval: 100ms",
    }[change]
    text = config_text(tmp_path, "file_sd: {files: [sd.json]}").replace(change, replacement)
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert any(e.startswith(where) and message in e for e in exc.value.errors), exc.value.errors


def test_template_fields_with_placeholders_are_left_to_each_entry(tmp_path: Path) -> None:
    # "{{target}}" alone is no URL: which it is depends on the entry
    text = config_text(tmp_path, "file_sd: {files: [sd.json]}").replace(
        '"http://{{target}}/"', '"{{target}}"')
    config = parse_config(text)
    target = render(_source(config), Group(("https://a.example/",), ()), "https://a.example/")
    assert target.http is not None and target.http.url == "https://a.example/"


def test_slo_needs_targets_or_a_selector_and_sla_needs_listed_targets(tmp_path: Path) -> None:
    base = config_text(tmp_path, "file_sd: {files: [sd.json]}")
    for slos, where, message in [
        ("slos: [{id: s, objective: 0.99}]", "slos[0].targets", "must not be empty"),
        ("slos: [{id: s, objective: 0.99, selector: {}}]", "slos[0].selector",
         "at least one"),
        ("targets: [{id: w, kind: tcp, tcp: {host: 127.0.0.1, port: 1}}]\n"
         "slos: [{id: s, objective: 0.99, selector: {a: b}, targets: [w]}]",
         "slos[0].selector", "not with `targets`"),
        ("slos: [{id: s, objective: 0.99, selector: {a: b}}]\n"
         "slas: [{id: g, slo: s, period: {kind: monthly}}]", "slas[0].slo", "selects its targets"),
    ]:
        with pytest.raises(ConfigError) as exc:
            parse_config(base + slos + "\n")
        assert any(e.startswith(where) and message in e for e in exc.value.errors), \
            exc.value.errors


def _found(config: Config, *entries: tuple[str, dict[str, str]]) -> dict[str, list[Target]]:
    source = _source(config)
    return {source.id: [render(source, Group((e,), tuple(sorted(lb.items()))), e)
                        for e, lb in entries]}


def test_selector_makes_one_slo_per_matching_target(tmp_path: Path) -> None:
    config = parse_config(config_text(tmp_path, "file_sd: {files: [sd.json]}", """
        targets:
          - {id: static, kind: tcp, labels: {team: shop}, tcp: {host: 127.0.0.1, port: 1}}
        slos:
          - {id: shop, objective: 0.99, selector: {team: shop}}
          - {id: fixed, objective: 0.9, targets: [static]}
        notify:
          channels: [{id: hook, kind: webhook, webhook: {url: "http://127.0.0.1:1/"}}]
          routes: [{channel: hook, slos: [shop]}]
        status_page: {public_slos: [shop]}
        """))
    running, problems = resolve(config, _found(
        config, ("127.0.0.1:1", {"team": "shop"}), ("127.0.0.1:2", {"team": "ops"})))
    assert problems == []
    assert [t.id for t in running.targets] == ["static", "inv:127.0.0.1:1", "inv:127.0.0.1:2"]
    by_id = {s.id: s for s in running.slos}
    assert set(by_id) == {"shop:static", "shop:inv:127.0.0.1:1", "fixed"}
    assert by_id["shop:inv:127.0.0.1:1"].targets == ["inv:127.0.0.1:1"]
    assert by_id["shop:static"].objective == 0.99
    assert running.notify is not None
    assert set(running.notify.routes[0].slos) == {"shop", "shop:static", "shop:inv:127.0.0.1:1"}
    assert running.status_page.public_slos is not None
    assert "shop:inv:127.0.0.1:1" in running.status_page.public_slos
    # the file config is untouched; a taken id is reported and left out
    assert [s.id for s in config.slos] == ["shop", "fixed"]
    clash = {"inv": [config.targets[0]]}
    again, problems = resolve(config, clash)
    assert len(again.targets) == 1 and "already defined" in problems[0]


def test_rules_for_a_selector_slo_pass_promtool(tmp_path: Path) -> None:
    config = parse_config(config_text(tmp_path, "file_sd: {files: [sd.json]}", """
        slos: [{id: shop.web, objective: 0.99, selector: {team: shop}}]
        """))
    rules = generate_rules(config)
    [group] = [g for g in rules["groups"] if g["name"] == "slamon-slo-shop.web"]
    exprs = "\n".join(r["expr"] for r in group["rules"])
    assert 'slo=~"shop\\\\.web:.+"' in exprs
    assert all("slo" not in r.get("labels", {}) for r in group["rules"])
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------ running daemon


class Watch:
    """Events from a daemon: each recorded probe and each applied config."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.changed = asyncio.Event()
        self.probed: dict[str, int] = {}
        self._probe = asyncio.Event()
        parts = daemon.parts
        # the scheduler's callback: the outcome is counted later, with its batch
        queue_result, apply_config = parts.queue_result, parts.apply_config

        def recorded(target: Target, scheduled: float, result: ProbeResult) -> None:
            queue_result(target, scheduled, result)
            self.probed[target.id] = self.probed.get(target.id, 0) + 1
            self._probe.set()

        def applied(new: Config, *prepared: Any) -> None:
            apply_config(new, *prepared)
            self.changed.set()

        parts.queue_result = recorded  # type: ignore[method-assign]
        parts.apply_config = applied  # type: ignore[method-assign]

    async def until(self, cond: Callable[[], bool], what: str, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                self._probe.clear()
                self.changed.clear()
                waiters = [asyncio.ensure_future(self._probe.wait()),
                           asyncio.ensure_future(self.changed.wait())]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
        assert cond(), what


def _ids(daemon: Daemon) -> set[str]:
    return {t.id for t in daemon.config.targets}


async def _metrics(daemon: Daemon) -> Any:
    import aiohttp

    assert daemon.server is not None
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{daemon.server.bound_port}/metrics") as resp:
        return parse_metrics(await resp.text())


async def test_file_sd_watched_history_kept_and_bad_writes_change_nothing(
        tmp_path: Path) -> None:
    sd = tmp_path / "sd"
    sd.mkdir()
    async with MisbehavingHttpServer() as a, MisbehavingHttpServer() as b:
        ta, tb = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
        (sd / "shop.json").write_text(json.dumps(groups(([ta], {"team": "shop"}))))
        text = config_text(tmp_path, "file_sd: {files: [sd/*.json], refresh_interval: 100ms}",
                           "slos: [{id: shop, objective: 0.9, selector: {team: shop}}]\n")
        (tmp_path / "slamon.yaml").write_text(text)
        config = parse_config(text, base_dir=tmp_path)
        daemon = Daemon(config, config_path=tmp_path / "slamon.yaml")
        watch = Watch(daemon)
        await daemon.start()
        try:
            ida, idb = f"inv:{ta}", f"inv:{tb}"
            # discovered before the first probe: the SLO is there from the start
            assert _ids(daemon) == {ida}
            assert {s.id for s in daemon.config.slos} == {f"shop:{ida}"}
            await watch.until(lambda: watch.probed.get(ida, 0) >= 2, "a probed twice")
            status_a = daemon.live.targets[ida]
            slo_a = daemon.live.slos[f"shop:{ida}"]
            # a new file adds a target and an SLO; a's state is the same object
            (sd / "more.json").write_text(json.dumps(groups(([tb], {"team": "shop"}))))
            await watch.until(lambda: idb in _ids(daemon), "b discovered")
            assert daemon.live.targets[ida] is status_a
            assert daemon.live.slos[f"shop:{ida}"] is slo_a
            assert f"shop:{idb}" in daemon.live.slos
            await watch.until(lambda: watch.probed.get(idb, 0) >= 1, "b probed")
            assert daemon.live.targets[idb].target.labels == {
                "source": "inventory", "team": "shop"}
            # a half-written file: nothing changes, the failure is counted
            (sd / "more.json").write_text('[{"targets": ["127.0.0.1:')
            source = daemon.discovery.sources["inv"]
            await watch.until(lambda: source.failures >= 1, "failure counted")
            assert _ids(daemon) == {ida, idb}
            samples = await _metrics(daemon)
            assert value(samples, "slamon_discovery_targets", discovery="inv") == 2
            failures = value(samples, "slamon_discovery_failures_total", discovery="inv")
            assert failures is not None and failures >= 1
            # a label change moves b out of the SLO; removing the file removes b
            (sd / "more.json").write_text(json.dumps(groups(([tb], {"team": "ops"}))))
            await watch.until(lambda: f"shop:{idb}" not in daemon.live.slos, "b left SLO")
            assert idb in _ids(daemon)
            (sd / "more.json").unlink()
            await watch.until(lambda: _ids(daemon) == {ida}, "b removed")
            assert daemon.live.targets[ida] is status_a
            assert daemon.live.slos[f"shop:{ida}"] is slo_a
        finally:
            await daemon.shutdown()


async def test_a_discovery_change_is_prepared_off_the_loop_and_waits_for_a_reload(
        tmp_path: Path) -> None:
    """A discovered change is worked out like a reload's (runtimes prepared before it is
    applied), and a reload and a discovery change apply one at a time: a reload started
    while a change is being prepared waits for it, and ends with both the file's edit
    and the discovered target."""
    sd = tmp_path / "sd"
    sd.mkdir()
    (sd / "a.json").write_text(json.dumps(groups((["127.0.0.1:1"], {"team": "shop"}))))
    path = tmp_path / "slamon.yaml"

    def write(objective: str) -> str:
        text = config_text(tmp_path, "file_sd: {files: [sd/*.json], refresh_interval: 100ms}",
                           f"slos: [{{id: shop, objective: {objective}, "
                           "selector: {team: shop}}]\n")
        path.write_text(text)
        return text

    read = threading.Event()  # the loader runs on a thread

    def loader(p: str | Path) -> Config:
        read.set()
        return parse_config(Path(p).read_text(), base_dir=tmp_path)

    daemon = Daemon(parse_config(write("0.9"), base_dir=tmp_path), config_path=path,
                    loader=loader)
    watch = Watch(daemon)
    parts = daemon.parts
    prepare_config = parts.prepare_config
    prepared: list[set[str]] = []
    hold, holding = asyncio.Event(), asyncio.Event()

    async def held(new: Config, *rest: Any) -> Any:
        prepared.append({t.id for t in new.targets})
        if len(new.targets) > 1:  # the change under test
            holding.set()
            await hold.wait()
        return await prepare_config(new, *rest)

    parts.prepare_config = held  # type: ignore[method-assign]
    await daemon.start()
    try:
        assert _ids(daemon) == {"inv:127.0.0.1:1"}
        (sd / "b.json").write_text(json.dumps(groups((["127.0.0.1:2"], {"team": "shop"}))))
        await asyncio.wait_for(holding.wait(), 20)
        assert prepared[-1] == {"inv:127.0.0.1:1", "inv:127.0.0.1:2"}
        assert _ids(daemon) == {"inv:127.0.0.1:1"}  # prepared first, applied after
        write("0.95")
        reload = asyncio.create_task(daemon.reload())
        # a reload not held back reads the file at once (a bound: it must not happen)
        assert not await asyncio.to_thread(read.wait, 0.5), \
            "the reload ran while a discovery change was applied"
        assert not reload.done()
        hold.set()
        assert await asyncio.wait_for(reload, 20)
        await watch.until(lambda: len(_ids(daemon)) == 2, "b discovered")
        assert {s.objective for s in daemon.config.slos} == {0.95}
        assert {s.id for s in daemon.config.slos} == {
            "shop:inv:127.0.0.1:1", "shop:inv:127.0.0.1:2"}
    finally:
        hold.set()
        await daemon.shutdown()


async def test_bad_entries_are_left_out_and_the_rest_probed(tmp_path: Path) -> None:
    (tmp_path / "sd.yaml").write_text(yaml.safe_dump(groups(
        (["127.0.0.1:1", "not a host:x", "127.0.0.1:1"], {}))))
    text = config_text(tmp_path, "file_sd: {files: [sd.yaml]}")
    daemon = Daemon(parse_config(text, base_dir=tmp_path), config_path=tmp_path / "c.yaml")
    await daemon.start()
    try:
        assert _ids(daemon) == {"inv:127.0.0.1:1"}
        assert daemon.discovery.sources["inv"].invalid_entries == 1
    finally:
        await daemon.shutdown()


class SdServer:
    """Prometheus' HTTP SD contract on 127.0.0.1: a JSON list of groups, or a failure."""

    def __init__(self) -> None:
        self.body: Any = []
        self.status = 200
        self.requests: list[dict[str, str]] = []
        self.served = asyncio.Event()
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        self.served.set()
        if self.status != 200:
            return web.Response(status=self.status)
        return web.json_response(self.body)

    async def __aenter__(self) -> SdServer:
        app = web.Application()
        app.router.add_get("/sd", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


async def test_http_sd_polled_failures_keep_targets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SD_TOKEN", "s3cret-token")
    async with SdServer() as sd, MisbehavingHttpServer() as a, MisbehavingHttpServer() as b:
        ta, tb = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
        sd.body = groups(([ta], {"team": "shop"}))
        text = config_text(tmp_path, f"""
            http_sd:
              url: "http://127.0.0.1:{sd.port}/sd"
              refresh_interval: 200ms
              headers: {{Authorization: "Bearer ${{SD_TOKEN}}"}}
            """)
        config = parse_config(text, env={"SD_TOKEN": "s3cret-token"})
        daemon = Daemon(config)
        watch = Watch(daemon)
        await daemon.start()
        try:
            assert _ids(daemon) == {f"inv:{ta}"}
            first = sd.requests[0]
            assert first["Authorization"] == "Bearer s3cret-token"
            assert first["X-Prometheus-Refresh-Interval-Seconds"] == "0.2"
            await watch.until(lambda: watch.probed.get(f"inv:{ta}", 0) >= 1, "a probed")
            status_a = daemon.live.targets[f"inv:{ta}"]
            # the SD server fails: the targets stay
            sd.status = 500
            source = daemon.discovery.sources["inv"]
            await watch.until(lambda: source.failures >= 1, "failure counted")
            sd.body, sd.status = "not a list", 200
            await watch.until(lambda: source.failures >= 2, "bad body counted")
            assert _ids(daemon) == {f"inv:{ta}"}
            sd.body = groups(([ta, tb], {"team": "shop"}))
            await watch.until(lambda: f"inv:{tb}" in _ids(daemon), "b discovered")
            assert daemon.live.targets[f"inv:{ta}"] is status_a
            await watch.until(lambda: watch.probed.get(f"inv:{tb}", 0) >= 1, "b probed")
            sd.body = []
            await watch.until(lambda: not _ids(daemon), "all removed")
        finally:
            await daemon.shutdown()


async def test_reload_keeps_an_unchanged_source_and_its_targets(tmp_path: Path) -> None:
    (tmp_path / "sd.json").write_text(json.dumps(groups((["127.0.0.1:1"], {}))))
    path = tmp_path / "slamon.yaml"
    text = config_text(tmp_path, "file_sd: {files: [sd.json]}")
    path.write_text(text)
    daemon = Daemon(parse_config(text, base_dir=tmp_path), config_path=path,
                    loader=lambda p: parse_config(Path(p).read_text(), base_dir=tmp_path))
    await daemon.start()
    try:
        source = daemon.discovery.sources["inv"]
        status = daemon.live.targets["inv:127.0.0.1:1"]
        path.write_text(text + "slos: [{id: all, objective: 0.9, selector: {source: inventory}}]\n")
        assert await daemon.reload()
        assert daemon.discovery.sources["inv"] is source
        assert daemon.live.targets["inv:127.0.0.1:1"] is status
        assert "all:inv:127.0.0.1:1" in daemon.live.slos
        # a changed source is read afresh; its targets come from the new definition
        path.write_text(text.replace("interval: 1s", "interval: 2s"))
        assert await daemon.reload()
        assert daemon.discovery.sources["inv"] is not source
        assert daemon.config.targets[0].interval == 2.0
    finally:
        await daemon.shutdown()


async def test_restart_restores_the_windows_of_a_discovered_target(tmp_path: Path) -> None:
    async with MisbehavingHttpServer() as a:
        entry = f"127.0.0.1:{a.port}"
        (tmp_path / "sd.json").write_text(json.dumps(groups(([entry], {"team": "shop"}))))
        text = config_text(tmp_path, "file_sd: {files: [sd.json]}",
                           "slos: [{id: shop, objective: 0.9, selector: {team: shop}}]\n")
        slo_id = f"shop:inv:{entry}"

        def good(daemon: Daemon) -> int:
            now = time.time() + 1
            return daemon.live.slos[slo_id].counts(now, 3600.0)[0]

        first = Daemon(parse_config(text, base_dir=tmp_path))
        watch = Watch(first)
        await first.start()
        try:
            await watch.until(lambda: good(first) >= 2, "two good events")
        finally:
            await first.shutdown()
        kept = good(first)
        second = Daemon(parse_config(text, base_dir=tmp_path))
        # held before the scheduler runs: the first probe of the second run comes later
        second.parts.build_scheduler = _paused(second.parts.build_scheduler)  # type: ignore[method-assign]
        await second.start()
        try:
            assert good(second) == kept >= 2
        finally:
            await second.shutdown()


def _paused(build: Callable[[], Any]) -> Callable[[], Any]:
    """The scheduler `build` makes, with no targets: nothing is probed."""
    def make() -> Any:
        scheduler = build()
        scheduler.update_targets([])
        return scheduler
    return make
