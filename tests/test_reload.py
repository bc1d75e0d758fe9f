"""SIGHUP reload of a running `slamon run` subprocess.

(a) An invalid file: the old config keeps running and `reload_failed` is logged.
(b) A valid file that keeps one target, removes one and adds one: the kept
    target's counters continue (not reset), the removed one disappears from
    /metrics and the new one appears.

`SlamonProcess` is shared with the other subprocess tests (sdnotify, Prometheus).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.misbehaving import free_port
from tests.promtext import Samples, parse_metrics


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class SlamonProcess:
    """`python -m slamon run -c CONFIG` with its log in a file, killed on close."""

    def __init__(
        self, config: Path, port: int, log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in close()
        full_env = dict(os.environ)
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.pop("WATCHDOG_USEC", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slamon", "run", "-c", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )

    def log_lines(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    out.append(item)
        return out

    def wait_ready(self, limit: float = 20.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"slamon exited: {self.log_path.read_text()}"
            with contextlib.suppress(OSError):
                if http_get(self.base + "/readyz", 1.0)[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"not ready after {limit}s: {self.log_path.read_text()}")

    def metrics(self) -> Samples:
        status, text = http_get(self.base + "/metrics")
        assert status == 200
        return parse_metrics(text)

    def wait_for(self, cond: Callable[[Samples], bool], what: str, limit: float = 15.0) -> Samples:
        deadline = time.monotonic() + limit
        samples: Samples = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"slamon exited: {self.log_path.read_text()}"
            samples = self.metrics()
            if cond(samples):
                return samples
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_log(self, event: str, limit: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for item in self.log_lines():
                if item.get("event") == event:
                    return item
            time.sleep(0.1)
        raise AssertionError(f"no {event!r} log line: {self.log_path.read_text()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def probes(samples: Samples, target: str, result: str = "success") -> float | None:
    return samples.get(
        ("slamon_probes_total", frozenset({("target", target), ("result", result)}))
    )


def tcp_config(port: int, state: Path, target_ports: dict[str, int]) -> str:
    """A config of TCP targets (id -> port on 127.0.0.1), 1 s interval, one SLO each."""
    targets = "".join(
        textwrap.dedent(
            f"""\
              - id: {tid}
                kind: tcp
                interval: 1s
                timeout: 500ms
                tcp: {{host: 127.0.0.1, port: {tport}}}
            """
        )
        for tid, tport in target_ports.items()
    )
    slos = "".join(
        f"  - {{id: {tid}-slo, targets: [{tid}], objective: 0.9, window: 1h}}\n"
        for tid in target_ports
    )
    return (
        f"server: {{listen: '127.0.0.1:{port}'}}\n"
        "logging: {level: info, format: json}\n"
        f"state: {{path: '{state}'}}\n"
        f"targets:\n{targets}slos:\n{slos}"
    )


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections (the kernel's backlog does)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        yield s.getsockname()[1]


def test_sighup_invalid_then_valid_config(tmp_path: Path, listener: int) -> None:
    port = free_port()
    config = tmp_path / "slamon.yaml"
    state = tmp_path / "state" / "slamon.sqlite3"
    config.write_text(tcp_config(port, state, {"kept": listener, "removed": listener}))
    proc = SlamonProcess(config, port, tmp_path / "slamon.log")
    try:
        proc.wait_ready()
        proc.wait_for(lambda s: (probes(s, "kept") or 0) >= 2, "kept probed twice")

        # (a) invalid: the old config stays, the error is logged
        config.write_text(
            tcp_config(port, state, {"kept": listener}).replace("interval: 1s", "interval: 0s")
        )
        proc.proc.send_signal(signal.SIGHUP)
        failed = proc.wait_log("reload_failed")
        assert any("interval" in str(e) for e in failed.get("errors", [])), failed
        before = proc.metrics()
        assert probes(before, "removed") is not None, "old config must keep running"
        kept_before = probes(before, "kept") or 0
        proc.wait_for(
            lambda s: (probes(s, "removed") or 0) > (probes(before, "removed") or 0),
            "the old config keeps probing after a failed reload",
        )

        # (b) valid: keep `kept`, drop `removed`, add `added`
        config.write_text(tcp_config(port, state, {"kept": listener, "added": listener}))
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_log("reloaded")
        after = proc.wait_for(
            lambda s: (probes(s, "added") or 0) >= 1, "the new target is probed"
        )
        assert probes(after, "removed") is None, "the removed target must leave /metrics"
        assert (probes(after, "kept") or 0) >= kept_before, "kept target's counter was reset"
        proc.wait_for(
            lambda s: (probes(s, "kept") or 0) > kept_before + 1, "kept target keeps counting"
        )
        # the kept SLO keeps its window: its valid events are not reset either
        key = ("slamon_sli_valid_events", frozenset({("slo", "kept-slo"), ("window", "1h")}))
        assert after.get(key, 0) >= kept_before
        assert not any(k[1] == frozenset({("slo", "removed-slo")}) for k in after)
        reloads = {
            dict(labels)["result"]: v for (name, labels), v in after.items()
            if name == "slamon_config_reloads_total"
        }
        assert reloads == {"success": 1, "failure": 1}
    finally:
        proc.close()
    assert proc.proc.returncode == 0
