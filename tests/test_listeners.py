"""Two listeners and credentials, on a running `slamon run`: the private one
(/metrics, API) behind `server.auth`, the public status page on a port of its own
that serves nothing else; secrets from files never reach the log."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from slamon.config.loader import ConfigError, parse_config
from tests.misbehaving import free_port
from tests.test_reload import SlamonProcess, slamon_env

TOKEN = "tok-7f3a9c1e5b"
PASSWORD = "pw-c0ffee-42"
TARGETS = (
    "targets: [{id: db, kind: tcp, tcp: {host: 127.0.0.1, port: 9}}]\n"
    "slos: [{id: db, targets: [db], objective: 0.9, window: 1h}]\n"
)


def get(url: str, auth: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def secrets(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    token, pw = tmp_path / "token", tmp_path / "pw"
    token.write_text(TOKEN + "\n")
    pw.write_text(PASSWORD + "\n")
    yield token, pw


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_private_api_behind_auth_public_page_on_its_own_port(
    tmp_path: Path, secrets: tuple[Path, Path]
) -> None:
    token, pw = secrets
    private, public = free_port(), free_port()
    config = tmp_path / "slamon.yaml"
    config.write_text(
        f"server:\n  listen: '127.0.0.1:{private}'\n"
        f"  auth: {{bearer_token_file: '{token}', basic_auth: {{username: ops, "
        f"password_file: '{pw}'}}}}\n"
        f"status_page: {{enabled: true, listen: '127.0.0.1:{public}'}}\n"
        "logging: {level: debug, format: json}\n"
        f"state: {{path: '{tmp_path / 'state.sqlite3'}'}}\n" + TARGETS
    )
    run = SlamonProcess(config, private, tmp_path / "log")
    try:
        run.wait_ready(30)
        p, q = f"http://127.0.0.1:{private}", f"http://127.0.0.1:{public}"
        for path in ("/healthz", "/readyz", "/runbooks", "/", "/metrics"):
            assert get(p + path) == 200, path
        api = p + "/api/v1/slas"
        assert get(api) == 401
        assert get(api, f"Bearer {TOKEN}") == 200
        assert get(api, basic("ops", PASSWORD)) == 200
        for wrong in (f"Bearer {TOKEN}x", basic("ops", "nope"), basic("root", PASSWORD),
                      "Basic !!!", f"Token {TOKEN}"):
            assert get(api, wrong) == 401, wrong
        # the page moved to the public port, which serves nothing private
        assert get(p + "/status", f"Bearer {TOKEN}") == 404
        assert get(q + "/status") == 200 and get(q + "/api/v1/status") == 200
        for path in ("/metrics", "/api/v1/slas", "/runbooks"):
            assert get(q + path) == 404, path
        text = run.stop()
    finally:
        run.close()
    assert TOKEN not in text and PASSWORD not in text


def test_metrics_protected_and_page_open_on_the_shared_listener(
    tmp_path: Path, secrets: tuple[Path, Path]
) -> None:
    token, _pw = secrets
    port = free_port()
    config = tmp_path / "slamon.yaml"
    config.write_text(
        f"server:\n  listen: '127.0.0.1:{port}'\n"
        f"  auth: {{bearer_token_file: '{token}', metrics: true}}\n"
        "status_page: {enabled: true}\n"
        f"state: {{path: '{tmp_path / 'state.sqlite3'}'}}\n" + TARGETS
    )
    run = SlamonProcess(config, port, tmp_path / "log")
    try:
        run.wait_ready(30)
        base = f"http://127.0.0.1:{port}"
        assert get(base + "/metrics") == 401
        assert get(base + "/metrics", f"Bearer {TOKEN}") == 200
        assert get(base + "/api/v1/slas", basic("ops", "x")) == 401  # no basic configured
        # the status page is public wherever it is served
        assert get(base + "/status") == 200 and get(base + "/api/v1/status") == 200
        run.stop()
    finally:
        run.close()


def test_listener_config_errors_name_the_setting(tmp_path: Path) -> None:
    cases = {
        "server: {auth: {metrics: true}}\n": "server.auth",
        "server: {auth: {bearer_token: ''}}\n": "server.auth.bearer_token",
        "server: {auth: {bearer_token: a, bearer_token_file: /x}}\n":
            "server.auth.bearer_token_file",
        "server: {listen: '127.0.0.1:9115'}\n"
        "status_page: {enabled: true, listen: '127.0.0.1:9115'}\n": "status_page.listen",
        "status_page: {listen: 'nohost'}\n": "status_page.listen",
    }
    for text, where in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config(text + TARGETS)
        assert any(line.startswith(where) for line in info.value.errors), (
            text, info.value.errors)


def test_unreadable_token_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "slamon.yaml"
    config.write_text(
        f"server:\n  listen: '127.0.0.1:{port}'\n"
        f"  auth: {{bearer_token_file: '{tmp_path / 'missing'}'}}\n"
        f"state: {{path: '{tmp_path / 'state.sqlite3'}'}}\n" + TARGETS
    )
    res = subprocess.run([sys.executable, "-m", "slamon", "run", "-c", str(config)],
                         capture_output=True, text=True, env=slamon_env(), timeout=60,
                         check=False)
    assert res.returncode != 0
    assert "credential file" in res.stderr + res.stdout and "missing" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr + res.stdout
