"""systemd/slamon.service: `systemd-analyze verify` passes, `systemd-analyze
security` scores it at most the exposure recorded in docs/operations.md, and
the directives the operations doc promises are there."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "slamon.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (systemd allows a key several times)."""
    out: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


@pytest.fixture
def analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path, "systemd-analyze is missing: apt-get install systemd (scripts/setup does)"
    return path


def one(unit: dict[str, dict[str, list[str]]], key: str) -> str:
    values = unit["Service"][key]
    assert len(values) == 1, f"{key} set {len(values)} times"
    return values[0]


def test_lifecycle_directives(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"
    assert one(unit, "ExecStart") == "/usr/local/bin/slamon run -c /etc/slamon/slamon.yaml"
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "WatchdogSec") == "30s"
    assert one(unit, "Restart") == "on-failure"
    assert one(unit, "StateDirectory") == "slamon"
    assert one(unit, "ConfigurationDirectory") == "slamon"
    assert one(unit, "DynamicUser") == "yes"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_hardening_directives(unit: dict[str, dict[str, list[str]]]) -> None:
    for key, expected in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
    }.items():
        assert one(unit, key) == expected, key
    assert unit["Service"]["SystemCallFilter"][0] == "@system-service"


def _runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart= on the slamon actually installed here (verify checks
    that the binary exists; /usr/local/bin/slamon is where a real install puts it)."""
    # next to the interpreter running the tests, never whatever a shell's PATH holds
    installed = Path(sys.executable).parent / "slamon"
    assert installed.is_file(), f"no slamon beside {sys.executable} (pip install -e .)"
    slamon = str(installed)
    copy = tmp_path / "slamon.service"
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/slamon", slamon))
    return copy


def test_systemd_analyze_verify(tmp_path: Path, analyze: str) -> None:
    res = subprocess.run([analyze, "verify", "--man=no", str(_runnable_copy(tmp_path))],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "slamon.service" not in res.stderr, res.stderr  # no warnings about our unit


def test_systemd_analyze_security_score(tmp_path: Path, analyze: str) -> None:
    res = subprocess.run(
        [analyze, "security", "--offline=true", str(_runnable_copy(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    match = re.search(r"Overall exposure level for slamon\.service: ([\d.]+) (\w+)", res.stdout)
    assert match, res.stdout
    score = float(match.group(1))
    doc = (ROOT / "docs" / "operations.md").read_text()
    recorded = re.search(r"exposure level\D+([\d.]+)", doc)
    assert recorded, "docs/operations.md must record the systemd-analyze security score"
    assert score <= float(recorded.group(1)), f"score {score} worse than documented"
    assert score <= 2.0 and match.group(2) == "OK"
