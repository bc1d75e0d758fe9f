"""CLI habits: where the config comes from, log flags before or after the command,
`slamon probe` with headers, a body and JSON checks, and the environment in --help.
Each command runs as a subprocess, as an operator would run it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from slamon.util.args import DEFAULT_CONFIG_PATH, ENVIRONMENT
from tests.misbehaving import free_port
from tests.test_reload import SlamonProcess, slamon_env

REPO = Path(__file__).resolve().parent.parent
VALID = "targets: [{id: db, kind: tcp, tcp: {host: 127.0.0.1, port: 9}}]\n"


def slamon(*argv: str, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slamon", *argv], capture_output=True,
                          text=True, env=slamon_env(env), cwd=cwd or REPO, timeout=60, check=False)


def test_help_lists_every_environment_variable() -> None:
    res = slamon("--help")
    assert res.returncode == 0
    for name in ENVIRONMENT:
        assert name in res.stdout
    # and the docs too
    doc = (REPO / "docs" / "operations.md").read_text()
    for name in ENVIRONMENT:
        assert f"`{name}`" in doc, name


def test_config_from_flag_env_or_positional(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [{id: db, kind: tcp}]\n")
    for argv, env in (
        (["check-config", str(good)], {}),
        (["check-config", "-c", str(good)], {}),
        (["check-config"], {"SLAMON_CONFIG": str(good)}),
        (["check-config", "-c", str(good)], {"SLAMON_CONFIG": str(bad)}),  # -c wins
        (["rules"], {"SLAMON_CONFIG": str(good)}),
    ):
        res = slamon(*argv, env=env)
        assert res.returncode == 0, (argv, env, res.stderr)
    res = slamon("check-config", env={"SLAMON_CONFIG": str(bad)})
    assert res.returncode == 2 and str(bad) in res.stderr and "tcp" in res.stderr


def test_default_config_path_missing_says_how_to_give_one(tmp_path: Path) -> None:
    if Path(DEFAULT_CONFIG_PATH).exists():
        pytest.skip(f"{DEFAULT_CONFIG_PATH} exists on this machine")
    for argv in (["run"], ["check-config"], ["rules"]):
        res = slamon(*argv)
        assert res.returncode == 2, (argv, res.stderr)
        assert DEFAULT_CONFIG_PATH in res.stderr and "SLAMON_CONFIG" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr


class _Echo(BaseHTTPRequestHandler):
    """Answers JSON describing the request it got."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        doc = {"status": "ok", "method": self.command, "token": self.headers.get("X-Token"),
               "body": body, "n": 3}
        data = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_probe_header_data_json_path(echo: str, tmp_path: Path) -> None:
    ok = slamon("probe", echo, "-H", "X-Token: s3cret", "--data", "hello",
                "--json-path", "method=POST", "--json-path", "token=s3cret",
                "--json-path", "body=hello", "--json-path", "n=3", "--json-path", "status=ok")
    assert ok.returncode == 0 and ok.stdout.startswith("OK "), (ok.stdout, ok.stderr)
    body = tmp_path / "body.txt"
    body.write_text("from a file")
    ok = slamon("probe", echo, "--method", "put", "--data", f"@{body}",
                "--json-path", "method=PUT", "--json-path", "body=from a file")
    assert ok.returncode == 0, (ok.stdout, ok.stderr)
    # a JSON value compares as JSON: 3 is not "3"
    fail = slamon("probe", echo, "--json-path", 'n="3"')
    assert fail.returncode == 1 and fail.stdout.startswith("FAIL "), (fail.stdout, fail.stderr)
    fail = slamon("probe", echo, "--json-path", "method=POST")
    assert fail.returncode == 1, fail.stdout
    for argv in (["--header", "no colon"], ["--json-path", "novalue"],
                 ["--data", f"@{tmp_path / 'missing'}"]):
        bad = slamon("probe", echo, *argv)
        assert bad.returncode == 2 and argv[0] in bad.stderr, (argv, bad.stderr)
        assert "Traceback" not in bad.stderr


def _run_and_stop(argv: list[str], port: int, log: Path) -> str:
    """`slamon ARGV` (a `run`) until /readyz answers, then SIGTERM; its output."""
    proc = SlamonProcess(None, port, log, argv=argv)
    try:
        proc.wait_ready(30)
        return proc.stop()
    finally:
        proc.close()


@pytest.mark.parametrize("before", [True, False], ids=["before-command", "after-command"])
def test_log_flags_override_the_config(tmp_path: Path, before: bool) -> None:
    port = free_port()
    config = tmp_path / "slamon.yaml"
    config.write_text(f"server: {{listen: '127.0.0.1:{port}'}}\n"
                      "logging: {level: warning, format: json}\n"
                      f"state: {{path: '{tmp_path / 'state.sqlite3'}'}}\n" + VALID)
    flags = ["--log-level", "info", "--log-format", "console"]
    argv = [*flags, "run", "-c", str(config)] if before else ["run", "-c", str(config), *flags]
    text = _run_and_stop(argv, port, tmp_path / "log")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # info lines appear (the config says warning), none of them JSON
    assert any("started" in ln or "ready" in ln for ln in lines), text
    assert not any(ln.lstrip().startswith("{") for ln in lines), text
    # without the flags the config rules: warning level, JSON
    plain = _run_and_stop(["run", "-c", str(config)], port, tmp_path / "log2")
    assert all(ln.lstrip().startswith("{") for ln in plain.splitlines() if ln.strip()), plain
    assert not any('"level": "info"' in ln for ln in plain.splitlines()), plain
