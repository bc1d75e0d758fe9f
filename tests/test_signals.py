"""Stop signals on a running `slamon run` subprocess whose probes hang.

The targets are a loopback socket that listens but never accepts or sends: the
kernel completes each TCP handshake, and a probe that waits for a banner
(`expect`) hangs until its timeout. So the drain after SIGTERM lasts that long.

(a) One SIGTERM drains: the probes in flight time out, the state is written,
    exit 0.
(b) A second SIGTERM or SIGINT during the drain exits at once, 128 + signal,
    with one `forced_exit` line; SIGHUP meanwhile is ignored; the state file is
    intact and the next start resumes from it.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.misbehaving import free_port
from tests.promtext import Samples
from tests.test_reload import SlamonProcess, tcp_config


def hanging_config(
    port: int, state: Path, target_port: int, *, n: int, interval: str, timeout: str
) -> str:
    """`n` TCP targets that wait for a banner that never comes; first probes spread
    over the interval, so some start within a second or two of start-up."""
    targets = "".join(
        textwrap.dedent(
            f"""\
              - id: hang-{i}
                kind: tcp
                interval: {interval}
                timeout: {timeout}
                tcp: {{host: 127.0.0.1, port: {target_port}, expect: banner}}
            """
        )
        for i in range(n)
    )
    return (
        f"server: {{listen: '127.0.0.1:{port}'}}\n"
        "logging: {level: info, format: json}\n"
        f"state: {{path: '{state}'}}\n"
        f"targets:\n{targets}"
        "slos:\n  - {id: hang, targets: [hang-0], objective: 0.9, window: 1h}\n"
    )


def in_flight(samples: Samples) -> float:
    return samples.get(("slamon_scheduler_in_flight", frozenset()), 0.0)


def wait_exit(proc: SlamonProcess, limit: float) -> float:
    """Seconds until the process exits (fails after `limit`)."""
    start = time.monotonic()
    try:
        proc.proc.wait(limit)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"still running {limit}s later: {proc.log_path.read_text()}"
        ) from None
    return time.monotonic() - start


def test_one_stop_signal_drains_and_exits_0(tmp_path: Path, silent_port: int) -> None:
    port = free_port()
    config = tmp_path / "slamon.yaml"
    config.write_text(hanging_config(
        port, tmp_path / "state.sqlite3", silent_port, n=20, interval="4s", timeout="3s"
    ))
    proc = SlamonProcess(config, port, tmp_path / "slamon.log")
    try:
        proc.wait_ready()
        proc.wait_for(lambda s: in_flight(s) >= 1, "a probe in flight")
        proc.proc.send_signal(signal.SIGTERM)
        # bounded by the longest timeout (3 s) plus the scheduler's margin
        wait_exit(proc, 15)
    finally:
        proc.close()
    assert proc.proc.returncode == 0, proc.log_path.read_text()
    events = proc.events()
    assert "draining" in events and events[-1] == "stopped", events
    assert "forced_exit" not in events


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_second_stop_signal_exits_at_once(
    tmp_path: Path, silent_port: int, second: signal.Signals
) -> None:
    port = free_port()
    config = tmp_path / "slamon.yaml"
    state = tmp_path / "state.sqlite3"
    # the drain would last up to 25 s: the timeout of the probes in flight
    config.write_text(
        hanging_config(port, state, silent_port, n=30, interval="30s", timeout="25s")
    )
    proc = SlamonProcess(config, port, tmp_path / "slamon.log")
    try:
        proc.wait_ready()
        proc.wait_for(lambda s: in_flight(s) >= 1, "a probe in flight", limit=35)
        proc.proc.send_signal(signal.SIGTERM)
        draining = proc.wait_log("draining")
        assert draining["in_flight"] >= 1
        # a reload during the drain would start work that is about to be dropped
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_log("reload_ignored")

        proc.proc.send_signal(second)
        took = wait_exit(proc, 10)
    finally:
        proc.close()
    assert proc.proc.returncode == 128 + second, proc.log_path.read_text()
    assert took < 10
    [forced] = [line for line in proc.log_lines() if line.get("event") == "forced_exit"]
    assert forced["signal"] == second.name
    assert forced["in_flight"] >= 1
    assert forced["exit_code"] == 128 + second
    assert forced["level"] == "warning"
    assert "stopped" not in proc.events(), "a forced exit does not drain"

    # the state survives the forced exit like a crash: intact, and resumed on start
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        config.write_text(tcp_config(port, state, {"hang-0": listener.getsockname()[1]}))
        again = SlamonProcess(config, port, tmp_path / "again.log")
        try:
            again.wait_ready()
            restored = again.wait_log("state_restored")
            assert restored["path"] == str(state)
        finally:
            again.close()
    assert again.proc.returncode == 0, again.log_path.read_text()
