"""The GIL's switch interval while the daemon runs.

The state writer's thread works beside the event loop every second; with CPython's
5 ms interval each wake-up of the loop could wait that long for the GIL, and probes
started late (docs/benchmarks.md). The daemon runs with 0.5 ms from start to the end of
its drain, and gives the process its interval back when it stops.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

from slamon.app import runtime
from slamon.app.daemon import Daemon
from slamon.config.loader import load_config
from tests.misbehaving import MisbehavingHttpServer, free_port

#: CPython keeps the interval in whole microseconds
shared = pytest.approx(runtime.SHARED_SWITCH_INTERVAL, abs=2e-6)


async def test_the_daemon_hands_the_gil_back_within_half_a_millisecond(
        tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    assert before > runtime.SHARED_SWITCH_INTERVAL  # else the test shows nothing
    async with MisbehavingHttpServer() as target:
        path = tmp_path / "slamon.yaml"
        path.write_text(textwrap.dedent(f"""
            server: {{listen: "127.0.0.1:{free_port()}"}}
            logging: {{level: warning}}
            state: {{path: "{tmp_path}/state.sqlite3"}}
            targets:
              - {{id: a, kind: http, interval: 2s, timeout: 1s, http: {{url: "{target.url('/')}"}}}}
            """))
        daemon = Daemon(load_config(path), config_path=path, loader=load_config)
        running = asyncio.create_task(daemon.run())
        try:
            async with asyncio.timeout(20):
                await daemon.ready.wait()
            assert sys.getswitchinterval() == shared
        finally:
            daemon.request_stop()
            async with asyncio.timeout(20):
                await running
    assert sys.getswitchinterval() == before


def test_loop_first_keeps_a_shorter_interval_and_restores_the_one_it_found() -> None:
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.0001)  # already shorter: kept, not lengthened
        with runtime.loop_first():
            assert sys.getswitchinterval() == pytest.approx(0.0001, abs=2e-6)
        sys.setswitchinterval(0.01)
        with runtime.loop_first():
            assert sys.getswitchinterval() == shared
        assert sys.getswitchinterval() == pytest.approx(0.01, abs=2e-6)
    finally:
        sys.setswitchinterval(before)
