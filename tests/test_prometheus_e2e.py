"""Debian's real Prometheus scrapes a running slamon and evaluates the rules that
`slamon rules` generated; a scripted outage on a loopback target makes the
burn-rate page fire, and the recovery resolves it.

Windows are shrunk so this takes well under a minute: alert window long 1m /
short 10s, burn rate 2, objective 0.9, probes every second, Prometheus scraping
and evaluating every second.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from slamon.config.loader import load_config
from slamon.metrics.rules import BURN_ALERT, render_rules
from tests.misbehaving import MisbehavingHttpServer, free_port
from tests.test_reload import SlamonProcess, stop_process

pytestmark = pytest.mark.slow


class Prometheus:
    def __init__(self, workdir: Path, scrape_port: int, rules: Path) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: apt-get install prometheus (scripts/setup does)"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(textwrap.dedent(f"""\
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            rule_files: ["{rules}"]
            scrape_configs:
              - job_name: slamon
                static_configs:
                  - targets: ["127.0.0.1:{scrape_port}"]
            """))
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
             "--storage.tsdb.retention.time=1h"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir,
        )

    async def api(self, session: aiohttp.ClientSession, path: str, **params: str) -> Any:
        async with session.get(self.base + path, params=params) as resp:
            body = await resp.json()
        assert body["status"] == "success", body
        return body["data"]

    async def alerts(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        data = await self.api(session, "/api/v1/alerts")
        return list(data["alerts"])

    async def query(self, session: aiohttp.ClientSession, expr: str) -> list[dict[str, Any]]:
        data = await self.api(session, "/api/v1/query", query=expr)
        return list(data["result"])

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()


async def poll(cond: Callable[[], Awaitable[bool]], what: str, limit: float) -> float:
    """Await cond() every 0.5 s up to `limit` seconds; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if await cond():
                return time.monotonic() - start
        except aiohttp.ClientError:
            pass  # not listening yet
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {limit}s waiting for {what}")


@pytest.fixture
async def server() -> AsyncIterator[MisbehavingHttpServer]:
    async with MisbehavingHttpServer() as srv:
        yield srv


async def test_burn_rate_page_fires_and_resolves(
    server: MisbehavingHttpServer, tmp_path: Path
) -> None:
    port = free_port()
    config_path = tmp_path / "slamon.yaml"
    config_path.write_text(textwrap.dedent(f"""\
        server: {{listen: "127.0.0.1:{port}"}}
        logging: {{level: info, format: json}}
        state: {{path: "{tmp_path / 'state' / 'slamon.sqlite3'}"}}
        targets:
          - id: web
            kind: http
            interval: 1s
            timeout: 500ms
            http: {{url: "{server.url('/')}"}}
        slos:
          - id: web-availability
            targets: [web]
            objective: 0.9
            window: 2m
            alert_windows:
              - {{long: 1m, short: 10s, burn_rate: 2, severity: page}}
        """))
    rules = tmp_path / "rules.yml"
    rules.write_text(render_rules(load_config(config_path)))
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()

    slamon = SlamonProcess(config_path, port, tmp_path / "slamon.log")
    prom = Prometheus(prom_dir, port, rules)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

            async def healthy_and_recorded() -> bool:
                assert slamon.proc.poll() is None, slamon.log_path.read_text()
                assert prom.proc.poll() is None, prom.log_path.read_text()
                result = await prom.query(
                    session, 'slamon:slo_burn_rate{slo="web-availability",window="10s"}')
                return bool(result) and float(result[0]["value"][1]) == 0.0

            await poll(healthy_and_recorded, "Prometheus recording a zero burn rate", 40)
            assert not [a for a in await prom.alerts(session) if a["labels"]["alertname"]
                        == BURN_ALERT], "no burn-rate alert while the target is up"

            async def page(state: str | None) -> bool:
                found = [a for a in await prom.alerts(session)
                         if a["labels"]["alertname"] == BURN_ALERT
                         and a["labels"].get("slo") == "web-availability"]
                if state is None:
                    return not found
                return any(a["state"] == state and a["labels"]["severity"] == "page"
                           for a in found)

            server.set_mode("down")
            fired = await poll(lambda: page("firing"), "the page to fire", 60)
            firing = next(a for a in await prom.alerts(session) if a["state"] == "firing"
                          and a["labels"]["alertname"] == BURN_ALERT)
            assert firing["labels"]["long_window"] == "1m"
            assert firing["labels"]["short_window"] == "10s"
            assert firing["annotations"]["runbook_url"].endswith("#error-budget-burn")
            assert float(firing["value"]) > 2

            server.set_mode("up")
            resolved = await poll(lambda: page(None), "the page to resolve", 60)
            print(f"page fired {fired:.1f}s after the outage began, "
                  f"resolved {resolved:.1f}s after recovery")
    finally:
        prom.close()
        slamon.close()
    assert slamon.proc.returncode == 0
