"""The SLAs' policy digests worked out in a forked child during start-up
(slamon/app/digests_ahead.py).

Each case runs in a fresh interpreter (this file as a script): the child is forked only
from a process with one thread, and a pytest process may hold others. The driver prints
one JSON line; the test asserts on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
server: {{listen: "127.0.0.1:0"}}
logging: {{level: warning, format: json}}
state: {{path: "{state}"}}
targets:
  - {{id: web, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/"}}}}
  - {{id: api, kind: http, interval: 30s, timeout: 2s,
      http: {{url: "http://u:pw@127.0.0.1:9/a?token=x", body: "q=1", method: POST}}}}
  - {{id: db, kind: tcp, interval: 10s, timeout: 1s, tcp: {{host: 127.0.0.1, port: 9}}}}
maintenance:
  - id: m
    kind: once
    targets: [web]
    once: {{start: "2020-01-01T00:00:00Z", end: "2020-01-02T00:00:00Z"}}
slos:
  - {{id: shop, targets: [web, api], objective: {objective}, window: 1d}}
  - {{id: fast, targets: [web], objective: 0.9, sli: latency, latency_threshold: 300ms}}
  - {{id: store, targets: [db], objective: 0.999}}
slas:
  - {{id: gold, slo: shop, period: {{kind: daily}}, evidence_resolution: 5m}}
  - {{id: quick, slo: fast, period: {{kind: monthly}}, min_valid_samples: 3}}
  - {{id: disk, slo: store, period: {{kind: weekly}}}}
"""


def write_config(work: Path, objective: str = "0.95") -> Path:
    path = work / "slamon.yaml"
    path.write_text(textwrap.dedent(CONFIG.format(state=work / "state.sqlite3",
                                                  objective=objective)))
    return path


def drive(case: str, work: Path) -> dict[str, Any]:
    """Run `case` of this file's driver in a fresh interpreter; its JSON answer."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    res = subprocess.run([sys.executable, __file__, case, str(work)], capture_output=True,
                         text=True, timeout=120, env=env, cwd=work)
    assert res.returncode == 0, res.stderr
    answer: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return answer


def test_the_childs_digests_are_those_worked_out_in_process(tmp_path: Path) -> None:
    """Every SLA's digest, as `policy_digests` gives it in the daemon's process; the child
    is another process, and reaped once read."""
    write_config(tmp_path)
    got = drive("same", tmp_path)
    assert got["child"] != got["parent"]
    assert got["ids"] == ["disk", "gold", "quick"]
    assert got["equal"] is True and got["distinct"] == 3
    assert got["reaped"] is True and got["logs"] == []


def test_a_child_that_fails_gives_none_and_says_why(tmp_path: Path) -> None:
    write_config(tmp_path)
    got = drive("raises", tmp_path)
    assert got["result"] is None
    assert got["logs"] == [{"event": "policy_digests_child_failed", "reason": "exited with 1",
                            "slas": 3, "log_level": "warning"}]


def test_a_ctrl_c_in_the_child_does_not_reach_the_daemons_loop(tmp_path: Path) -> None:
    """A SIGINT reaches the whole foreground process group. The child gives up the daemon's
    handlers first, so it dies of it and the daemon's event loop, which shares the wakeup
    fd, hears nothing (a second Ctrl-C there forces an exit)."""
    write_config(tmp_path)
    got = drive("sigint", tmp_path)
    assert got["handler_calls"] == 0
    assert got["result"] is None
    assert got["logs"][0]["reason"] == "killed by SIGINT"


def test_no_child_beside_another_thread_or_under_the_minimum(tmp_path: Path) -> None:
    write_config(tmp_path)
    got = drive("refused", tmp_path)
    assert got == {"thread": None, "few": None, "children": []}


def test_a_cancelled_child_is_stopped_and_reaped(tmp_path: Path) -> None:
    write_config(tmp_path)
    got = drive("cancel", tmp_path)
    assert got["reaped"] is True and got["fd_closed"] is True
    assert got["status"] == "killed by SIGKILL"


def test_the_child_of_parts_never_opened_is_stopped_when_they_go(tmp_path: Path) -> None:
    """A daemon made and dropped without opening its state (its parts fork the child as
    they are made) leaves no child behind, and nothing holds its config."""
    write_config(tmp_path)
    got = drive("unopened", tmp_path)
    assert got == {"forked": True, "reaped": True, "fd_closed": True, "config_freed": True}


def test_a_restart_takes_the_childs_digests_and_a_first_start_stops_it(
    tmp_path: Path,
) -> None:
    """Through the daemon's start-up, with the child's threshold at one SLA: the first
    start builds every document to store it (the child is stopped); a restart builds none
    in the daemon's process; after an edit made while stopped, the open period keeps the
    digest it began with and the next takes the child's digest of the edit. The child is
    forked as the daemon's parts are made, and again if their config is replaced."""
    write_config(tmp_path)
    got = drive("daemon", tmp_path)
    assert got["first"]["built"] == 3
    assert got["restart"]["built"] == 0
    assert got["restart"]["digests"] == got["expected"]["before"]
    edited = got["edited"]
    assert edited["built"] == 0
    assert edited["gold"] == [got["expected"]["before"]["gold"], got["expected"]["after"]["gold"]]
    assert edited["quick"] == [got["expected"]["after"]["quick"]]
    assert got["expected"]["before"]["gold"] != got["expected"]["after"]["gold"]
    # a config replaced between the parts' making and the state's opening: the child
    # forked for the first is stopped and one for the new config gives its digests
    assert got["replaced"] == {**{k: v for k, v in edited.items()}, "built": 0}
    assert got["forks"] == [True, True, True, True, True]


# ------------------------------------------------------------------------ the driver


def _logs() -> Any:
    from structlog.testing import capture_logs

    return capture_logs()


async def _same(work: Path) -> dict[str, Any]:
    from slamon.app import digests_ahead
    from slamon.config.loader import load_config
    from slamon.sla.policy import policy_digests

    config = load_config(work / "slamon.yaml")
    with _logs() as logs:
        ahead = digests_ahead.start(config, minimum=1)
        assert ahead is not None
        got = await ahead.take()
    assert got is not None and got.config is config
    try:
        os.waitpid(ahead.child.pid, os.WNOHANG)
        reaped = False
    except ChildProcessError:
        reaped = True
    want = policy_digests(config).digests
    return {"child": ahead.child.pid, "parent": os.getpid(), "ids": sorted(got.digests),
            "equal": dict(got.digests) == dict(want), "reaped": reaped,
            "distinct": len(set(got.digests.values())), "logs": logs}


async def _raises(work: Path) -> dict[str, Any]:
    from slamon.app import digests_ahead
    from slamon.config.loader import load_config

    def fail(config: Any) -> Any:
        raise RuntimeError("no digests")

    digests_ahead.policy_digests = fail  # type: ignore[assignment]  # the fork copies it
    config = load_config(work / "slamon.yaml")
    with _logs() as logs:
        ahead = digests_ahead.start(config, minimum=1)
        assert ahead is not None
        result = await ahead.take()
    return {"result": result, "logs": logs}


async def _sigint(work: Path) -> dict[str, Any]:
    from slamon.app import digests_ahead
    from slamon.config.loader import load_config

    ready_r, ready_w = os.pipe()
    gate_r, gate_w = os.pipe()

    def held(config: Any) -> Any:
        os.close(gate_w)  # the child's copy: the parent's closing the gate ends the read
        os.write(ready_w, b"r")  # in the child, its signals reset
        os.read(gate_r, 1)
        from slamon.sla.policy import policy_digests
        return policy_digests(config)

    digests_ahead.policy_digests = held  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    heard = loop.create_future()
    calls = 0

    def on_sigint() -> None:
        nonlocal calls
        calls += 1
        if not heard.done():
            heard.set_result("handler")

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    config = load_config(work / "slamon.yaml")
    with _logs() as logs:
        ahead = digests_ahead.start(config, minimum=1)
        assert ahead is not None
        await asyncio.to_thread(os.read, ready_r, 1)
        os.kill(ahead.child.pid, signal.SIGINT)

        def died() -> None:
            os.waitid(os.P_PID, ahead.child.pid, os.WEXITED | os.WNOWAIT)
            loop.call_soon_threadsafe(lambda: heard.done() or heard.set_result("died"))

        threading.Thread(target=died, daemon=True).start()
        await heard  # whichever comes first; a child that lives on finishes below
        os.close(gate_w)
        result = await ahead.take()
        for _ in range(3):  # a wakeup byte written before the child died is read by now
            await asyncio.sleep(0)
    loop.remove_signal_handler(signal.SIGINT)
    return {"handler_calls": calls, "result": None if result is None else "digests",
            "logs": logs}


async def _refused(work: Path) -> dict[str, Any]:
    from slamon.app import digests_ahead
    from slamon.config.loader import load_config

    config = load_config(work / "slamon.yaml")
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        beside = digests_ahead.start(config, minimum=1)
    finally:
        release.set()
        other.join()
    few = digests_ahead.start(config, minimum=4)
    try:
        os.waitpid(-1, os.WNOHANG)
        children: list[int] = [0]
    except ChildProcessError:
        children = []
    return {"thread": beside and beside.child.pid, "few": few and few.child.pid,
            "children": children}


async def _cancel(work: Path) -> dict[str, Any]:
    from slamon.app import digests_ahead
    from slamon.config.loader import load_config

    gate_r, gate_w = os.pipe()

    def held(config: Any) -> Any:
        os.read(gate_r, 1)  # never opened: only the SIGKILL ends it
        raise AssertionError

    digests_ahead.policy_digests = held  # type: ignore[assignment]
    config = load_config(work / "slamon.yaml")
    ahead = digests_ahead.start(config, minimum=1)
    assert ahead is not None
    fd = ahead.child.fd
    seen: list[str] = []
    real_waitpid = os.waitpid

    def waitpid(pid: int, options: int) -> tuple[int, int]:
        got = real_waitpid(pid, options)
        seen.append(f"killed by {signal.Signals(os.WTERMSIG(got[1])).name}")
        return got

    os.waitpid = waitpid  # type: ignore[assignment]
    ahead.cancel()
    os.waitpid = real_waitpid
    try:
        os.fstat(fd)
        fd_closed = False
    except OSError:
        fd_closed = True
    try:
        real_waitpid(ahead.child.pid, os.WNOHANG)
        reaped = False
    except ChildProcessError:
        reaped = True
    os.close(gate_w)
    return {"reaped": reaped, "fd_closed": fd_closed, "status": seen[0]}


async def _unopened(work: Path) -> dict[str, Any]:
    import gc
    import weakref

    from slamon.app import digests_ahead
    from slamon.app.daemon import Daemon
    from slamon.config.loader import load_config

    digests_ahead.FROM_SLAS = 1
    path = work / "slamon.yaml"
    config = load_config(path)
    gone = weakref.ref(config)
    daemon = Daemon(config, config_path=path, loader=load_config)
    ahead = daemon.parts._ahead
    if ahead is None:
        return {"forked": False}
    pid, fd = ahead.child.pid, ahead.child.fd
    del daemon, ahead, config
    gc.collect()
    try:
        os.waitpid(pid, os.WNOHANG)
        reaped = False
    except ChildProcessError:
        reaped = True
    try:
        os.fstat(fd)
        fd_closed = False
    except OSError:
        fd_closed = True
    return {"forked": True, "reaped": reaped, "fd_closed": fd_closed,
            "config_freed": gone() is None}


async def _daemon(work: Path) -> dict[str, Any]:
    from slamon.app import digests_ahead
    from slamon.app.daemon import Daemon
    from slamon.config.loader import load_config
    from slamon.sla import tracker as tracker_module
    from slamon.sla.policy import policy_digest_for

    digests_ahead.FROM_SLAS = 1
    built = 0
    real = tracker_module.policy_json_2

    def counted(*args: Any) -> bytes:
        nonlocal built
        built += 1
        return real(*args)

    tracker_module.policy_json_2 = counted  # type: ignore[assignment]
    forks: list[bool] = []
    real_start = digests_ahead.start

    def start(config: Any, minimum: int | None = None) -> Any:
        ahead = real_start(config, minimum)
        forks.append(ahead is not None)
        return ahead

    async def opened(replaced: bool = False) -> dict[str, Any]:
        nonlocal built
        built = 0
        path = work / "slamon.yaml"
        daemon = Daemon(load_config(path), config_path=path, loader=load_config)
        if replaced:  # as discovery's first read does before the state is opened
            daemon.parts.apply_config(load_config(path))
        await daemon._open_state()
        tracker, store = daemon.parts.tracker, daemon.store
        assert tracker is not None and store is not None
        # the policies must be the config's, as the store would write them
        await store.close()
        return {"built": built,
                "digests": {sid: rt.policies[-1].digest.hex() for sid, rt in tracker.slas.items()},
                "policies": {sid: [p.digest.hex() for p in rt.policies]
                             for sid, rt in tracker.slas.items()}}

    def expected() -> dict[str, str]:
        config = load_config(work / "slamon.yaml")
        slos = {s.id: s for s in config.slos}
        return {sla.id: policy_digest_for(sla, slos[sla.slo], config).hex()
                for sla in config.slas}

    digests_ahead.start = start  # type: ignore[assignment]
    first = await opened()
    restart = await opened()
    before = expected()
    write_config(work, objective="0.97")
    after = expected()
    edited = await opened()
    replaced = await opened(replaced=True)
    return {"first": first, "restart": restart,
            "edited": {"built": edited["built"], **edited["policies"]},
            "replaced": {"built": replaced["built"], **replaced["policies"]},
            "expected": {"before": before, "after": after}, "forks": forks}


CASES = {"same": _same, "raises": _raises, "sigint": _sigint, "refused": _refused,
         "cancel": _cancel, "daemon": _daemon, "unopened": _unopened}


if __name__ == "__main__":
    from slamon.app import runtime

    case, where = sys.argv[1], Path(sys.argv[2])
    print(json.dumps(runtime.run(lambda: CASES[case](where)), default=str))
