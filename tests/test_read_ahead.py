"""`slamon run`'s config file read and parsed in a forked child while slamon imports
(slamon/config/read_ahead.py, slamon/util/forked.py).

The cases that fork run in a fresh interpreter (this file as a script): a child is forked
only from a process with one thread, and a pytest process may hold others. The driver
prints one JSON line; the test asserts on it. `slamon run` itself runs as an operator
runs it, on a file past the threshold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.misbehaving import free_port
from tests.test_reload import SlamonProcess, slamon_env

ROOT = Path(__file__).resolve().parents[1]


def big_config(work: Path, targets: int, tail: str = "") -> Path:
    """`targets` TCP targets on 127.0.0.1:9 and an SLO each: past the read-ahead's
    threshold from ~1,500 targets."""
    lines = [f'server: {{listen: "127.0.0.1:{free_port()}"}}', "logging: {level: warning}",
             f'state: {{path: "{work}/state.sqlite3"}}', "targets:"]
    lines += [f"  - {{id: t{i}, kind: tcp, interval: 30s, timeout: 1s, "
              f"tcp: {{host: 127.0.0.1, port: 9}}, labels: {{team: padding-{i:06d}}}}}"
              for i in range(targets)]
    lines.append("slos:")
    lines += [f"  - {{id: s{i}, targets: [t{i}], objective: 0.99}}" for i in range(targets)]
    path = work / "slamon.yaml"
    path.write_text("\n".join(lines) + "\n" + tail)
    return path


def drive(case: str, path: Path) -> dict[str, Any]:
    res = subprocess.run([sys.executable, __file__, case, str(path)], capture_output=True,
                         text=True, timeout=120, env=slamon_env(), cwd=path.parent)
    assert res.returncode == 0, res.stderr
    answer: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return answer


def test_the_childs_parse_is_the_file_as_read_in_process(tmp_path: Path) -> None:
    """The same plain data, from another process that read the file once: an edit after
    the child read it does not reach the config."""
    path = big_config(tmp_path, 40)
    got = drive("same", path)
    assert got["child"] != got["parent"] and got["reaped"] is True
    assert got["equal"] is True
    assert got["plain"] is True  # no '$' in the file: no value to interpolate
    assert (got["targets"], got["in_file"]) == (40, 41)  # only the child read the file


def test_references_in_a_file_the_child_read_are_interpolated(tmp_path: Path) -> None:
    """The child tells the parent the file holds a '$': its `${NAME}` references are
    resolved from the parent's environment, and an escaped `$${` stays literal."""
    path = big_config(tmp_path, 40)
    text = path.read_text()
    path.write_text(text.replace("team: padding-000007", "team: \"${TEAM}\"")
                    .replace("team: padding-000008", 'team: "$${TEAM}\\x24"'))
    got = drive("references", path)
    assert got == {"plain": False, "t7": "blue", "t8": "${TEAM}$", "t9": "padding-000009"}


def test_the_parse_crosses_as_marshal_bytes_or_whole(tmp_path: Path) -> None:
    """Plain data comes back as marshal bytes; a file holding a timestamp, which marshal
    cannot carry, comes back pickled whole; either way as parsed in process, a value
    given twice by an alias still one object."""
    path = big_config(tmp_path, 40, tail="shared: &s [1, 2.5, .nan]\nagain: *s\n")
    got = drive("carried", path)
    assert got["plain"] == {"sent": "bytes", "equal": True, "shared": True}
    assert got["timestamp"] == {"sent": "dict", "equal": True, "shared": True}


def test_a_file_the_child_finds_invalid_gives_the_same_errors(tmp_path: Path) -> None:
    path = big_config(tmp_path, 10, tail="slas: [{id: a, slo: s0\n")
    got = drive("invalid", path)
    assert got["child"] == got["in_process"]
    assert got["child"][0].startswith("line 27, column 1:"), got["child"]


def test_a_config_error_crosses_a_pipe_whole() -> None:
    """What a reading child sends back: the errors and the source, not the message text
    read as a list of characters."""
    import pickle

    from slamon.config.yamlfile import ConfigError

    sent = ConfigError(["line 3, column 1: bad", "targets[0].id: missing"], "x.yaml")
    got = pickle.loads(pickle.dumps(sent))
    assert (type(got), got.errors, got.source, str(got)) == (
        ConfigError, sent.errors, "x.yaml", str(sent))


def test_a_child_that_gives_nothing_leaves_the_read_to_the_parent(tmp_path: Path) -> None:
    path = big_config(tmp_path, 10)
    got = drive("killed", path)
    assert got == {"why": "killed by SIGKILL", "targets": 10}


def test_no_child_for_a_small_or_missing_file(tmp_path: Path) -> None:
    path = big_config(tmp_path, 10)
    got = drive("refused", path)
    assert got == {"small": None, "missing": None, "children": 0}


def test_slamon_run_on_a_large_file_starts_and_reports_its_errors(tmp_path: Path) -> None:
    """Past the threshold `slamon run` takes the child's parse: it starts with every
    target, and a file with a YAML error or an invalid value stops it with the message
    `check-config` gives, no traceback."""
    path = big_config(tmp_path, 2000)
    assert path.stat().st_size > 256 * 1024
    proc = SlamonProcess(path, _port(path), tmp_path / "run.log")
    try:
        proc.wait_ready(60)
        metrics = _get(proc.base + "/metrics").splitlines()
        assert "slamon_targets 2000" in metrics
    finally:
        proc.close()
    for tail in ("slas: [{id: a, slo: s0\n", "slas: [{id: a, slo: nope}]\n"):
        big_config(tmp_path, 2000, tail)
        run = subprocess.run([sys.executable, "-m", "slamon", "run", "-c", str(path)],
                             capture_output=True, text=True, timeout=60, env=slamon_env())
        check = subprocess.run([sys.executable, "-m", "slamon", "check-config", str(path)],
                               capture_output=True, text=True, timeout=60, env=slamon_env())
        assert run.returncode == check.returncode == 2, (run.stderr, check.stderr)
        assert run.stderr == check.stderr and "error: " in run.stderr
        assert "Traceback" not in run.stderr


def _port(path: Path) -> int:
    return int(path.read_text().split("127.0.0.1:", 1)[1].split('"', 1)[0])


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        body: str = resp.read().decode()
    return body


# ------------------------------------------------------------------------ the driver


def _same(path: Path) -> dict[str, Any]:
    from slamon.config import read_ahead
    from slamon.config.loader import load_config
    from slamon.config.yamlfile import parse_yaml, read_text

    ahead = read_ahead.start(path, minimum=1)
    assert ahead is not None
    os.waitid(os.P_PID, ahead.pid, os.WEXITED | os.WNOWAIT)  # read, parsed, written
    text = path.read_text()
    path.write_text(text.replace("slos:\n", "  - {id: extra, kind: tcp, "
                                 "tcp: {host: 127.0.0.1, port: 9}}\nslos:\n"))
    config = load_config(path, ahead=ahead)
    try:
        os.waitpid(ahead.pid, os.WNOHANG)
        reaped = False
    except ChildProcessError:
        reaped = True
    again = read_ahead.start(path, minimum=1)
    assert again is not None
    got = read_ahead.parsed(again)
    assert got is not None
    data, plain = got
    return {"child": ahead.pid, "parent": os.getpid(), "reaped": reaped, "plain": plain,
            "equal": data == parse_yaml(read_text(str(path)), str(path)),
            "targets": len(config.targets), "in_file": len(load_config(path).targets)}


def _carried(path: Path) -> dict[str, Any]:
    from slamon.config import read_ahead
    from slamon.config.yamlfile import parse_yaml, read_text

    def same(a: Any, b: Any) -> bool:  # NaN != NaN: compare the text of the floats
        return repr(a) == repr(b)

    out: dict[str, Any] = {}
    for name, extra in (("plain", ""), ("timestamp", "when: 2001-12-14\n")):
        path.write_text(path.read_text() + extra)
        ahead = read_ahead.start(path, minimum=1)
        assert ahead is not None
        answer, _ = ahead.wait()
        assert isinstance(answer, tuple)
        ahead.wait = lambda answer=answer: (answer, None)  # type: ignore[method-assign]
        got = read_ahead.parsed(ahead)
        assert got is not None
        data, _ = got
        out[name] = {"sent": type(answer[0]).__name__,
                     "equal": same(data, parse_yaml(read_text(str(path)), str(path))),
                     "shared": data["shared"] is data["again"]}
    return out


def _invalid(path: Path) -> dict[str, Any]:
    from slamon.config import read_ahead
    from slamon.config.loader import ConfigError, load_config

    def errors(ahead: Any) -> list[str]:
        try:
            load_config(path, ahead=ahead)
        except ConfigError as exc:
            return exc.errors
        raise AssertionError("no error")

    ahead = read_ahead.start(path, minimum=1)
    assert ahead is not None
    return {"child": errors(ahead), "in_process": errors(None)}


def _killed(path: Path) -> dict[str, Any]:
    import signal

    from slamon.config import read_ahead
    from slamon.config.loader import load_config
    from slamon.config.yamlfile import ConfigError
    from slamon.util import forked

    gate_r, gate_w = os.pipe()

    def held() -> Any:
        os.close(gate_w)
        os.read(gate_r, 1)  # only the SIGKILL ends it
        raise ConfigError(["never"], "never")

    real = forked.fork_call
    read_ahead.fork_call = lambda fn: real(held)  # type: ignore[assignment]
    ahead = read_ahead.start(path, minimum=1)
    assert ahead is not None
    os.kill(ahead.pid, signal.SIGKILL)
    _, why = ahead.wait()
    again = read_ahead.start(path, minimum=1)
    assert again is not None
    os.kill(again.pid, signal.SIGKILL)
    config = load_config(path, ahead=again)
    os.close(gate_w)
    return {"why": why, "targets": len(config.targets)}


def _refused(path: Path) -> dict[str, Any]:
    from slamon.config import read_ahead

    small = read_ahead.start(path)  # ~2 KB, under FROM_BYTES
    missing = read_ahead.start(path.parent / "nope.yaml", minimum=1)
    try:
        os.waitpid(-1, os.WNOHANG)
        children = 1
    except ChildProcessError:
        children = 0
    return {"small": small and small.pid, "missing": missing and missing.pid,
            "children": children}


def _references(path: Path) -> dict[str, Any]:
    from slamon.config import read_ahead
    from slamon.config.loader import load_config

    os.environ["TEAM"] = "blue"
    ahead = read_ahead.start(path, minimum=1)
    assert ahead is not None
    os.waitid(os.P_PID, ahead.pid, os.WEXITED | os.WNOWAIT)
    got = read_ahead.parsed(read_ahead.start(path, minimum=1))  # type: ignore[arg-type]
    config = load_config(path, ahead=ahead)
    labels = {t.id: t.labels.get("team") for t in config.targets}
    return {"plain": got and got[1], "t7": labels["t7"], "t8": labels["t8"],
            "t9": labels["t9"]}


CASES = {"references": _references, "carried": _carried, "same": _same, "invalid": _invalid,
         "killed": _killed, "refused": _refused}


if __name__ == "__main__":
    print(json.dumps(CASES[sys.argv[1]](Path(sys.argv[2]))))
