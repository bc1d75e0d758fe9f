"""SIGHUP reload of a running `slamon run` subprocess.

(a) An invalid file: the old config keeps running and `reload_failed` is logged.
(b) A valid file that keeps one target, removes one and adds one: the kept
    target's counters continue (not reset), the removed one disappears from
    /metrics and the new one appears.
(c) One reload at a time: SIGHUPs during a reload make exactly one more, which
    starts only once the first has ended. The config file is a FIFO, so a
    reload lasts until the test writes the file: no timing guesses.

`SlamonProcess`, `slamon_env` and `stop_process` are shared with the other
subprocess tests (cli, logs, listeners, signals, sdnotify, shard, Prometheus).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.misbehaving import free_port
from tests.promtext import Samples, parse_metrics

REPO = Path(__file__).resolve().parent.parent


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def slamon_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a `python -m slamon` child: this checkout on PYTHONPATH, none
    of the caller's SLAMON_* settings or systemd variables, then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLAMON_")}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a child that still runs; SIGKILL when it has not exited 10 s later."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class SlamonProcess:
    """`python -m slamon run -c CONFIG` (or `python -m slamon ARGV`) with its log in a
    file, stopped on close."""

    def __init__(
        self,
        config: Path | None,
        port: int,
        log: Path,
        env: Mapping[str, str] | None = None,
        *,
        argv: Sequence[str] = (),
    ) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in close()
        args = list(argv) if argv else ["run", "-c", str(config)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slamon", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=slamon_env(env),
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

    def events(self, *names: str) -> list[str]:
        """The `event` of every log line so far, only those in `names` when given."""
        seen = [str(item.get("event")) for item in self.log_lines()]
        return [e for e in seen if e in names] if names else seen

    def wait_count(self, event: str, n: int, limit: float = 10.0) -> None:
        """Wait until `event` has been logged `n` times (fails at once on more)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            count = self.events(event).count(event)
            assert count <= n, f"{count} {event!r} lines, expected {n}: {self.events()}"
            if count == n:
                return
            assert self.proc.poll() is None, f"slamon exited: {self.log_path.read_text()}"
            time.sleep(0.05)
        raise AssertionError(f"not {n} {event!r} lines after {limit}s: {self.events()}")

    def stop(self) -> str:
        """SIGTERM, and a clean exit (status 0 within 30 s) asserted; the log."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0, self.log_path.read_text()
        return self.log_path.read_text()

    def close(self) -> None:
        stop_process(self.proc)
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


def test_sighup_invalid_then_valid_config(tmp_path: Path, silent_port: int) -> None:
    port = free_port()
    config = tmp_path / "slamon.yaml"
    state = tmp_path / "state" / "slamon.sqlite3"
    config.write_text(tcp_config(port, state, {"kept": silent_port, "removed": silent_port}))
    proc = SlamonProcess(config, port, tmp_path / "slamon.log")
    try:
        proc.wait_ready()
        proc.wait_for(lambda s: (probes(s, "kept") or 0) >= 2, "kept probed twice")

        # (a) invalid: the old config stays, the error is logged
        config.write_text(
            tcp_config(port, state, {"kept": silent_port}).replace("interval: 1s", "interval: 0s")
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
        config.write_text(tcp_config(port, state, {"kept": silent_port, "added": silent_port}))
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
        # the kept SLO keeps its state: its valid events are not reset either
        key = ("slamon_sli_valid_total", frozenset({("slo", "kept-slo")}))
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


def write_fifo(path: Path, text: str, proc: SlamonProcess, limit: float = 10.0) -> None:
    """Write `text` into the FIFO `path` once slamon has opened it to read, then close
    it (the reader's end of file)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            assert proc.proc.poll() is None, f"slamon exited: {proc.log_path.read_text()}"
            assert time.monotonic() < deadline, f"slamon never read {path}"
            time.sleep(0.02)
            continue
        break
    try:
        os.set_blocking(fd, True)
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def test_sighups_during_a_reload_make_exactly_one_more(tmp_path: Path, silent_port: int) -> None:
    port = free_port()
    config = tmp_path / "slamon.yaml"
    os.mkfifo(config)
    state = tmp_path / "state" / "slamon.sqlite3"
    first = tcp_config(port, state, {"a": silent_port})
    second = tcp_config(port, state, {"a": silent_port, "b": silent_port})
    proc = SlamonProcess(config, port, tmp_path / "slamon.log")
    try:
        write_fifo(config, first, proc)  # `slamon run` reads its config
        proc.wait_ready()

        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_count("reload_started", 1)  # now blocked opening the FIFO
        for n in range(1, 4):
            # one at a time: the kernel merges a SIGHUP into one still pending
            proc.proc.send_signal(signal.SIGHUP)
            proc.wait_count("reload_queued", n)

        write_fifo(config, second, proc)
        proc.wait_count("reloaded", 1)
        # the queued reload reads the file again, after the first one ended
        proc.wait_count("reload_started", 2)
        write_fifo(config, second, proc)
        proc.wait_count("reloaded", 2)

        # a third reload would start in the same loop step that logged the second
        # `reloaded`; an answer from that loop comes after it, so the log is final
        reloads = {
            dict(labels)["result"]: v for (name, labels), v in proc.metrics().items()
            if name == "slamon_config_reloads_total"
        }
        assert reloads == {"success": 2, "failure": 0}
        assert proc.events("reload_started", "reload_queued", "reloaded") == [
            "reload_started", "reload_queued", "reload_queued", "reload_queued",
            "reloaded", "reload_started", "reloaded",
        ]
        proc.wait_for(lambda s: (probes(s, "b") or 0) >= 1, "the reloaded config runs")
    finally:
        proc.close()
    assert proc.proc.returncode == 0


def test_stop_during_a_stuck_reload(tmp_path: Path, silent_port: int) -> None:
    """A reload blocked reading its file (a hung mount; here a FIFO nobody writes)
    does not hold up SIGTERM: the daemon drains and exits 0 without it."""
    port = free_port()
    config = tmp_path / "slamon.yaml"
    os.mkfifo(config)
    proc = SlamonProcess(config, port, tmp_path / "slamon.log")
    try:
        write_fifo(config, tcp_config(port, tmp_path / "state.sqlite3", {"a": silent_port}), proc)
        proc.wait_ready()
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_count("reload_started", 1)
        proc.proc.send_signal(signal.SIGTERM)
        proc.proc.wait(15)
    finally:
        proc.close()
    assert proc.proc.returncode == 0, proc.log_path.read_text()
    assert proc.events()[-1] == "stopped"
    assert "reloaded" not in proc.events()


async def test_a_reload_keeps_the_running_model_of_every_unchanged_target(
    tmp_path: Path,
) -> None:
    """(d) In process: a reload hands on the running model of each target it leaves as
    it was (worked out on a thread), so the live state and the scheduler tell it
    unchanged by identity; an edited target gets its new model and a new status."""
    from slamon.app.daemon import Daemon
    from slamon.config.loader import load_config

    path = tmp_path / "slamon.yaml"
    text = textwrap.dedent(f"""
        logging: {{level: warning}}
        state: {{path: "{tmp_path}/state.sqlite3"}}
        targets:
          - {{id: a, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/a"}}}}
          - {{id: b, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/b"}}}}
        """)
    path.write_text(text)
    daemon = Daemon(load_config(path), config_path=path, loader=load_config)
    await daemon._open_state()
    try:
        before = {t.id: t for t in daemon.parts.config.targets}
        status = dict(daemon.parts.live.targets)
        path.write_text(text.replace("timeout: 2s, http: {url: \"http://127.0.0.1:9/b\"}",
                                     "timeout: 3s, http: {url: \"http://127.0.0.1:9/b\"}"))
        assert await daemon.reload()
        after = {t.id: t for t in daemon.parts.config.targets}
        assert after["a"] is before["a"]
        assert after["b"] is not before["b"] and after["b"].timeout == 3.0
        assert daemon.parts.live.targets["a"] is status["a"]
        assert daemon.parts.live.targets["b"] is not status["b"]
    finally:
        assert daemon.store is not None
        await daemon.store.close()


async def test_a_reload_that_changes_the_scheduler_says_it_needs_a_restart(
    tmp_path: Path,
) -> None:
    """Probes already scheduled keep their phases and slots: a reload that edits the
    scheduler section says so in one warning, and one that leaves it does not."""
    from structlog.testing import capture_logs

    from slamon.app.daemon import Daemon
    from slamon.config.loader import load_config

    path = tmp_path / "slamon.yaml"
    text = textwrap.dedent(f"""
        logging: {{level: warning}}
        state: {{path: "{tmp_path}/state.sqlite3"}}
        scheduler: {{slot: 50ms}}
        targets:
          - {{id: a, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/a"}}}}
        """)
    path.write_text(text)
    daemon = Daemon(load_config(path), config_path=path, loader=load_config)
    await daemon._open_state()
    try:
        path.write_text(text.replace("interval: 10s", "interval: 20s"))
        with capture_logs() as unchanged:
            assert await daemon.reload()
        path.write_text(text.replace("slot: 50ms", "slot: 0s"))
        with capture_logs() as changed:
            assert await daemon.reload()
    finally:
        assert daemon.store is not None
        await daemon.store.close()
    events = [e["event"] for e in unchanged]
    assert "reloaded" in events and "reload_scheduler_unchanged" not in events
    warned = [e for e in changed if e["event"] == "reload_scheduler_unchanged"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning", changed
    assert "restart" in warned[0]["reason"]


@pytest.mark.parametrize(("given", "slot"), [("", 0.05), ("scheduler: {slot: 20ms}", 0.02),
                                             ("scheduler: {slot: 0s}", 0.0)])
async def test_the_gap_filler_and_the_scheduler_share_one_slot(
    tmp_path: Path, given: str, slot: float,
) -> None:
    """The ticks filled as no data at a start and the ticks then probed must be one
    grid: both take their phases from the slot the components fix at the start."""
    from slamon.app.daemon import Daemon
    from slamon.config.loader import load_config
    from slamon.scheduler import phase_offset

    path = tmp_path / "slamon.yaml"
    path.write_text(textwrap.dedent(f"""
        logging: {{level: warning}}
        state: {{path: "{tmp_path}/state.sqlite3"}}
        {given}
        targets:
          - {{id: a, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/a"}}}}
        """))
    daemon = Daemon(load_config(path), config_path=path, loader=load_config)
    await daemon._open_state()
    try:
        target = daemon.parts.config.targets[0]
        assert daemon.parts.slot == slot
        assert daemon.parts.offset(target) == phase_offset("a", 10.0, slot)
        scheduler = daemon.parts.build_scheduler()
        assert scheduler.slot == slot
    finally:
        assert daemon.store is not None
        await daemon.store.close()
