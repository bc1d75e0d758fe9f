"""Incidents: automatic (a target down) and posted by operators, kept across
restarts, on the API (authenticated), the CLI, subscribers' channels and the
status page (headless Chromium).

A real daemon probes a loopback server switched down and up; a webhook
receiver on 127.0.0.1 is the subscriber; waits are on conditions polled with
a deadline (the daemon publishes asynchronously), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from slamon.app.daemon import Daemon
from slamon.config.loader import parse_config
from tests.misbehaving import MisbehavingHttpServer
from tests.test_notify import Receiver, receiver  # noqa: F401 - the fixture
from tests.test_reload import slamon_env
from tests.test_status_page import run_chromium

TOKEN = "incident-token-0123456789"


def config_text(tmp_path: Path, url: str, hook: str, auth: bool = True) -> str:
    server_auth = f', auth: {{bearer_token: "{TOKEN}"}}' if auth else ""
    return textwrap.dedent(f"""
        server: {{listen: "127.0.0.1:0"{server_auth}}}
        state: {{path: "{tmp_path / 'state.db'}"}}
        targets:
          - {{id: web, kind: http, interval: 1s, timeout: 500ms, http: {{url: "{url}"}}}}
        slos:
          - {{id: shop, targets: [web], objective: 0.9}}
        notify:
          channels: [{{id: subscribers, kind: webhook, webhook: {{url: "{hook}"}}}}]
          routes: [{{channel: subscribers, events: [incident_updated],
                     failure_threshold: 1, success_threshold: 1}}]
        status_page: {{enabled: true, title: Shop}}
        """)


async def until(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    """Poll `cond` with a deadline: the daemon acts on its own tasks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def call(self, method: str, path: str, body: Any = None,
                   token: str | None = TOKEN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, self.base + "/api/v1/incidents" + path,
                                        json=body, headers=headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text


async def cli(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    """`slamon incident ...` as a child, without blocking the daemon's loop."""
    env = slamon_env({"SLAMON_API_TOKEN": token} if token else {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slamon", "incident", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def test_incident_lifecycle_api_cli_channels_page_and_restart(
        tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    async with MisbehavingHttpServer() as site, aiohttp.ClientSession() as session:
        text = config_text(tmp_path, site.url("/"), receiver.url)
        daemon = Daemon(parse_config(text))
        await daemon.start()
        assert daemon.server is not None
        base = f"http://127.0.0.1:{daemon.server.bound_port}"
        api = Api(session, base)
        try:
            # writing needs the token; bad requests are named
            status, body = await api.call("POST", "", {"title": "x", "message": "y"}, token=None)
            assert status == 401
            for bad, message in [({"title": "", "message": "m"}, "title"),
                                 ({"title": "t", "message": "m", "targets": ["nope"]},
                                  "unknown target 'nope'"),
                                 ({"title": "t", "message": "m", "status": "resolved"},
                                  "cannot start resolved"),
                                 ({"title": "t", "message": "m", "color": 1}, "unknown field")]:
                status, body = await api.call("POST", "", bad)
                assert status == 400 and message in body["error"], body
            status, body = await api.call("POST", "", {
                "title": "Payments delayed", "message": "Card payments take minutes.",
                "targets": ["web"]})
            assert status == 201, body
            iid = body["id"]
            assert body["status"] == "investigating" and body["source"] == "manual"
            status, body = await api.call("POST", f"/{iid}/updates", {
                "status": "identified", "message": "A provider is slow."})
            assert status == 201 and body["status"] == "identified"
            # the CLI, with the token from the environment
            out = await cli("update", str(iid), "--url", base, "--status", "monitoring",
                      "--message", "Switched provider.")
            assert out.returncode == 0, out.stderr
            assert f"incident {iid}: [monitoring] Payments delayed (web)" in out.stdout
            out = await cli("update", str(iid), "--url", base, "--status", "monitoring",
                      "--message", "x", token=None)
            assert out.returncode == 1 and "401" in out.stderr and TOKEN not in out.stderr
            out = await cli("open", "--url", base, "--title", "Maintenance of the login",
                      "--message", "Logins may fail until 14:00 UTC.")
            assert out.returncode == 0, out.stderr
            general = int(out.stdout.split()[1].rstrip(":"))
            # every update reached the subscribers' channel
            await until(lambda: len(receiver.accepted) >= 4, "four webhook deliveries")
            sent = [json.loads(b) for b in receiver.accepted]
            assert [m["event"] for m in sent] == ["incident_updated"] * 4
            assert "Switched provider." in sent[2]["text"]
            # an automatic incident: the target goes down
            site.set_mode("down")
            await until(lambda: any(i.source == "auto" for i in daemon.parts.incidents.incidents),
                        "an automatic incident")
            # the page shows both, with the manual one's timeline
            dom = (await run_chromium("--dump-dom", base + "/status")).decode()
            assert "Maintenance of the login" in dom and "Logins may fail" in dom
            assert "Payments delayed" in dom and "A provider is slow." in dom
            assert 'data-status="monitoring"' in dom
            assert "web</b> down" in dom
        finally:
            await daemon.shutdown()

        # a restart keeps every incident and update; the open automatic one closes on "up"
        site.set_mode("up")
        again = Daemon(parse_config(text))
        await again.start()
        try:
            assert again.server is not None
            api = Api(session, f"http://127.0.0.1:{again.server.bound_port}")
            status, body = await api.call("GET", f"/{iid}")
            assert status == 200
            assert [u["status"] for u in body["updates"]] == [
                "investigating", "identified", "monitoring"]
            status, body = await api.call("POST", f"/{iid}/updates", {
                "status": "resolved", "message": "Payments are fast again."})
            assert status == 201 and body["ongoing"] is False
            status, body = await api.call("POST", f"/{iid}/updates", {
                "status": "monitoring", "message": "again?"})
            assert status == 409
            incidents = again.parts.incidents
            await until(lambda: all(not i.ongoing for i in incidents.incidents
                                    if i.source == "auto"), "the automatic incident resolved")
            status, listed = await api.call("GET", "?ongoing=true")
            assert [i["id"] for i in listed["incidents"]] == [general]
        finally:
            await again.shutdown()


async def test_without_server_auth_incidents_cannot_be_posted(
        tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    text = config_text(tmp_path, "http://127.0.0.1:9/", receiver.url, auth=False)
    daemon = Daemon(parse_config(text))
    await daemon.start()
    try:
        assert daemon.server is not None
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{daemon.server.bound_port}")
            status, body = await api.call("POST", "", {"title": "t", "message": "m"},
                                          token=None)
            assert status == 403 and "server.auth" in body["error"]
            status, body = await api.call("GET", "", token=None)
            assert status == 200 and body == {"incidents": []}
    finally:
        await daemon.shutdown()
