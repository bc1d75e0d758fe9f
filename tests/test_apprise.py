"""The Apprise channel against real receivers on 127.0.0.1: Apprise's json://,
form:// and ntfy:// services post to an aiohttp server here, driven end to end
through the config, the channel's builder and the router (retries, metrics,
filters), with the secret URL from the environment and from a file kept out of
logs, errors and reprs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
import structlog
from aiohttp import web

from slamon.channels.apprise import INSTALL_HINT, AppriseChannel, AppriseNotifier
from slamon.channels.base import DeliveryError
from slamon.config.loader import ConfigError, parse_config
from slamon.config.notify import NotifyConfig
from slamon.notify import Dispatcher
from slamon.notify.messages import build_message
from slamon.notify.router import build_notifiers
from slamon.util.events import Event, EventKind
from tests.misbehaving import serve
from tests.test_notify import down, metric_values, up, wait_for

TOKEN = "tk-apprise-do-not-leak"


@dataclass
class Receiver:
    """Records every request by path; `script[path]` says what to answer the n-th one."""

    script: dict[str, list[str]] = field(default_factory=dict)  # "ok" | "500" | "hang"
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)
    accepted: list[tuple[str, str, bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        record = (request.path, request.headers.get("Content-Type", ""), body)
        seen = sum(1 for path, _, _ in self.requests if path == request.path)
        self.requests.append(record)
        plan = self.script.get(request.path, [])
        action = plan[seen] if seen < len(plan) else "ok"
        if action == "hang":
            await self.release.wait()
        if action == "500":
            return web.Response(status=500, text="boom")
        self.accepted.append(record)
        return web.Response(status=200, text="{}", content_type="application/json")

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner, rec.port = await serve(app, shutdown_timeout=0.1)
    yield rec
    rec.release.set()
    await runner.cleanup()


def apprise_cfg(urls: list[Any], route: dict[str, Any] | None = None,
                **delivery: Any) -> NotifyConfig:
    return NotifyConfig.model_validate({
        "channels": [{"id": "ap", "kind": "apprise", "apprise": {"urls": urls}}],
        "routes": [{"channel": "ap", **(route or {})}],
        "defaults": {"failure_threshold": 1, "success_threshold": 1, "repeat_interval": 0},
        "delivery": {"timeout": "2s", "retries": 3, "backoff": "50ms",
                     "max_backoff": "200ms", **delivery},
    })


def config_doc(apprise: dict[str, Any]) -> str:
    return json.dumps({
        "targets": [{"id": "web", "kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 9}}],
        "notify": {"channels": [{"id": "ap", "kind": "apprise", "apprise": apprise}],
                   "routes": [{"channel": "ap"}]},
    })


def config_errors(apprise: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(config_doc(apprise), env=env)
    return err.value.errors


# -- delivery -------------------------------------------------------------------------


async def test_json_form_and_ntfy_receive_title_and_body(receiver: Receiver) -> None:
    base = f"127.0.0.1:{receiver.port}"
    cfg = apprise_cfg([f"json://{base}/json", f"form://{base}/form", f"ntfy://{base}/alerts"])
    d = Dispatcher(cfg)
    await d.start()
    d.handle(down())
    await wait_for(lambda: len(receiver.accepted) == 3)
    d.handle(up())
    # the receivers have both messages a moment before the sender counts the second
    await wait_for(lambda: len(receiver.accepted) == 6 and d.route("ap#0").sent == 2)
    m = metric_values(d)
    await d.stop()
    firing = {path: (ctype, body) for path, ctype, body in receiver.accepted[:3]}
    resolved = {path: (ctype, body) for path, ctype, body in receiver.accepted[3:]}
    assert set(firing) == set(resolved) == {"/json", "/form", "/"}

    ctype, body = firing["/json"]
    doc = json.loads(body)
    assert ctype.startswith("application/json")
    assert doc["title"] == "[slamon] [FIRING] Target down: web" and doc["type"] == "failure"
    assert "web failed" in doc["message"] and "target_down" in doc["message"]
    assert json.loads(resolved["/json"][1])["type"] == "success"
    assert json.loads(resolved["/json"][1])["title"].startswith("[slamon] [RESOLVED] Target up")

    ctype, body = firing["/form"]
    form = parse_qs(body.decode())
    assert ctype.startswith("application/x-www-form-urlencoded")
    assert form["title"] == ["[slamon] [FIRING] Target down: web"]
    assert "web failed" in form["message"][0] and form["type"] == ["failure"]

    ntfy = json.loads(firing["/"][1])
    assert ntfy["topic"] == "alerts" and ntfy["title"] == "[slamon] [FIRING] Target down: web"
    assert "web failed" in ntfy["message"]

    # the idempotency key, by which a human can tell a duplicate
    firing_key = next(iter(d.route("ap#0").delivered))
    assert doc["message"].endswith(f"slamon · target_down · key {firing_key}")
    assert m[("slamon_notifications_sent_total", ("ap#0", "ap"))] == 2


async def test_500_is_retried_only_to_the_url_that_failed(receiver: Receiver) -> None:
    receiver.script = {"/b": ["500"]}
    base = f"127.0.0.1:{receiver.port}"
    d = Dispatcher(apprise_cfg([f"json://{base}/a", f"json://{base}/b"]))
    await d.start()
    d.handle(down())
    await wait_for(lambda: d.route("ap#0").sent == 1)
    m = metric_values(d)
    await d.stop()
    # /a accepted the first attempt and is not sent the retry: no duplicate there
    assert sorted(receiver.paths()) == ["/a", "/b", "/b"]
    assert m[("slamon_notifications_failed_total", ("ap#0", "ap", "apprise"))] == 1
    assert m[("slamon_notifications_retries_total", ("ap#0", "ap"))] == 1
    assert m[("slamon_notifications_sent_total", ("ap#0", "ap"))] == 1


async def test_dead_receiver_gives_up_and_counts(receiver: Receiver) -> None:
    receiver.script = {"/dead": ["500"] * 10}
    d = Dispatcher(apprise_cfg([f"form://127.0.0.1:{receiver.port}/dead"], retries=2))
    await d.start()
    d.handle(down())
    await wait_for(lambda: d.route("ap#0").dropped.get("gave_up") == 1)
    m = metric_values(d)
    await d.stop()
    assert receiver.paths() == ["/dead"] * 3
    assert m[("slamon_notifications_failed_total", ("ap#0", "ap", "apprise"))] == 3
    assert m[("slamon_notifications_dropped_total", ("ap#0", "gave_up"))] == 1
    assert m[("slamon_notifications_sent_total", ("ap#0", "ap"))] == 0


async def test_hanging_receiver_times_out_without_blocking_the_loop(receiver: Receiver) -> None:
    receiver.script = {"/slow": ["hang"]}
    d = Dispatcher(apprise_cfg([f"json://127.0.0.1:{receiver.port}/slow"], timeout="300ms"))
    await d.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    d.handle(down())
    await wait_for(lambda: len(receiver.requests) == 1)
    # the event loop keeps turning while Apprise waits (it sends from a worker thread)
    lag0 = loop.time()
    await asyncio.sleep(0)
    assert loop.time() - lag0 < 0.1
    await wait_for(lambda: d.route("ap#0").sent == 1)
    m = metric_values(d)
    await d.stop()
    assert loop.time() - t0 < 3.0
    assert len(receiver.requests) == 2 and len(receiver.accepted) == 1
    assert m[("slamon_notifications_failed_total", ("ap#0", "ap", "timeout"))] == 1


async def test_routes_filter_and_dedup_apply(receiver: Receiver) -> None:
    url = f"json://127.0.0.1:{receiver.port}/only-sla"
    d = Dispatcher(apprise_cfg([url], route={"events": ["sla_breached"]}))
    await d.start()
    d.handle(down())  # not this route's event
    breach = Event(EventKind.SLA_BREACHED, 1000.0, sla="gold", summary="gold breached")
    d.handle(breach)
    await wait_for(lambda: d.route("ap#0").sent == 1)
    d.handle(breach)  # the same notification again: the delivered key is never re-sent
    await d.stop()
    assert len(receiver.requests) == 1
    assert json.loads(receiver.accepted[0][2])["title"] == "[slamon] [FIRING] SLA breached: gold"


async def test_title_prefix_and_direct_delivery_error(receiver: Receiver) -> None:
    receiver.script = {"/x": ["500"]}
    cfg = NotifyConfig.model_validate({
        "channels": [{"id": "ap", "kind": "apprise", "apprise": {
            "urls": [f"json://127.0.0.1:{receiver.port}/ok",
                     f"json://127.0.0.1:{receiver.port}/x"],
            "title_prefix": "[acme]", "timeout": "2s"}}],
        "routes": [{"channel": "ap"}],
    })
    async with aiohttp.ClientSession() as session:
        notifier = build_notifiers(cfg, session)["ap"]
    assert isinstance(notifier, AppriseNotifier)
    assert repr(notifier) == "AppriseNotifier(name='ap', urls=2)"
    message = build_message(down(), "ap#0", "firing", 1000.0)
    with pytest.raises(DeliveryError) as err:
        await notifier.send(message)
    assert err.value.reason == "apprise" and err.value.retryable
    assert str(err.value) == "apprise: urls[1] (JSON) failed"
    await notifier.send(message)  # the retry: only /x again
    assert sorted(receiver.paths()) == ["/ok", "/x", "/x"]
    ok = next(body for path, _, body in receiver.accepted if path == "/ok")
    assert json.loads(ok)["title"] == "[acme] [FIRING] Target down: web"


# -- secrets ------------------------------------------------------------------------------


class RootRecords(logging.Handler):
    """What slamon's own log handler sees: it sits on the root logger, as this one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()}")


async def test_secret_url_from_env_and_file_never_shown(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = {f"/env/{TOKEN}": ["500"] * 10, f"/file/{TOKEN}": ["500"] * 10}
    secret_file = tmp_path / "apprise.url"
    secret_file.write_text(f"form://127.0.0.1:{receiver.port}/file/{TOKEN}\n")
    env = {"AP_URL": f"json://127.0.0.1:{receiver.port}/env/{TOKEN}"}
    config = parse_config(config_doc({"urls": ["${AP_URL}", {"url_file": str(secret_file)}]}),
                          env=env)
    assert config.notify is not None
    cfg = config.notify.model_copy(update={"delivery": config.notify.delivery.model_copy(
        update={"retries": 1, "backoff": 0.05, "max_backoff": 0.1, "timeout": 2.0})})
    caplog.set_level(logging.DEBUG)  # the root logger at DEBUG, restored afterwards
    root = RootRecords()
    logging.getLogger().addHandler(root)
    try:
        await _run_with_secrets(receiver, cfg, root)
    finally:
        logging.getLogger().removeHandler(root)


async def _run_with_secrets(receiver: Receiver, cfg: NotifyConfig, root: RootRecords) -> None:
    with structlog.testing.capture_logs() as logs:
        d = Dispatcher(cfg)
        await d.start()
        d.handle(down())
        await wait_for(lambda: d.route("ap#0").dropped.get("gave_up") == 1)
        m = metric_values(d)
        shown = [repr(d.route("ap#0").notifier), repr(cfg), str(m)]
        await d.stop()
    # both URLs were used (the token is in the paths the receiver saw) ...
    assert sorted(receiver.paths()) == sorted([f"/env/{TOKEN}", f"/file/{TOKEN}"] * 2)
    receiver.requests.clear()
    # ... and the token is nowhere else: structlog events, standard logging (Apprise's
    # and urllib3's debug lines quote URLs), metrics, reprs, the failure itself
    async with aiohttp.ClientSession() as session:
        notifier = build_notifiers(cfg, session)["ap"]
    with pytest.raises(DeliveryError) as err:
        await notifier.send(build_message(down(), "ap#0", "firing", 1000.0))
    assert str(err.value) == "apprise: urls[0] (JSON) failed, urls[1] (Form) failed"
    # a DEBUG record reaches the root handler, so the check below means something
    logging.getLogger("tests.apprise").debug("probe")
    assert "tests.apprise probe" in root.lines
    assert TOKEN not in repr(logs)
    assert not [line for line in root.lines if TOKEN in line]
    for text in [*shown, repr(notifier)]:
        assert TOKEN not in text, text


def test_bad_scheme_from_env_is_an_error_without_the_secret() -> None:
    errors = config_errors({"urls": ["json://127.0.0.1:9/x", "${AP_URL}"]},
                           env={"AP_URL": f"nosuch://{TOKEN}@127.0.0.1/x"})
    assert errors == ["notify.channels[0].apprise.urls[1]: unknown Apprise scheme 'nosuch'"]


async def test_bad_url_in_file_fails_the_build_naming_channel_and_index(tmp_path: Path) -> None:
    bad = tmp_path / "bad.url"
    bad.write_text(f"nosuch://{TOKEN}\n")
    cfg = apprise_cfg(["json://127.0.0.1:9/x", {"url_file": str(bad)}])
    missing = apprise_cfg([{"url_file": str(tmp_path / "absent")}])
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError) as err:
            build_notifiers(cfg, session)
        with pytest.raises(OSError):
            build_notifiers(missing, session)
    assert str(err.value) == ("notify channel 'ap': apprise urls[1] (url_file): "
                              "unknown Apprise scheme 'nosuch'")


# -- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apprise", "expected"),
    [
        ({"urls": []}, "notify.channels[0].apprise.urls: "),
        ({}, "notify.channels[0].apprise.urls: missing required key"),
        ({"urls": ["ftp-but-no-scheme"]},
         "notify.channels[0].apprise.urls[0]: not an Apprise URL"),
        ({"urls": ["nosuch://host/x"]},
         "notify.channels[0].apprise.urls[0]: unknown Apprise scheme 'nosuch'"),
        ({"urls": [f"slack://{TOKEN}/B/C"]},
         "notify.channels[0].apprise.urls[0]: not a valid slack:// URL"),
        ({"urls": [{"url": "json://h/x", "url_file": "/f"}]},
         "notify.channels[0].apprise.urls[0].url_file: use either url or url_file, not both"),
        ({"urls": [{}]},
         "notify.channels[0].apprise.urls[0].url: set one of url or url_file"),
        ({"urls": [""]}, "notify.channels[0].apprise.urls[0].url: must not be empty"),
        ({"urls": ["json://h/x"], "timeout": "0s"},
         "notify.channels[0].apprise.timeout: must be greater than 0"),
        ({"urls": ["json://h/x"], "typo": 1}, "notify.channels[0].apprise.typo"),
    ],
)
def test_config_errors_are_clear(apprise: dict[str, Any], expected: str) -> None:
    errors = config_errors(apprise)
    assert len(errors) == 1 and errors[0].startswith(expected), errors
    assert TOKEN not in errors[0]


def test_without_the_library_one_line_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise -> ImportError
    errors = config_errors({"urls": ["json://127.0.0.1:9/x"]})
    assert errors == [f"notify.channels[0].apprise: {INSTALL_HINT}"]
    assert "pip install 'slamon[apprise]'" in errors[0]


def test_module_imports_without_the_library() -> None:
    code = ("import sys; sys.modules['apprise'] = None\n"
            "import slamon.channels, slamon.config.notify\n"
            "from slamon.channels.apprise import AppriseChannel\n"
            "print(sorted(slamon.channels.CHANNELS))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "apprise" in res.stdout and "webhook" in res.stdout
    assert AppriseChannel.model_fields["urls"].is_required()
