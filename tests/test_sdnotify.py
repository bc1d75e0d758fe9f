"""sd_notify protocol against a real AF_UNIX datagram socket, and the daemon's use of it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slamon.app.sdnotify import SystemdNotifier, status_line, watchdog_interval, watchdog_loop
from tests.misbehaving import free_port
from tests.test_reload import SlamonProcess, http_get, tcp_config


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def notify_socket(short_dir: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(short_dir / "notify"))
    sock.settimeout(5)
    yield sock
    sock.close()


def recv_all(sock: socket.socket, timeout: float = 0.2) -> list[str]:
    out: list[str] = []
    sock.settimeout(timeout)
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            return out


def test_from_env_without_socket_is_none() -> None:
    assert SystemdNotifier.from_env({}) is None
    assert SystemdNotifier.from_env({"NOTIFY_SOCKET": ""}) is None
    assert SystemdNotifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_messages_reach_a_real_socket(notify_socket: socket.socket) -> None:
    address = notify_socket.getsockname()
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": address})
    assert notifier is not None
    assert notifier.ready("probing 3 targets")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=probing 3 targets"
    assert notifier.status("probing 1200 targets,\n 3 reports queued")
    assert notify_socket.recv(4096) == b"STATUS=probing 1200 targets, 3 reports queued"
    assert notifier.watchdog()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    assert notifier.reloading()
    lines = notify_socket.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    usec = int(lines[1].split("=")[1])
    assert abs(usec / 1e6 - time.monotonic()) < 5
    assert notifier.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_abstract_socket() -> None:
    name = f"slamon-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier is not None
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"


def test_send_errors_never_raise(short_dir: Path) -> None:
    notifier = SystemdNotifier(str(short_dir / "nobody-listens"))
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert notifier.errors == 2


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(mine) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None


def test_status_line() -> None:
    assert status_line(1) == "probing 1 target"
    assert status_line(1200, 3) == "probing 1200 targets, 3 reports queued"
    line = status_line(2, 1, reloads_failed=1)
    assert line == "probing 2 targets, 1 report queued, 1 failed reload"


async def test_watchdog_loop_pings_from_the_loop(notify_socket: socket.socket) -> None:
    notifier = SystemdNotifier(notify_socket.getsockname())
    notify_socket.setblocking(False)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(
        watchdog_loop(notifier, lambda: "probing 5 targets", interval=0.05, status_every=0.1)
    )
    await asyncio.sleep(0.3)
    got = recv_all(notify_socket, 0.01)
    assert got.count("WATCHDOG=1") >= 3
    assert got.count("STATUS=probing 5 targets") == 1, "unchanged status is sent once"

    # a blocked event loop sends nothing: systemd's watchdog will fire
    time.sleep(0.3)
    assert recv_all(notify_socket, 0.01) == []
    await asyncio.sleep(0.12)
    assert "WATCHDOG=1" in recv_all(notify_socket, 0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.is_running()


async def test_watchdog_loop_without_notifier_returns() -> None:
    async with asyncio.timeout(1):
        await watchdog_loop(None, lambda: "x")


def test_daemon_sends_ready_after_readyz_watchdog_and_stopping(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    """`slamon run` under a fake systemd: READY=1 only once /readyz is 200, then
    WATCHDOG=1 at half of WATCHDOG_USEC, a STATUS= line, STOPPING=1 on SIGTERM."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = free_port()
        config = tmp_path / "slamon.yaml"
        config.write_text(
            tcp_config(port, tmp_path / "state.sqlite3", {"a": listener.getsockname()[1]})
        )
        proc = SlamonProcess(
            config,
            port,
            tmp_path / "slamon.log",
            env={"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "1000000"},
        )
        try:
            notify_socket.settimeout(20)
            messages: list[str] = []
            while not any("READY=1" in m.split("\n") for m in messages):
                messages.append(notify_socket.recv(4096).decode())
                # whatever came before READY=1, /readyz must already be 200 when it arrives
            assert http_get(proc.base + "/readyz")[0] == 200
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not (
                any("WATCHDOG=1" in m for m in messages)
                and any("STATUS=probing 1 target" in m for m in messages)
            ):
                messages.extend(recv_all(notify_socket, 0.2))
            assert any("WATCHDOG=1" in m for m in messages), messages
            assert any("STATUS=probing 1 target" in m for m in messages), messages
            # reload: RELOADING=1 (with MONOTONIC_USEC), then READY=1 again
            messages = recv_all(notify_socket, 0.05)
            proc.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                m.startswith("READY=1") for m in messages
            ):
                messages.extend(recv_all(notify_socket, 0.2))
            lines = [m.split("\n")[0] for m in messages if m.startswith(("RELOADING", "READY"))]
            assert lines[:1] == ["RELOADING=1"] and "READY=1" in lines, messages
            proc.proc.send_signal(signal.SIGTERM)
            proc.proc.wait(15)
            messages.extend(recv_all(notify_socket, 0.2))
            assert "STOPPING=1" in messages
        finally:
            proc.close()
        assert proc.proc.returncode == 0
