"""Notifications against real local receivers: an aiohttp webhook / Slack /
Alertmanager receiver and an aiosmtpd SMTP server on 127.0.0.1, including
receivers that hang and that answer 500. Routing logic (thresholds, filters,
reminders, resolution) is checked with a fake clock and a recording channel;
"probing is unaffected" runs the real Scheduler against a misbehaving server
while every notification goes to a hanging endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import Metric
from structlog.testing import capture_logs

from slamon.channels.alertmanager import AlertmanagerNotifier
from slamon.channels.base import DeliveryError, Notifier
from slamon.channels.email import EmailNotifier
from slamon.channels.slack import SlackNotifier
from slamon.channels.webhook import WebhookNotifier, sign
from slamon.config.notify import NotifyConfig
from slamon.config.root import Config
from slamon.notify import BurnWatch, CertWatch, Dispatcher, Message, burn_alerts, live_streak
from slamon.notify.router import build_notifiers
from slamon.probers.base import ProbeResult
from slamon.scheduler import Scheduler
from slamon.sli.live import LiveState, TargetStatus
from slamon.sli.slo import SloState
from slamon.util.events import Event, EventBus, EventKind
from slamon.util.pace import Pacer
from tests.misbehaving import MisbehavingHttpServer, free_port, serve

SECRET = "hmac-key-do-not-leak"


# -- receivers ------------------------------------------------------------------

@dataclass
class Receiver:
    """Records every request; `script` says what to do with the n-th one."""

    script: list[str] = field(default_factory=list)  # "ok" | "500" | "hang" | "400"
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    accepted: list[bytes] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        n = len(self.requests)
        self.requests.append((request.path, dict(request.headers), body))
        action = self.script[n] if n < len(self.script) else "ok"
        if action == "hang":
            # the request is processed (as if the answer were lost), then nothing comes back
            self.accepted.append(body)
            await asyncio.sleep(30)
        if action == "500":
            return web.Response(status=500, text="boom")
        if action == "400":
            return web.Response(status=400, text="bad")
        self.accepted.append(body)
        return web.Response(status=200, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner, port = await serve(app, shutdown_timeout=0.1)
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()


class SmtpHandler:
    def __init__(self) -> None:
        self.script: list[str] = []
        self.calls = 0
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.calls += 1
        action = self.script[self.calls - 1] if self.calls <= len(self.script) else "ok"
        if action == "451":
            return "451 4.3.0 try again later"
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Any:
    handler = SmtpHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


# -- helpers ----------------------------------------------------------------------

def notify_cfg(**delivery: Any) -> NotifyConfig:
    return NotifyConfig.model_validate({
        "channels": [{"id": "hook", "kind": "webhook",
                      "webhook": {"url": "http://127.0.0.1:9/", "hmac_secret": SECRET}}],
        "routes": [{"channel": "hook", "events": ["target_down", "burn_rate_firing",
                                                  "sla_breached", "report_published",
                                                  "cert_expiring"]}],
        "defaults": {"failure_threshold": 1, "success_threshold": 1, "repeat_interval": 0},
        "delivery": {"timeout": "300ms", "retries": 3, "backoff": "50ms",
                     "max_backoff": "200ms", **delivery},
    })


def down(target: str = "web", at: float = 1000.0, **labels: str) -> Event:
    return Event(EventKind.TARGET_DOWN, at, target=target, labels=labels,
                 summary=f"{target} failed", details={"reason": "status"})


def up(target: str = "web", at: float = 1010.0, **labels: str) -> Event:
    return Event(EventKind.TARGET_UP, at, target=target, labels=labels)


async def wait_for(pred: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def dispatching(
    make: Callable[[aiohttp.ClientSession], Notifier], **delivery: Any
) -> AsyncIterator[Dispatcher]:
    """A started Dispatcher whose one route sends through `make(session)`; stopped on leaving."""
    async with aiohttp.ClientSession() as session:
        d = Dispatcher(notify_cfg(**delivery), notifiers={"hook": make(session)})
        await d.start()
        try:
            yield d
        finally:
            await d.stop()


def metric_values(d: Dispatcher) -> dict[tuple[str, tuple[str, ...]], float]:
    out: dict[tuple[str, tuple[str, ...]], float] = {}
    fam: Metric
    for fam in d.metrics():
        for s in fam.samples:
            out[(s.name, tuple(s.labels.values()))] = s.value
    return out


class Recorder:
    """An in-memory channel, for the routing rules (the real channels are below)."""

    kind = "memory"

    def __init__(self) -> None:
        self.name = "hook"
        self.sent: list[Message] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def close(self) -> None:
        return None


# -- real channels -----------------------------------------------------------------

async def test_webhook_signed_json(receiver: Receiver) -> None:
    url = receiver.url + "/hook"
    async with dispatching(lambda s: WebhookNotifier("hook", url, s, secret=SECRET.encode())) as d:
        d.handle(down())
        await wait_for(lambda: len(receiver.accepted) == 1)
    _path, headers, body = receiver.requests[0]
    doc = json.loads(body)
    assert doc["status"] == "firing" and doc["event"] == "target_down"
    assert doc["target"] == "web" and doc["idempotency_key"] == headers["Idempotency-Key"]
    ts = headers["X-Slamon-Timestamp"]
    expected = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    assert headers["X-Slamon-Signature"] == expected == sign(SECRET.encode(), ts, body)
    assert SECRET not in body.decode()


async def test_500_is_retried_then_delivered_once(receiver: Receiver) -> None:
    receiver.script = ["500", "500"]
    async with dispatching(lambda s: WebhookNotifier("hook", receiver.url, s)) as d:
        d.handle(down())
        await wait_for(lambda: len(receiver.accepted) == 1)
        await asyncio.sleep(0.3)  # nothing else comes
        m = metric_values(d)
    assert len(receiver.requests) == 3 and len(receiver.accepted) == 1
    keys = {h["Idempotency-Key"] for _, h, _ in receiver.requests}
    assert len(keys) == 1  # every retry carries the same key
    assert m[("slamon_notifications_failed_total", ("hook#0", "hook", "http_5xx"))] == 2
    assert m[("slamon_notifications_sent_total", ("hook#0", "hook"))] == 1
    assert m[("slamon_notifications_retries_total", ("hook#0", "hook"))] == 2


async def test_hanging_receiver_times_out_and_retry_has_same_key(receiver: Receiver) -> None:
    receiver.script = ["hang"]
    async with dispatching(lambda s: WebhookNotifier("hook", receiver.url, s)) as d:
        t0 = time.monotonic()
        d.handle(down())
        await wait_for(lambda: len(receiver.requests) == 2)
        assert time.monotonic() - t0 < 2.0  # the 300 ms timeout cut the first attempt
        await wait_for(lambda: d.route("hook#0").sent == 1)
        d.handle(down(at=2000.0, target="db"))  # the route keeps working afterwards
        await wait_for(lambda: d.route("hook#0").sent == 2)
        m = metric_values(d)
    (_, h1, b1), (_, h2, b2) = receiver.requests[:2]
    # the receiver processed the first one: the retry is recognisable as a duplicate
    assert h1["Idempotency-Key"] == h2["Idempotency-Key"] and b1 == b2
    assert len(receiver.requests) == 3
    assert m[("slamon_notifications_failed_total", ("hook#0", "hook", "timeout"))] == 1


async def test_dead_endpoint_gives_up_and_counts(receiver: Receiver) -> None:
    receiver.script = ["500"] * 10
    async with dispatching(lambda s: WebhookNotifier("hook", receiver.url, s), retries=2) as d:
        d.handle(down())
        await wait_for(lambda: d.route("hook#0").dropped.get("gave_up") == 1)
        m = metric_values(d)
    assert len(receiver.requests) == 3
    assert m[("slamon_notifications_dropped_total", ("hook#0", "gave_up"))] == 1
    assert m[("slamon_notifications_sent_total", ("hook#0", "hook"))] == 0


async def test_4xx_is_not_retried(receiver: Receiver) -> None:
    receiver.script = ["400"]
    async with dispatching(lambda s: WebhookNotifier("hook", receiver.url, s)) as d:
        d.handle(down())
        await wait_for(lambda: d.route("hook#0").dropped.get("gave_up") == 1)
        # the route lives on after giving up: the next event is delivered
        d.handle(up())
        await wait_for(lambda: d.route("hook#0").sent == 1)
    assert len(receiver.requests) == 2


async def test_refused_port_counts_connect_failures() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    async with dispatching(lambda s: WebhookNotifier("hook", url, s), retries=1) as d:
        d.handle(down())
        await wait_for(lambda: d.route("hook#0").dropped.get("gave_up") == 1)
        assert d.route("hook#0").failed == {"connect": 2}


async def test_slack_payload(receiver: Receiver) -> None:
    url = receiver.url + "/services/T/B/X"
    async with dispatching(lambda s: SlackNotifier("hook", url, s, channel="#ops")) as d:
        d.handle(down(team="<shop>"))
        d.handle(up(team="<shop>"))
        await wait_for(lambda: len(receiver.accepted) == 2)
    first, second = (json.loads(b) for b in receiver.accepted)
    assert first["channel"] == "#ops" and ":red_circle:" in first["text"]
    assert "Target down: web" in first["text"] and "team=&lt;shop&gt;" in first["text"]
    assert first["blocks"][0]["text"]["type"] == "mrkdwn"
    assert ":large_green_circle:" in second["text"] and "Target up" in second["text"]


async def test_alertmanager_push(receiver: Receiver) -> None:
    async with dispatching(
            lambda s: AlertmanagerNotifier("hook", [receiver.url], s, refresh=60)) as d:
        d.handle(down(team="shop"))
        d.handle(up(team="shop"))
        await wait_for(lambda: len(receiver.accepted) == 2)
    assert {p for p, _, _ in receiver.requests} == {"/api/v2/alerts"}
    (fired,), (resolved,) = (json.loads(b) for b in receiver.accepted)
    assert fired["labels"] == resolved["labels"] == {
        "alertname": "SlamonTargetDown", "target": "web", "team": "shop", "severity": "page"}
    assert fired["endsAt"] > fired["startsAt"]
    assert resolved["endsAt"] <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
    assert fired["annotations"]["idempotency_key"] != resolved["annotations"]["idempotency_key"]


async def test_alertmanager_refresh_keeps_alert_firing() -> None:
    rec = Recorder()
    d = Dispatcher(notify_cfg(), notifiers={"hook": rec}, clock=lambda: now)
    rec.refresh = 60.0  # type: ignore[attr-defined]  # what AlertmanagerNotifier exposes
    now = 1000.0
    d._build_routes()
    d.handle(down())
    now = 1061.0
    d.tick()
    assert [m.reminder for m in d.route("hook#0").queue] == [0, 1]


async def test_email_via_smtp(smtp: Any) -> None:
    controller, handler = smtp
    handler.script = ["451"]
    mail = EmailNotifier("hook", host="127.0.0.1", port=controller.port, security="none",
                         sender="slamon@example.org", to=["ops@example.org"], timeout=5)
    d = Dispatcher(notify_cfg(timeout="5s"), notifiers={"hook": mail})
    await d.start()
    d.handle(Event(EventKind.REPORT_PUBLISHED, 1000.0, sla="gold",
                   details={"tx_hash": "0x" + "ab" * 32, "period": 7}))
    await wait_for(lambda: len(handler.messages) == 1, timeout=10)
    m = metric_values(d)
    await d.stop()
    assert handler.calls == 2  # 451 (temporary) was retried
    assert m[("slamon_notifications_failed_total", ("hook#0", "hook", "smtp_4xx"))] == 1
    sender, rcpt, raw = handler.messages[0]
    msg = message_from_bytes(raw)
    assert sender == "slamon@example.org" and rcpt == ["ops@example.org"]
    assert "SLA report published" in msg["Subject"] and "[INFO]" in msg["Subject"]
    assert msg["Message-ID"].startswith("<") and msg["X-Slamon-Idempotency-Key"] in msg[
        "Message-ID"]
    assert "0x" + "ab" * 32 in msg.get_payload()


async def test_email_permanent_failure_not_retried(smtp: Any) -> None:
    controller, handler = smtp
    mail = EmailNotifier("hook", host="127.0.0.1", port=controller.port, security="none",
                         sender="slamon@example.org", to=["ops@example.org"], timeout=5)
    handler.script = []
    msg = Message("k", "r", "firing", EventKind.TARGET_DOWN, "c", "t", "text", 0.0, 0.0)
    await mail.send(msg)
    assert len(handler.messages) == 1
    bad = EmailNotifier("hook", host="127.0.0.1", port=free_port(), security="none",
                        sender="s@example.org", to=["o@example.org"], timeout=2)
    with pytest.raises(DeliveryError) as err:
        await bad.send(msg)
    assert err.value.reason == "connect" and err.value.retryable


async def test_build_notifiers_from_config(tmp_path: Any) -> None:
    key = tmp_path / "key"
    key.write_text("filekey\n")
    cfg = NotifyConfig.model_validate({
        "channels": [
            {"id": "w", "kind": "webhook",
             "webhook": {"url": "http://127.0.0.1:9/", "hmac_secret_file": str(key)}},
            {"id": "s", "kind": "slack", "slack": {"url": "https://hooks.example/T/B/X"}},
            {"id": "e", "kind": "email", "email": {"host": "127.0.0.1", "from": "a@b.c",
                                                  "to": ["d@e.f"], "security": "none"}},
            {"id": "a", "kind": "alertmanager", "alertmanager": {"urls": ["http://am:9093"]}},
        ],
        "routes": [{"channel": "w"}, {"channel": "a", "id": "am"}],
    })
    async with aiohttp.ClientSession() as session:
        built = build_notifiers(cfg, session)
    assert {k: v.kind for k, v in built.items()} == {
        "w": "webhook", "s": "slack", "e": "email", "a": "alertmanager"}
    assert built["w"]._secret == b"filekey"  # type: ignore[attr-defined]
    assert cfg.route_id(0) == "w#0" and cfg.route_id(1) == "am"


def test_config_errors_do_not_echo_secrets() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        NotifyConfig.model_validate({
            "channels": [{"id": "w", "kind": "webhook",
                          "webhook": {"url": "ftp://user:topsecret@x/"}}],
            "routes": [{"channel": "nope"}],
        })
    # the messages the loader prints (pydantic's own repr also shows the input)
    messages = " ".join(str(e["msg"]) for e in err.value.errors())
    assert "topsecret" not in messages and "must be an http" in messages




@pytest.mark.parametrize(
    ("where", "fields", "path", "words"),
    [
        ("webhook", {"hmac_secret": "k", "hmac_secret_file": "/f"},
         "notify.channels[0].webhook.hmac_secret_file", "not both"),
        ("webhook", {"hmac_secret": ""}, "notify.channels[0].webhook.hmac_secret",
         "must not be empty"),
        ("email", {"password": "pw", "password_file": "/f", "username": "u"},
         "notify.channels[0].email.password_file", "not both"),
        ("email", {"password": "", "username": "u"}, "notify.channels[0].email.password",
         "must not be empty"),
        ("email", {"password": "pw"}, "notify.channels[0].email.username",
         "required with a password"),
        ("status", {"password": "pw", "password_file": "/f"},
         "status_page.basic_auth.password_file", "not both"),
        ("status", {}, "status_page.basic_auth.password", "set one of password or password_file"),
    ],
)
def test_secret_sources_checked_with_path(
    where: str, fields: dict[str, str], path: str, words: str
) -> None:
    """Every secret field pair (inline or *_file) gets the same checks, named by path."""
    from slamon.config.loader import ConfigError, parse_config

    doc: dict[str, Any] = {"targets": [{"id": "web", "kind": "tcp",
                                        "tcp": {"host": "127.0.0.1", "port": 9}}]}
    if where == "status":
        doc["status_page"] = {"enabled": True, "basic_auth": {"username": "acme", **fields}}
    else:
        base = {"webhook": {"url": "http://127.0.0.1:9/"},
                "email": {"host": "127.0.0.1", "from": "a@b.c", "to": ["d@e.f"]}}[where]
        doc["notify"] = {"channels": [{"id": "c", "kind": where, where: {**base, **fields}}],
                         "routes": [{"channel": "c"}]}
    with pytest.raises(ConfigError) as err:
        parse_config(json.dumps(doc))
    assert err.value.errors == [f"{path}: {words}"] or any(
        e.startswith(f"{path}: ") and words in e for e in err.value.errors), err.value.errors
    assert len(err.value.errors) == 1 and "pw" not in err.value.errors[0]


# -- routing rules (fake clock, recording channel) ----------------------------------------

def router(config: Config | None = None, **route: Any) -> tuple[Dispatcher, Recorder, list[float]]:
    clock = [1000.0]
    cfg = NotifyConfig.model_validate({
        "channels": [{"id": "hook", "kind": "webhook",
                      "webhook": {"url": "http://127.0.0.1:9/"}}],
        "routes": [{"channel": "hook", **route}],
        "defaults": {"failure_threshold": 3, "success_threshold": 2, "repeat_interval": "1h"},
    })
    rec = Recorder()
    d = Dispatcher(cfg, config, notifiers={"hook": rec}, clock=lambda: clock[0])
    d._build_routes()
    return d, rec, clock


def queued(d: Dispatcher) -> list[tuple[str, str, int]]:
    return [(m.status, m.kind.value, m.reminder) for m in d.route(d.routes[0].id).queue]


def shop_config() -> Config:
    return Config.model_validate({
        "targets": [
            {"id": t, "kind": "http", "interval": "10s", "timeout": "2s",
             "labels": {"team": team}, "http": {"url": f"http://user:pw@127.0.0.1:9/{t}"}}
            for t, team in (("web", "shop"), ("db", "data"))
        ],
        "slos": [{"id": "shop", "targets": ["web"], "objective": 0.99},
                 {"id": "data", "targets": ["db"], "objective": 0.99}],
        "slas": [{"id": "gold", "slo": "shop", "period": {"kind": "monthly"}}],
    })


def test_failure_threshold_timed() -> None:
    d, _, clock = router(shop_config())
    d.handle(down(at=1000.0))
    clock[0] = 1015.0
    d.tick()
    assert queued(d) == []  # 1 lost probe does not page
    d.handle(up(at=1010.0))  # flap: recovered before the 3rd failure
    clock[0] = 2000.0
    d.tick()
    assert queued(d) == []
    d.handle(down(at=2000.0))
    clock[0] = 2000 + 2 * 10 + 2 + 0.5  # 3rd failing probe may still be running
    d.tick()
    assert queued(d) == []
    clock[0] = 2000 + 2 * 10 + 2 + 1.01
    d.tick()
    assert queued(d) == [("firing", "target_down", 0)]
    # recovery needs 2 successes: one up, then down again keeps it firing
    d.handle(up(at=2100.0))
    d.handle(down(at=2110.0))
    clock[0] = 2200.0
    d.tick()
    assert queued(d) == [("firing", "target_down", 0)]
    d.handle(up(at=2200.0))
    clock[0] = 2200 + 10 + 2 + 1.01
    d.tick()
    assert queued(d) == [("firing", "target_down", 0), ("resolved", "target_up", 0)]


def test_failure_threshold_with_live_streak() -> None:
    config = shop_config()
    bus = EventBus()

    def transition(status: TargetStatus, result: ProbeResult) -> None:
        kind = EventKind.TARGET_UP if result.ok else EventKind.TARGET_DOWN
        bus.publish(Event(kind, status.last_scheduled or 0.0, target=status.target.id))

    live = LiveState(config, on_transition=transition)
    sub = bus.subscribe()
    d, _, _clock = router(config)
    d._streak = live_streak(lambda: live)
    web = config.target("web")

    def probe(t: float, ok: bool) -> None:
        live.record(web, t, ProbeResult(ok, 0.01))
        while not sub.queue.empty():
            d.handle(sub.queue.get_nowait())
        d.tick()

    probe(0, True)
    probe(10, False)
    probe(20, False)
    assert queued(d) == []
    probe(30, False)
    assert queued(d) == [("firing", "target_down", 0)]
    probe(40, True)
    assert len(queued(d)) == 1
    probe(50, True)
    assert queued(d)[-1] == ("resolved", "target_up", 0)


def test_reminders_and_send_resolved_false() -> None:
    d, _, clock = router(failure_threshold=1, send_resolved=False, repeat_interval="10m")
    d.handle(down())
    for t in (1599.0, 1601.0, 1700.0, 2201.0):
        clock[0] = t
        d.tick()
    assert queued(d) == [("firing", "target_down", 0), ("firing", "target_down", 1),
                         ("firing", "target_down", 2)]
    keys = [m.key for m in d.routes[0].queue]
    assert len(set(keys)) == 3
    assert "(reminder 2, still firing)" in d.routes[0].queue[2].text
    d.handle(up(at=2300.0))
    clock[0] = 5000.0
    d.tick()
    assert len(queued(d)) == 3 and d.firing() == {"hook#0": []}


def test_filters_by_kind_slo_label() -> None:
    config = shop_config()
    d, _, _ = router(config, events=["target_down"], slos=["shop"], labels={"team": "shop"},
                     failure_threshold=1)
    d.handle(down("db", team="data"))  # other SLO
    d.handle(down("web", team="other"))  # label mismatch
    d.handle(Event(EventKind.SLA_BREACHED, 1.0, sla="gold", slo="shop"))  # kind not listed
    assert queued(d) == []
    d.handle(down("web", team="shop"))
    assert queued(d) == [("firing", "target_down", 0)]

    d, _, _ = router(config, events=["sla_breached", "burn_rate_firing"], slos=["shop"])
    d.handle(Event(EventKind.SLA_BREACHED, 1.0, sla="gold"))  # SLA of SLO shop
    d.handle(Event(EventKind.BURN_RATE_FIRING, 1.0, slo="data", details={"window": "1h/5m"}))
    d.handle(Event(EventKind.BURN_RATE_FIRING, 1.0, slo="shop", details={"window": "1h/5m"}))
    d.handle(Event(EventKind.BURN_RATE_FIRING, 1.0, slo="shop", details={"window": "6h/30m"}))
    d.handle(Event(EventKind.BURN_RATE_RESOLVED, 2.0, slo="shop", details={"window": "1h/5m"}))
    assert queued(d) == [("firing", "sla_breached", 0), ("firing", "burn_rate_firing", 0),
                         ("firing", "burn_rate_firing", 0), ("resolved", "burn_rate_resolved", 0)]


def test_queue_is_bounded() -> None:
    d, _, _ = router(failure_threshold=1)
    d.cfg = d.cfg.model_copy(update={"delivery": d.cfg.delivery.model_copy(
        update={"queue_size": 3})})
    for i in range(5):
        d.handle(down(target=f"t{i}", at=float(i)))
    assert len(d.routes[0].queue) == 3 and d.routes[0].dropped == {"queue_full": 2}
    assert [m.target for m in d.routes[0].queue] == ["t2", "t3", "t4"]
    m = metric_values(d)
    assert m[("slamon_notifications_dropped_total", ("hook#0", "queue_full"))] == 2
    assert m[("slamon_notifications_queue_length", ("hook#0",))] == 3


def test_messages_hold_no_secrets() -> None:
    d, _, _ = router(failure_threshold=1)
    d.handle(Event(EventKind.TARGET_DOWN, 1.0, target="web",
                   summary="GET http://user:pw0rd@shop.example/?token=abc123 failed",
                   details={"reason": "status", "url": "http://user:pw0rd@x/",
                            "error": "connect to https://x/?api_key=zzz9 failed"}))
    (msg,) = d.routes[0].queue
    text = json.dumps(msg.to_json())
    for secret in ("pw0rd", "abc123", "zzz9"):
        assert secret not in text
    assert "url" not in msg.details


# -- probing is unaffected by a hanging endpoint -------------------------------------------

async def test_probing_unaffected_by_hanging_endpoint(receiver: Receiver) -> None:
    receiver.script = ["hang"] * 100
    async with MisbehavingHttpServer() as target_server:
        config = Config.model_validate({
            "targets": [{"id": "flappy", "kind": "http", "interval": "1s", "timeout": "500ms",
                         "http": {"url": target_server.url("/")}}],
        })
        bus = EventBus()

        def transition(status: TargetStatus, result: ProbeResult) -> None:
            kind = EventKind.TARGET_UP if result.ok else EventKind.TARGET_DOWN
            bus.publish(Event(kind, status.last_scheduled or 0.0, target=status.target.id))

        live = LiveState(config, on_transition=transition)
        sched = Scheduler(config.targets, max_concurrency=10, on_result=live.record,
                          on_missed=live.record_missed, spread=False)
        cfg = notify_cfg(timeout="2s", retries=50, backoff="100ms", queue_size=5)
        async with aiohttp.ClientSession() as session:
            d = Dispatcher(cfg, config,
                           notifiers={"hook": WebhookNotifier("hook", receiver.url, session)},
                           streak=live_streak(lambda: live))
            await d.start(bus)
            task = asyncio.create_task(sched.run())
            try:
                for i in range(6):  # flip the target every second: a storm of events
                    target_server.set_mode("down" if i % 2 == 0 else "up")
                    await asyncio.sleep(1.0)
                stats = sched.stats
                status = live.targets["flappy"]
                assert stats.missed == 0
                assert stats.completed >= 5
                assert stats.lag.max < 0.5  # probes started on time
                assert status.successes + status.failures == stats.completed
                assert status.failures >= 1 and status.successes >= 1
                assert len(receiver.requests) >= 1  # the notifier is stuck on the hang...
                assert d.route("hook#0").sent == 0
            finally:
                sched.stop()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await d.stop(drain=0)


# -- burn-rate and certificate watches --------------------------------------------------------

def one_slo(target: str, slo: str, objective: float, window: str,
            alert_windows: list[tuple[str, str, float]]) -> Config:
    """One HTTP target probed every 10 s, and one SLO of it with these (long, short,
    burn rate) alert windows."""
    return Config.model_validate({
        "targets": [{"id": target, "kind": "http", "interval": "10s", "timeout": "2s",
                     "http": {"url": "http://127.0.0.1:9/"}}],
        "slos": [{"id": slo, "targets": [target], "objective": objective, "window": window,
                  "alert_windows": [{"long": long, "short": short, "burn_rate": rate}
                                    for long, short, rate in alert_windows]}],
    })


def test_burn_alerts_pure_and_watch() -> None:
    config = one_slo("web", "shop", 0.99, "30d", [("1h", "5m", 14.4), ("6h", "30m", 6)])
    live = LiveState(config)
    web = config.target("web")
    start = 1_780_000_000.0
    for i in range(360):  # 1 h of good probes
        live.record(web, start + i * 10, ProbeResult(True, 0.01))
    state = live.slos["shop"]
    now = start + 3600
    watch = BurnWatch()
    assert burn_alerts(state, now) == set() and watch.check(live, now) == []
    for i in range(60):  # 10 min all bad
        live.record(web, now + i * 10, ProbeResult(False, 0.01))
    now += 600
    # 60 bad of 420: 14.3 % over both the 1 h and the 6 h window, 100 % over 5 m and 30 m
    assert burn_alerts(state, now) == {(3600.0, 300.0), (21600.0, 1800.0)}
    fired = watch.check(live, now)
    assert [(e.kind, e.details["window"]) for e in fired] == [
        (EventKind.BURN_RATE_FIRING, "1h/5m"), (EventKind.BURN_RATE_FIRING, "6h/30m")]
    assert watch.check(live, now) == []  # no change, no event
    for i in range(60):  # recovery: the 5 m window clears first
        live.record(web, now + i * 10, ProbeResult(True, 0.01))
    now += 600
    assert burn_alerts(state, now) == {(21600.0, 1800.0)}  # the 30 m window still burns
    (ev,) = watch.check(live, now)
    assert ev.kind == EventKind.BURN_RATE_RESOLVED and ev.details["window"] == "1h/5m"


def test_burn_watch_skips_clean_slos_but_never_hides_a_firing_one() -> None:
    """The clean-SLO shortcut agrees with burn_alerts, also on windows restored from a
    snapshot (whose last bad event is unknown until looked at)."""
    config = Config.model_validate({
        "targets": [{"id": "web", "kind": "http", "interval": "10s", "timeout": "2s",
                     "http": {"url": "http://127.0.0.1:9/"}}],
        "slos": [{"id": "shop", "targets": ["web"], "objective": 0.99, "window": "30d",
                  "alert_windows": [{"long": "1h", "short": "5m", "burn_rate": 14.4}]}],
    })
    live = LiveState(config)
    web = config.target("web")
    start = 1_780_000_000.0
    for i in range(300):
        live.record(web, start + i * 10, ProbeResult(i < 240, 0.01))  # last 10 min bad
    now = start + 3000
    assert burn_alerts(live.slos["shop"], now) == {(3600.0, 300.0)}
    # restart: a fresh LiveState whose window comes from the snapshot
    restored = LiveState(config)
    assert restored.restore({key: (shape, serialise())
                             for key, shape, serialise in live.snapshot_sources()}) == []
    fired = BurnWatch().check(restored, now)
    assert [e.kind for e in fired] == [EventKind.BURN_RATE_FIRING]
    # a clean SLO is skipped, and it agrees: nothing fires
    clean = LiveState(config)
    for i in range(300):
        clean.record(web, start + i * 10, ProbeResult(True, 0.01))
    assert BurnWatch().check(clean, now) == [] and burn_alerts(clean.slos["shop"], now) == set()


def burning(n: int) -> tuple[Config, LiveState, float]:
    """n single-target SLOs, each failing every probe for 10 minutes, and the time after."""
    config = Config.model_validate({
        "targets": [{"id": f"t{i}", "kind": "http", "interval": "10s", "timeout": "2s",
                     "http": {"url": "http://127.0.0.1:9/"}} for i in range(n)],
        "slos": [{"id": f"s{i}", "targets": [f"t{i}"], "objective": 0.99, "window": "30d",
                  "alert_windows": [{"long": "1h", "short": "5m", "burn_rate": 14.4}]}
                 for i in range(n)],
    })
    live = LiveState(config)
    start = 1_780_000_000.0
    for t in config.targets:
        for i in range(60):
            live.record(t, start + i * 10, ProbeResult(False, 0.01))
    return config, live, start + 600


def test_burn_watch_takes_a_round_robin_share_of_many_slos() -> None:
    """With more SLOs than its budget a check evaluates the next `budget` of them in turn,
    so one check stays short; within len(slos) / budget checks every SLO has fired once."""
    _, live, now = burning(5)
    watch = BurnWatch(budget=2)
    rounds = [sorted(e.slo for e in watch.check(live, now)) for _ in range(4)]
    assert rounds == [["s0", "s1"], ["s2", "s3"], ["s4"], []]
    assert len(BurnWatch().check(live, now)) == 5  # the default budget takes all at once


@pytest.fixture
def burn_looks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Every evaluation of an SLO's alerts from now on, as (SLO id, time), in order."""
    from slamon.notify import burn

    looks: list[tuple[str, float]] = []
    real = burn.burn_alerts

    def counting(state: SloState, at: float) -> set[tuple[float, float]]:
        looks.append((state.slo.id, at))
        return real(state, at)

    monkeypatch.setattr(burn, "burn_alerts", counting)
    return looks


def test_a_burning_slo_is_evaluated_again_on_a_new_event_or_after_the_recheck(
    burn_looks: list[tuple[str, float]],
) -> None:
    """Rates are ratios of valid events: without a new one only the windows' slide moves
    them, so a check re-evaluates an SLO on its next event, or RECHECK seconds later."""
    from slamon.notify import burn

    config, live, now = burning(1)
    web = config.target("t0")
    evaluated = burn_looks
    watch = BurnWatch()
    assert [e.kind for e in watch.check(live, now)] == [EventKind.BURN_RATE_FIRING]
    assert watch.check(live, now + 1) == [] and evaluated == [("s0", now)]  # nothing new
    live.record(web, now + 2, ProbeResult(False, 0.01))
    watch.check(live, now + 3)
    assert evaluated == [("s0", now), ("s0", now + 3)]  # a new event: at once
    watch.check(live, now + 3 + burn.RECHECK - 1)
    assert len(evaluated) == 2
    # no event for an hour: the windows slid past every bad one, and the check after
    # RECHECK sees it
    (resolved,) = watch.check(live, now + 3600)
    assert resolved.kind == EventKind.BURN_RATE_RESOLVED and evaluated[-1] == ("s0", now + 3600)


def test_good_events_wait_for_the_recheck_unless_the_slo_fires(
    burn_looks: list[tuple[str, float]],
) -> None:
    """Good events cannot start an alert: an SLO not firing that got only good ones is
    looked at again RECHECK after its last evaluation (its windows' slide) or on a bad
    event. A firing SLO's good event may resolve it: looked at, at once."""
    from slamon.notify import burn

    config, live, start = burning(2)
    hot, quiet = config.target("t0"), config.target("t1")
    for i in range(1, 61):  # ten more minutes: t0 still failing, t1 up again
        live.record(hot, start + i * 10, ProbeResult(False, 0.01))
        live.record(quiet, start + i * 10, ProbeResult(True, 0.01))
    now = start + 600
    watch = BurnWatch()
    fired = {e.slo for e in watch.check(live, now)}
    assert fired == {"s0"}
    burn_looks.clear()
    live.record(hot, now + 1, ProbeResult(True, 0.01))
    live.record(quiet, now + 1, ProbeResult(True, 0.01))
    watch.check(live, now + 2)
    assert burn_looks == [("s0", now + 2)]  # the firing one only
    live.record(quiet, now + 3, ProbeResult(False, 0.01))
    watch.check(live, now + 4)
    assert burn_looks[1:] == [("s1", now + 4)]  # a bad event: at once
    live.record(quiet, now + 5, ProbeResult(True, 0.01))
    watch.check(live, now + 4 + burn.RECHECK - 1)
    watch.check(live, now + 4 + burn.RECHECK)  # the slide since: looked at again
    assert [at for slo, at in burn_looks if slo == "s1"] == [now + 4, now + 4 + burn.RECHECK]


def test_a_burn_check_looks_only_at_slos_with_news_or_a_recheck_due(
    burn_looks: list[tuple[str, float]],
) -> None:
    """After the first check (every SLO), a check evaluates the SLOs that counted an event
    since the last one and those due a recheck: a clean SLO nobody probed is not looked at,
    and one whose first bad event comes is, at the next check."""
    from slamon.notify import burn

    config, live, now = burning(3)

    def looked() -> list[str]:
        ids = [slo_id for slo_id, _ in burn_looks]
        burn_looks.clear()
        return ids

    clean = Config.model_validate({
        **config.model_dump(mode="json"),
        "targets": [*config.model_dump(mode="json")["targets"],
                    {"id": "quiet", "kind": "http", "interval": "10s", "timeout": "2s",
                     "http": {"url": "http://127.0.0.1:9/"}}],
        "slos": [*config.model_dump(mode="json")["slos"],
                 {"id": "calm", "targets": ["quiet"], "objective": 0.99, "window": "30d",
                  "alert_windows": [{"long": "1h", "short": "5m", "burn_rate": 14.4}]}],
    })
    live.apply_config(clean)
    quiet = clean.target("quiet")
    for i in range(60):
        live.record(quiet, now - 600 + i * 10, ProbeResult(True, 0.01))
    watch = BurnWatch()
    assert sorted(e.slo for e in watch.check(live, now)) == ["s0", "s1", "s2"]
    assert sorted(looked()) == ["s0", "s1", "s2"]  # calm: no bad event, not evaluated
    live.record(clean.target("t1"), now + 1, ProbeResult(False, 0.01))
    assert watch.check(live, now + 2) == [] and looked() == ["s1"]
    for i in range(30):  # calm's first bad events: 30 of 90 over the hour
        live.record(quiet, now + 2 + i / 100, ProbeResult(False, 0.01))
    assert [(e.kind, e.slo) for e in watch.check(live, now + 3)] == [
        (EventKind.BURN_RATE_FIRING, "calm")]
    assert looked() == ["calm"]
    # nothing new: the next look is each burning SLO's recheck, RECHECK after its last
    assert watch.check(live, now + 4) == [] and looked() == []
    watch.check(live, now + burn.RECHECK)
    assert sorted(looked()) == ["s0", "s2"]  # s1 and calm were looked at later
    watch.check(live, now + 3 + burn.RECHECK)
    assert sorted(looked()) == ["calm", "s1"]


def test_a_composite_slo_is_evaluated_when_its_slices_close(
    burn_looks: list[tuple[str, float]],
) -> None:
    """A composite SLO counts a slice when it closes, which for the last slices is in
    `advance`, with no probe arriving: the check after that looks at it, not a recheck
    later."""
    config = Config.model_validate({
        "targets": [{"id": p, "kind": "http", "interval": "10s", "timeout": "2s",
                     "http": {"url": "http://127.0.0.1:9/"}} for p in ("a", "b")],
        "slos": [{"id": "both", "targets": ["a", "b"], "objective": 0.99, "window": "30d",
                  "alert_windows": [{"long": "1h", "short": "5m", "burn_rate": 14.4}]}],
    })
    live = LiveState(config)
    watch = BurnWatch()
    start = 1_780_000_000.0
    for i in range(30):
        for part in ("a", "b"):
            live.record(config.target(part), start + i * 10, ProbeResult(False, 0.01))
    state = live.slos["both"]
    assert state.open_slices == 2  # the last two wait for their parts' timeout
    fired = watch.check(live, start + 295)
    assert [(e.kind, e.slo) for e in fired] == [(EventKind.BURN_RATE_FIRING, "both")]
    counted = state.valid_total
    live.advance(start + 300)  # closes one more slice, before any recheck is due
    assert state.valid_total == counted + 1
    assert watch.check(live, start + 300) == [] and burn_looks == [
        ("both", start + 295), ("both", start + 300)]


class _EveryCheck:
    """The burn check as a pass over every SLO at every check, with the same shortcuts
    (a clean SLO is skipped; one with no new event, or one not firing with no new bad
    event, is looked at again RECHECK later)."""

    def __init__(self) -> None:
        self.firing: dict[str, set[tuple[float, float]]] = {}
        self.last: dict[str, tuple[int, int, int, float]] = {}

    def check(self, live: LiveState, now: float) -> list[tuple[str, str, tuple[float, float]]]:
        from slamon.notify import burn

        out = []
        for slo_id, state in live.slos.items():
            before = self.firing.get(slo_id, set())
            longest = max(aw.long for aw in state.slo.alert_windows)
            if not before and state.last_bad < now - longest:
                continue
            valid, bad = state.valid_total, state.valid_total - state.good_total
            last = self.last.get(slo_id)
            if (last is not None and last[0] == id(state) and now - last[3] < burn.RECHECK
                    and (last[1] == valid or (not before and last[2] == bad))):
                continue
            self.last[slo_id] = (id(state), valid, bad, now)
            after = burn_alerts(state, now)
            out += [("firing", slo_id, p) for p in after - before]
            out += [("resolved", slo_id, p) for p in before - after]
            self.firing[slo_id] = after
        return sorted(out)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, 40),
                          st.booleans()), min_size=1, max_size=120))
def test_a_burn_check_of_the_changed_slos_finds_what_a_pass_over_every_slo_finds(
    steps: list[tuple[int, bool, int, bool]],
) -> None:
    """Whatever the probes and the checks' timing, looking only at the SLOs that counted
    an event or are due a recheck gives the events a pass over every SLO gives."""
    targets = ["a", "b", "c", "d"]
    config = Config.model_validate({
        "targets": [{"id": t, "kind": "http", "interval": "10s", "timeout": "2s",
                     "http": {"url": "http://127.0.0.1:9/"}} for t in targets],
        "slos": [*({"id": f"s-{t}", "targets": [t], "objective": 0.9, "window": "1d",
                    "alert_windows": [{"long": "5m", "short": "1m", "burn_rate": 3},
                                      {"long": "10m", "short": "2m", "burn_rate": 1.5}]}
                   for t in targets),
                 {"id": "ab", "targets": ["a", "b"], "objective": 0.9, "window": "1d",
                  "alert_windows": [{"long": "5m", "short": "1m", "burn_rate": 3}]}],
    })
    live = LiveState(config)
    watch, model = BurnWatch(), _EveryCheck()
    now = 1_780_000_000.0
    for target, ok, wait, check in steps:
        now += wait
        live.record(config.target(targets[target]), now, ProbeResult(ok, 0.01))
        if check:
            live.advance(now)
            got = sorted((e.kind.value.removeprefix("burn_rate_"), e.slo or "",
                          (_seconds(e.details["long"]), _seconds(e.details["short"])))
                         for e in watch.check(live, now))
            assert got == model.check(live, now)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 90)), min_size=1, max_size=80),
       st.lists(st.integers(0, 90), max_size=40))
def test_good_events_alone_never_start_a_burn_alert(
    mixed: list[tuple[bool, int]], good: list[int],
) -> None:
    """Why the burn check skips an SLO not firing whose new events are all good: at the
    same instant, the pairs firing after good events are a subset of those before."""
    config = one_slo("a", "s", 0.9, "1d", [("5m", "1m", 3), ("10m", "2m", 1.5)])
    live = LiveState(config)
    target, state = config.target("a"), live.slos["s"]
    t = 1_780_000_000.0
    for ok, wait in mixed:
        t += wait
        live.record(target, t, ProbeResult(ok, 0.01))
    times = [t + wait for wait in itertools.accumulate(good)]
    now = times[-1] if times else t
    before = burn_alerts(state, now)
    for when in times:
        live.record(target, when, ProbeResult(True, 0.01))
    assert burn_alerts(state, now) <= before


def _seconds(text: str) -> float:
    from slamon.util.durations import parse_duration

    return float(parse_duration(text))


async def test_a_burn_check_in_pieces_yields_to_the_loop_and_finds_the_same_events() -> None:
    from slamon.notify import burn

    config, live, now = burning(7)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_turns())
    await asyncio.sleep(0)
    try:
        events = await BurnWatch().check_in_pieces(live, now, Pacer(0))
        # a pacer with no budget: the loop ran other tasks after each of the 7 SLOs
        assert turns >= 7
        assert [(e.kind, e.slo) for e in events] == [
            (e.kind, e.slo) for e in BurnWatch().check(live, now)]
        assert len(events) == 7

        # an SLO a reload removes while a check is between pieces (s6, in the last piece):
        # skipped, then resolved
        watch = BurnWatch()
        await watch.check_in_pieces(live, now, Pacer(0))
        edited = Config.model_validate({**config.model_dump(mode="json"),
                                        "slos": config.model_dump(mode="json")["slos"][:-1]})

        async def reload_soon() -> None:
            await asyncio.sleep(0)
            live.apply_config(edited)

        reload = asyncio.create_task(reload_soon())
        # RECHECK later every firing SLO is due a look, and the check goes in pieces
        later = await watch.check_in_pieces(live, now + burn.RECHECK, Pacer(0))
        await reload
        assert [(e.kind.name, e.slo) for e in later] == [("BURN_RATE_RESOLVED", "s6")]
    finally:
        counter.cancel()


def test_cert_watch_thresholds() -> None:
    config = Config.model_validate({
        "targets": [{"id": "web", "kind": "http", "interval": "10s", "timeout": "2s",
                     "labels": {"team": "shop"}, "http": {"url": "https://127.0.0.1:9/"}}],
    })
    live = LiveState(config)
    web = config.target("web")
    now = 1_780_000_000.0
    watch = CertWatch([21, 14, 7])

    def at(days_left: float, expiry_shift: float = 0.0) -> list[int]:
        expiry = now + 30 * 86400 + expiry_shift
        t = expiry - days_left * 86400
        live.record(web, t, ProbeResult(True, 0.01, cert_expiry=expiry))
        return [e.details["days_left"] for e in watch.check(live, t)]

    assert at(25) == []
    assert at(20.5) == [20]
    assert at(19) == []
    assert at(13.9) == [13]
    assert at(3) == [3]  # 7 crossed
    assert at(2) == []
    assert at(60, expiry_shift=90 * 86400) == []  # renewed: starts afresh
    assert at(6, expiry_shift=90 * 86400) == [6]  # 21, 14, 7 at once: one event
    # only targets whose results carried a certificate are walked, and a reload that
    # removes one leaves it out (and forgotten by the watch)
    assert live.cert_targets == {"web"}
    live.apply_config(Config.model_validate({
        "targets": [{"id": "db", "kind": "tcp", "interval": "10s", "timeout": "2s",
                     "tcp": {"host": "127.0.0.1", "port": 9}}],
    }))
    assert live.cert_targets == set()
    assert watch.check(live, now) == [] and not watch._seen


def maintenance_config(**window: Any) -> Config:
    """shop_config with a maintenance window from t=2000 to t=3000 (unix seconds)."""
    data = shop_config().model_dump(exclude_defaults=True)
    data["maintenance"] = [{"id": "upgrade", "kind": "once",
                            "once": {"start": 2000, "end": 3000}, **window}]
    return Config.model_validate(data)


def test_maintenance_holds_target_notifications_and_tells_after_it() -> None:
    d, _, clock = router(maintenance_config(targets=["web"]), failure_threshold=1,
                         success_threshold=1, events=["target_down", "burn_rate_firing"])
    # down and up inside the window: nothing is sent, nothing is left to resolve
    with capture_logs() as logs:
        clock[0] = 2100.0
        d.handle(down(at=2100.0))
        d.handle(down("db", at=2100.0))  # not covered: sent
        clock[0] = 2200.0
        d.handle(up(at=2200.0))
        d.handle(down(at=2300.0))
        clock[0] = 2400.0
        d.tick()
        burn = Event(EventKind.BURN_RATE_FIRING, 2400.0, slo="shop", details={"window": "1h"})
        d.handle(burn)
    assert [(m.kind.value, m.target) for m in d.routes[0].queue] == [("target_down", "db")]
    silenced = [e for e in logs if e["event"] == "notifications_silenced"]
    assert len(silenced) == 1 and silenced[0]["maintenance"] == "upgrade"
    assert d.silenced == 3
    # still down (and burning) when the window ends: told at once
    clock[0] = 3000.0
    d.tick()
    assert [(m.kind.value, m.target, m.status) for m in d.routes[0].queue][1:] == [
        ("target_down", "web", "firing"), ("burn_rate_firing", None, "firing")]
    d.handle(up(at=3010.0))
    assert [m.status for m in d.routes[0].queue][-1] == "resolved"


def test_maintenance_scoped_to_an_sla_covers_its_targets_and_a_route_can_opt_out() -> None:
    d, _, clock = router(maintenance_config(slas=["gold"]), failure_threshold=1)
    clock[0] = 2100.0
    d.handle(down(at=2100.0))  # web is measured by gold: held
    d.handle(down("db", at=2100.0))  # db is not: sent
    assert [m.target for m in d.routes[0].queue] == ["db"]
    loud, _, clock = router(maintenance_config(), failure_threshold=1,
                            silence_in_maintenance=False)
    clock[0] = 2100.0
    loud.handle(down(at=2100.0))
    assert [m.target for m in loud.routes[0].queue] == ["web"]
