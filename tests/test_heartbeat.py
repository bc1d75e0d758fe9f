"""Heartbeat (push) monitors: beats and misses count like probe ticks.

A real daemon with a heartbeat target; beats are pushed over HTTP to its API on
127.0.0.1. Waits are on recorded ticks (the scheduler's callback), never on
fixed sleeps.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from slamon.app.daemon import Daemon
from slamon.config.loader import ConfigError, parse_config
from slamon.probers.base import FailureReason, ProbeResult
from slamon.probers.heartbeat import BURST, UNKNOWN_BURST, Beats
from tests.test_discovery import Watch

TOKEN = "push-token-abcdef-0123456789"


def config_text(tmp_path: Path) -> str:
    return textwrap.dedent(f"""
        server: {{listen: "127.0.0.1:0", auth: {{bearer_token: "api-token-not-for-push"}}}}
        state: {{path: "{tmp_path / 'state.db'}"}}
        targets:
          - id: backup
            kind: heartbeat
            interval: 1s
            timeout: 500ms
            heartbeat: {{token: "${{PUSH_TOKEN}}", grace: 300ms}}
        slos:
          - {{id: backup-runs, targets: [backup], objective: 0.5}}
        """)


async def test_beats_and_misses_count_as_ticks(tmp_path: Path) -> None:
    config = parse_config(config_text(tmp_path), env={"PUSH_TOKEN": TOKEN})
    daemon = Daemon(config)
    watch = Watch(daemon)
    results: list[ProbeResult] = []
    recorded = daemon.parts.queue_result  # the scheduler's callback

    def keep(target: object, t: float, result: ProbeResult) -> None:
        results.append(result)
        recorded(target, t, result)  # type: ignore[arg-type]

    daemon.parts.queue_result = keep  # type: ignore[method-assign]
    with capture_logs() as logs:
        await daemon.start()
        assert daemon.server is not None
        base = f"http://127.0.0.1:{daemon.server.bound_port}/api/v1/push/"
        try:
            async with aiohttp.ClientSession() as session:
                async def push(token: str, query: str = "") -> int:
                    async with session.post(base + token + query) as resp:
                        return resp.status

                assert await push("wrong-token-0000000000") == 404
                # a beat: the next tick is good (no server.auth needed: the token is it)
                assert await push(TOKEN, "?duration=2.5") == 200
                n = len(results)
                await watch.until(lambda: len(results) > n, "a tick after the beat")
                assert results[n].ok and results[n].duration == 2.5
                # no more beats: once interval + grace have passed, ticks fail
                await watch.until(lambda: any(
                    r.reason == FailureReason.NO_HEARTBEAT for r in results[n:]), "a miss")
                # the job reports a failure, with its message
                assert await push(TOKEN, "?status=down&msg=disk+full") == 200
                m = len(results)
                await watch.until(lambda: len(results) > m, "a tick after the bad beat")
                assert results[m].reason == FailureReason.REPORTED_DOWN
                assert results[m].detail == "disk full"
                assert await push(TOKEN, "?status=sideways") == 400
                # beats are rate-limited per target
                codes = [await push(TOKEN) for _ in range(int(BURST) + 5)]
                assert 429 in codes and codes[0] == 200
                async with session.get(base.replace("/api/v1/push/", "/metrics"),
                                       headers={"Authorization":
                                                "Bearer api-token-not-for-push"}) as resp:
                    metrics = await resp.text()
            # every tick is counted in the SLO like a probe (the last ones may still be
            # waiting for their batch)
            daemon.parts.record_queued()
            good, valid = daemon.live.slos["backup-runs"].counts(time.time() + 1, 86400.0)
            assert valid == len(results) and 0 < good < valid
        finally:
            await daemon.shutdown()
    assert TOKEN not in metrics and 'slamon_target_info{target="backup",kind="heartbeat"' \
        in metrics
    assert all(TOKEN not in repr(entry) for entry in logs)


def test_rate_limits_and_configuration() -> None:
    now = [1000.0]
    beats = Beats(clock=lambda: now[0])
    beats.configure([("a", TOKEN)])
    assert beats.record(TOKEN) == ("accepted", "a")
    outcomes = [beats.record(TOKEN)[0] for _ in range(int(BURST))]
    assert outcomes.count("rate_limited") == 1  # the burst was used up
    now[0] += 1.0
    assert beats.record(TOKEN)[0] == "accepted"  # refilled
    guesses = [beats.record(f"guess-{i:020d}")[0] for i in range(int(UNKNOWN_BURST) + 3)]
    assert guesses.count("unknown") == int(UNKNOWN_BURST)
    assert guesses[-1] == "rate_limited"
    beats.configure([("b", "another-token-0123456789")])
    assert "a" not in beats.latest and beats.record(TOKEN)[0] in ("unknown", "rate_limited")


@pytest.mark.parametrize(("spec", "where", "message"), [
    ('{token: "short"}', "targets[0].heartbeat.token", "at least 16"),
    ('{token: "x-long-enough-token-123", token_file: /tmp/t}',
     "targets[0].heartbeat.token_file", "not both"),
    ("{grace: 1m}", "targets[0].heartbeat.token", "set one of"),
])
def test_heartbeat_config_errors(spec: str, where: str, message: str) -> None:
    text = f"targets: [{{id: b, kind: heartbeat, heartbeat: {spec}}}]\n"
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert any(e.startswith(where) and message in e for e in exc.value.errors), exc.value.errors
    assert '"short"' not in "".join(exc.value.errors)  # a token is never echoed
