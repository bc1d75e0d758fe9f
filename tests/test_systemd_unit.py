"""systemd/slamon.service: `systemd-analyze verify` passes, `systemd-analyze
security` scores it at most the exposure recorded in docs/operations.md, and
the directives the operations doc promises are there. systemd/slamon@.service
(one shard per instance) passes the same checks as an instance, slamon@0, and
differs from the single unit only where a shard must."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slamon.config.loader import parse_config

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "slamon.service"
TEMPLATE = ROOT / "systemd" / "slamon@.service"
#: the template's instance under test (the instance name is the shard index)
INSTANCE = "slamon@0.service"


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


def _runnable_copy(tmp_path: Path, source: Path = UNIT) -> Path:
    """The unit with ExecStart= on the slamon actually installed here (verify checks
    that the binary exists; /usr/local/bin/slamon is where a real install puts it).
    For the template, the path of an instance beside the copy: systemd-analyze
    loads slamon@.service from the same directory for it."""
    # next to the interpreter running the tests, never whatever a shell's PATH holds
    installed = Path(sys.executable).parent / "slamon"
    assert installed.is_file(), f"no slamon beside {sys.executable} (pip install -e .)"
    slamon = str(installed)
    tmp_path.mkdir(parents=True, exist_ok=True)
    copy = tmp_path / source.name
    copy.write_text(source.read_text().replace("/usr/local/bin/slamon", slamon))
    return tmp_path / INSTANCE if source == TEMPLATE else copy


def _security_score(tmp_path: Path, analyze: str, source: Path) -> tuple[float, str]:
    path = _runnable_copy(tmp_path, source)
    res = subprocess.run(
        [analyze, "security", "--offline=true", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    match = re.search(rf"Overall exposure level for {re.escape(path.name)}: ([\d.]+) (\w+)",
                      res.stdout)
    assert match, res.stdout
    return float(match.group(1)), match.group(2)


@pytest.mark.parametrize("source", [UNIT, TEMPLATE], ids=lambda p: p.name)
def test_systemd_analyze_verify(tmp_path: Path, analyze: str, source: Path) -> None:
    path = _runnable_copy(tmp_path, source)
    res = subprocess.run([analyze, "verify", "--man=no", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    # no warnings about our unit (for the template they name slamon@.service)
    assert source.name not in res.stderr and path.name not in res.stderr, res.stderr


def test_verify_reads_the_template(tmp_path: Path, analyze: str) -> None:
    """Verifying slamon@0.service really checks slamon@.service: a misspelt key in the
    template is reported."""
    path = _runnable_copy(tmp_path, TEMPLATE)
    copy = tmp_path / TEMPLATE.name
    copy.write_text(copy.read_text().replace("NoNewPrivileges=", "NoNewPrivilegs="))
    res = subprocess.run([analyze, "verify", "--man=no", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert "NoNewPrivilegs" in res.stderr, res.stdout + res.stderr


def test_systemd_analyze_security_score(tmp_path: Path, analyze: str) -> None:
    score, verdict = _security_score(tmp_path, analyze, UNIT)
    doc = (ROOT / "docs" / "operations.md").read_text()
    recorded = re.search(r"exposure level\D+([\d.]+)", doc)
    assert recorded, "docs/operations.md must record the systemd-analyze security score"
    assert score <= float(recorded.group(1)), f"score {score} worse than documented"
    assert score <= 2.0 and verdict == "OK"


def test_template_security_score_no_worse(tmp_path: Path, analyze: str) -> None:
    single, _ = _security_score(tmp_path / "single", analyze, UNIT)
    shard, verdict = _security_score(tmp_path / "shard", analyze, TEMPLATE)
    assert shard <= single, f"slamon@0.service scores {shard}, slamon.service {single}"
    assert verdict == "OK"


#: where a shard differs from the single unit, and why: its index, count and port
#: come from the environment, and its state lives in its own directory
SHARD_ONLY = {"Environment", "EnvironmentFile", "StateDirectory"}


def test_template_is_the_single_unit_per_shard() -> None:
    single = parse_unit(UNIT.read_text())
    shard = parse_unit(TEMPLATE.read_text())
    for key in set(single["Service"]) | set(shard["Service"]):
        if key not in SHARD_ONLY:
            assert shard["Service"].get(key) == single["Service"].get(key), key
    assert shard["Install"] == single["Install"]
    assert shard["Unit"]["After"] == single["Unit"]["After"]
    assert "%i" in shard["Unit"]["Description"][0]
    svc = shard["Service"]
    # the instance name is the shard index; the single unit's environment is kept
    assert svc["Environment"] == ["SLAMON_SHARD_INDEX=%i", *single["Service"]["Environment"]]
    # count (shared) and listen address (per shard) from files that must exist
    assert svc["EnvironmentFile"] == ["/etc/slamon/shards.env", "/etc/slamon/shard-%i.env"]
    assert svc["StateDirectory"] == ["slamon/%i"]
    assert one(shard, "ExecStart") == "/usr/local/bin/slamon run -c /etc/slamon/slamon.yaml"


def test_template_env_files_drive_the_shard_section() -> None:
    """The shard section and env files the template's header describes give shard N of
    the count, on its own port."""
    header = [line[1:].strip() for line in TEMPLATE.read_text().splitlines()
              if line.startswith("#")]
    shard_line = next(line for line in header if line.startswith("shard:"))
    listen_line = next(line for line in header if line.startswith("and whose server.listen"))
    listen = re.search(r'"(\$\{SLAMON_LISTEN[^"]*)"', listen_line)
    assert listen, listen_line
    text = (f"{shard_line}\nserver: {{listen: \"{listen.group(1)}\"}}\n"
            "targets: [{id: t, kind: tcp, tcp: {host: 127.0.0.1, port: 1}}]\n")
    ports = set()
    for i in range(3):
        env = {"SLAMON_SHARD_INDEX": str(i), "SLAMON_SHARD_COUNT": "3",
               "SLAMON_LISTEN": f"127.0.0.1:{9115 + i}"}
        config = parse_config(text, env=env)
        assert (config.shard.index, config.shard.count) == (i, 3)
        ports.add(config.server.listen)
    assert len(ports) == 3
