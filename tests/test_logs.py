"""Every line slamon writes is one structured event in the configured format: its own
events and the standard library's (aiohttp, asyncio, warnings) alike."""

from __future__ import annotations

import io
import json
import logging
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slamon.util.log import configure_logging, get_logger
from tests.misbehaving import free_port
from tests.test_reload import SlamonProcess, tcp_config


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def json_lines(text: str) -> list[dict[str, object]]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    out = []
    for ln in lines:
        item = json.loads(ln)  # fails the test on any line that is not JSON
        assert isinstance(item, dict) and "event" in item and "level" in item, ln
        out.append(item)
    return out


def test_stdlib_records_and_warnings_are_json_events(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    get_logger().info("own_event", n=1)
    try:
        raise RuntimeError("boom in a task")
    except RuntimeError:
        logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=True)
    logging.getLogger("some.library").debug("below the level: not shown")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old API", DeprecationWarning, stacklevel=1)
    events = json_lines(stream.getvalue())
    assert [e["event"] for e in events][:2] == ["own_event", "Task exception was never retrieved"]
    task = events[1]
    assert task["level"] == "error" and task["logger"] == "asyncio"
    assert "RuntimeError: boom in a task" in str(task["exception"])
    assert any(e.get("logger") == "py.warnings" and "an old API" in str(e["event"])
               for e in events), events
    assert not any("below the level" in str(e["event"]) for e in events)
    # configuring again replaces the handler: one line per record, not two
    stream2 = io.StringIO()
    configure_logging("info", "json", stream=stream2)
    logging.getLogger("x").warning("once")
    assert len(json_lines(stream2.getvalue())) == 1
    assert "once" not in stream.getvalue()


def test_console_format_for_stdlib_records(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)
    logging.getLogger("aiohttp.server").warning("plain record")
    text = stream.getvalue()
    assert "plain record" in text and not text.lstrip().startswith("{")


def test_garbage_requests_give_one_json_warning_each_no_traceback(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "slamon.yaml"
    config.write_text(tcp_config(port, tmp_path / "state.sqlite3", {"db": 9}))
    proc = SlamonProcess(config, port, tmp_path / "log")
    try:
        proc.wait_ready(30)
        for payload in (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 20000 + b"\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(payload)
                assert s.recv(64).startswith(b"HTTP/1.0 400"), payload[:20]
        text = proc.stop()
    finally:
        proc.close()
    events = json_lines(text)
    bad = [e for e in events if e["event"] == "http_bad_request"]
    assert len(bad) == 2, events
    for e in bad:
        assert e["level"] == "warning" and "LineTooLong" in str(e["reason"])
        assert e["peer"] == "127.0.0.1" and "exception" not in e
    assert "Traceback" not in text


def test_a_first_result_up_is_logged_at_debug_and_every_change_above(tmp_path: Path) -> None:
    """At 10,000 targets every start logged 10,000 `target_up` lines: a target's first
    result being up is news to no one (debug); down at first, and every change after,
    stay at warning and info. The event is published either way (it resolves an
    incident left open before a restart)."""
    from structlog.testing import capture_logs

    from slamon.app.daemon import Daemon
    from slamon.config.loader import parse_config
    from slamon.probers.base import FailureReason, ProbeResult

    daemon = Daemon(parse_config(
        "server: {listen: \"127.0.0.1:0\"}\n"
        f"state: {{path: \"{tmp_path / 'state.sqlite3'}\"}}\n"
        "targets:\n"
        "  - {id: a, kind: tcp, interval: 10s, timeout: 1s, tcp: {host: 127.0.0.1, port: 9}}\n"
        "  - {id: b, kind: tcp, interval: 10s, timeout: 1s, tcp: {host: 127.0.0.1, port: 9}}\n"))
    a, b = daemon.parts.config.targets
    published = daemon.parts.events.subscribe(16)
    up = ProbeResult(ok=True, duration=0.01)
    down = ProbeResult(ok=False, duration=0.01, reason=FailureReason.REFUSED)
    with capture_logs() as logs:
        for target, t, result in ((a, 0, up), (b, 0, down), (a, 10, up), (a, 20, down),
                                  (a, 30, up), (b, 10, up)):
            daemon.parts.on_result(target, float(t), result)
    assert [(e["event"], e["target"], e["log_level"]) for e in logs] == [
        ("target_up", "a", "debug"), ("target_down", "b", "warning"),
        ("target_down", "a", "warning"), ("target_up", "a", "info"),
        ("target_up", "b", "info")]
    assert [(e.kind.value, e.target) for e in drained(published.queue)] == [
        ("target_up", "a"), ("target_down", "b"), ("target_down", "a"), ("target_up", "a"),
        ("target_up", "b")]


def drained(queue: Any) -> list[Any]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out
