"""End to end: `slamon run` as a subprocess against a real loopback server.

The server goes down and comes back; the probe and SLI series on /metrics must
follow. SIGTERM must stop the daemon cleanly, and no secret from a target URL
may reach /metrics or the logs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.misbehaving import MisbehavingHttpServer, free_port, serve
from tests.promtext import Samples, parse_metrics, value


class Daemon:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    async def scrape(self, session: aiohttp.ClientSession) -> tuple[str, Samples]:
        async with session.get(self.base + "/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
        return text, parse_metrics(text)

    async def wait_for(
        self,
        session: aiohttp.ClientSession,
        cond: Callable[[Samples], bool],
        what: str,
        limit: float = 20.0,
    ) -> Samples:
        """Poll /metrics until cond holds (a subprocess offers no event to await)."""
        last: Samples = {}
        async with asyncio.timeout(limit):
            while True:
                assert self.proc.returncode is None, "daemon exited"
                _, last = await self.scrape(session)
                if cond(last):
                    return last
                await asyncio.sleep(0.2)
        raise AssertionError(what)  # pragma: no cover


@pytest.fixture
async def server() -> AsyncIterator[MisbehavingHttpServer]:
    async with MisbehavingHttpServer() as srv:
        yield srv


async def start_daemon(config: Path, port: int) -> Daemon:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slamon", "run", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    daemon = Daemon(proc, port)
    async with aiohttp.ClientSession() as session, asyncio.timeout(20):
        while True:
            if proc.returncode is not None:
                err = await proc.stderr.read() if proc.stderr else b""
                raise AssertionError(f"daemon exited early: {err.decode()}")
            try:
                async with session.get(daemon.base + "/readyz") as resp:
                    if resp.status == 200:
                        return daemon
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


class Hook:
    """A webhook receiver on 127.0.0.1 that records what the daemon posts."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        self.arrived.set()
        return web.Response(text="ok")


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner, port = await serve(app)
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def test_outage_and_recovery_show_on_metrics(
    server: MisbehavingHttpServer, hook: Hook, tmp_path: Path
) -> None:
    port = free_port()
    secret_url = server.url("/status/503").replace(
        "http://", "http://probeuser:hunter2secret@"
    ) + "?token=tok3nvalue&page=1"
    config = tmp_path / "slamon.yaml"
    config.write_text(textwrap.dedent(f"""
        server: {{listen: "127.0.0.1:{port}"}}
        logging: {{level: info, format: json}}
        metrics: {{window_ratios: true}}
        state: {{path: "{tmp_path / 'state.sqlite3'}"}}
        targets:
          - id: web
            kind: http
            interval: 1s
            timeout: 500ms
            http: {{url: "{server.url('/')}", body_contains: ["OK"]}}
          - id: private
            kind: http
            interval: 1s
            timeout: 500ms
            http: {{url: "{secret_url}"}}
        slos:
          - id: web-availability
            targets: [web]
            objective: 0.9
            window: 1m
            alert_windows: [{{long: 1m, short: 10s, burn_rate: 2}}]
        status_page: {{enabled: true, title: "E2E <Shop>"}}
        notify:
          channels:
            - {{id: hook, kind: webhook, webhook: {{url: "{hook.url}"}}}}
          routes:
            - {{channel: hook, events: [target_down, target_up], targets: [web],
               failure_threshold: 2, success_threshold: 1}}
    """))
    daemon = await start_daemon(config, port)
    try:
        async with aiohttp.ClientSession() as session:
            up = await daemon.wait_for(
                session,
                lambda s: value(s, "probe_success", target="web") == 1.0
                and (value(s, "slamon_sli_ratio", slo="web-availability", window="1m") or 0) == 1.0,
                "target up with SLI 1.0",
            )
            assert value(up, "probe_http_status_code", target="web") == 200
            phases = {p: value(up, "probe_http_duration_seconds", target="web", phase=p)
                      for p in ("connect", "processing", "transfer")}
            assert all(v is not None and v >= 0 for v in phases.values()), phases

            server.set_mode("down")
            down = await daemon.wait_for(
                session,
                lambda s: value(s, "probe_success", target="web") == 0.0
                and (value(s, "slamon_sli_ratio", slo="web-availability", window="1m") or 1) < 1.0
                # two failures in a row: the webhook route's failure threshold
                and (value(s, "slamon_probes_total", target="web", result="failure") or 0) >= 2,
                "target down twice and SLI below 1",
            )
            assert value(down, "probe_failed_reason", target="web", reason="status") == 1.0
            assert value(down, "probe_http_status_code", target="web") == 503
            assert (value(down, "slamon_burn_rate", slo="web-availability", window="10s") or 0) > 0
            assert (value(down, "slamon_probes_total", target="web", result="failure") or 0) >= 1

            server.set_mode("up")
            recovered = await daemon.wait_for(
                session,
                lambda s: value(s, "probe_success", target="web") == 1.0,
                "target back up",
            )
            budget = value(recovered, "slamon_error_budget_remaining_ratio", slo="web-availability")
            assert budget is not None and budget < 1.0
            assert value(recovered, "slamon_scheduler_missed_total") == 0.0

            text, samples = await daemon.scrape(session)
            assert "hunter2secret" not in text and "tok3nvalue" not in text
            assert value(samples, "probe_success", target="private") == 0.0

            # the people-facing side runs in the daemon: status page, its JSON, a webhook
            async with session.get(daemon.base + "/status") as resp:
                page = await resp.text()
            assert resp.status == 200 and "E2E &lt;Shop&gt;" in page and "<Shop>" not in page
            async with session.get(daemon.base + "/api/v1/status") as resp:
                status = await resp.json()
            assert "web-availability" in str(status)
            async with asyncio.timeout(10):
                while {"target_down", "target_up"} - {m.get("event") for m in hook.received}:
                    await hook.arrived.wait()
                    hook.arrived.clear()
            kinds = [m["event"] for m in hook.received]
            assert kinds.index("target_down") < kinds.index("target_up")
            assert all(m["target"] == "web" for m in hook.received)
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):  # the longest timeout is 0.5 s
            out, err = await daemon.proc.communicate()
    assert daemon.proc.returncode == 0, err.decode()
    logs = out.decode() + err.decode()
    assert "Traceback" not in logs
    assert "hunter2secret" not in logs and "tok3nvalue" not in logs
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "started" in names and "stopped" in names
    downs = [e for e in events if e["event"] == "target_down" and e["target"] == "web"]
    assert downs and downs[0]["reason"] == "status"
    assert any(e["event"] == "target_up" and e["target"] == "web" for e in events)


async def run_to_exit(config: Path) -> tuple[int | None, bytes]:
    """`slamon run -c CONFIG`, which must exit by itself within 20 s: its status and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slamon", "run", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode, err


async def test_run_refuses_bad_config_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("targets:\n  - id: a\n    kind: http\n    interval: 5s\n    timeout: 9s\n"
                      "    http: {url: 'http://127.0.0.1:1/'}\n")
    returncode, err = await run_to_exit(config)
    assert returncode == 2
    assert b"Traceback" not in err
    assert b"targets[0].timeout" in err and b"must be shorter than interval (5s)" in err


async def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "c.yaml"
        config.write_text(
            f"server: {{listen: '127.0.0.1:{port}'}}\nstate: {{path: '{tmp_path}/s.sqlite3'}}\n"
        )
        returncode, err = await run_to_exit(config)
    assert returncode == 1
    assert b"Traceback" not in err
    assert f"cannot listen on 127.0.0.1:{port}".encode() in err
