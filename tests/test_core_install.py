"""slamon installed without extras (`pip install .`): every core command works, and the
commands that need the chain libraries say so in one line and exit 2.

Offline: the fresh venv sees only the distributions slamon's core dependencies need
(resolved from this venv's metadata, linked into a directory named by a .pth file),
and slamon itself goes in as a wheel with `pip install --no-index`, which also checks
that those distributions satisfy every core requirement.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from slamon.cli import CHAIN_LIBRARIES, GROUPS, PLUGINS
from tests.misbehaving import free_port

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _core_closure() -> list[metadata.Distribution]:
    """slamon's core dependencies and theirs, as installed here (no extras)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in metadata.requires("slamon") or []]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen:
            continue
        dist = metadata.distribution(req.name)
        seen[key] = dist
        todo.extend(Requirement(r) for r in dist.requires or [])
    return list(seen.values())


def _link_distributions(dists: list[metadata.Distribution], into: Path) -> None:
    into.mkdir()
    for dist in dists:
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in tops:
            src = Path(str(dist.locate_file(top)))
            if top in ("..", "__pycache__") or not src.exists() or (into / top).exists():
                continue
            (into / top).symlink_to(src)


@dataclass
class CoreInstall:
    bin: Path
    env: dict[str, str]

    def run(self, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "slamon"), *argv], capture_output=True, text=True,
            env=self.env, cwd=cwd or REPO, timeout=60, check=False,
        )


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> CoreInstall:
    base = tmp_path_factory.mktemp("core")
    # nothing from this environment (PYTHONPATH, a venv on PATH) may leak into the venv
    env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8"}
    wheels = base / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True, env=env,
    ).stdout.strip()
    _link_distributions(_core_closure(), base / "core-site")
    Path(site, "core-deps.pth").write_text(f"{base / 'core-site'}\n")
    wheel = next(wheels.glob("slamon-*.whl"))
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-index", str(wheel)],
        check=True, capture_output=True, timeout=300, env=env,
    )
    return CoreInstall(venv / "bin", env)


def test_the_core_install_has_no_chain_library(core: CoreInstall) -> None:
    for lib in sorted(CHAIN_LIBRARIES):
        res = subprocess.run([str(core.bin / "python"), "-c", f"import {lib}"],
                             capture_output=True, text=True, env=core.env, check=False)
        assert res.returncode != 0 and "ModuleNotFoundError" in res.stderr, lib


def test_help_and_version(core: CoreInstall) -> None:
    res = core.run("--version")
    assert res.returncode == 0 and res.stdout.startswith("slamon "), res.stderr
    res = core.run("--help")
    assert res.returncode == 0, res.stderr
    for words in PLUGINS:
        assert words[0] in res.stdout
    for group in GROUPS:
        res = core.run(group, "--help")
        assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("config", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_check_config_on_every_example(core: CoreInstall, config: Path) -> None:
    res = core.run("check-config", str(config))
    assert res.returncode == 0 and ": OK: " in res.stdout, res.stderr


def test_rules(core: CoreInstall) -> None:
    res = core.run("rules", "-c", str(REPO / "config" / "example.yaml"))
    assert res.returncode == 0 and "groups:" in res.stdout, res.stderr


@pytest.fixture
def banner_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that greets each connection with a banner."""
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(b"220 ready\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(5)
    srv.close()


def test_probe(core: CoreInstall, banner_server: int) -> None:
    res = core.run("probe", f"tcp://127.0.0.1:{banner_server}", "--expect", "^220")
    assert res.returncode == 0 and res.stdout.startswith("OK "), (res.stdout, res.stderr)
    res = core.run("probe", f"tcp://127.0.0.1:{banner_server}", "--expect", "^500",
                   "--timeout", "1s")
    assert res.returncode == 1 and res.stdout.startswith("FAIL "), (res.stdout, res.stderr)


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status, resp.read().decode()


def test_run_with_the_oracle_off(core: CoreInstall, banner_server: int, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "slamon.yaml"
    config.write_text(
        f"server: {{listen: '127.0.0.1:{port}'}}\n"
        "logging: {level: info, format: json}\n"
        f"state: {{path: '{tmp_path / 'state.sqlite3'}'}}\n"
        "targets:\n"
        "  - {id: smtp, kind: tcp, interval: 1s, timeout: 500ms,\n"
        f"     tcp: {{host: 127.0.0.1, port: {banner_server}, expect: '^220'}}}}\n"
        "slos:\n  - {id: smtp, targets: [smtp], objective: 0.9, window: 1h}\n"
    )
    log = tmp_path / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(core.bin / "slamon"), "run", "-c", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, env=core.env)
        try:
            deadline = time.monotonic() + 30
            text = ""
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                try:
                    status, text = _get(f"http://127.0.0.1:{port}/metrics")
                except OSError:
                    status = 0
                if status == 200 and re.search(r'^probe_success\{.*target="smtp".*\} 1', text,
                                               re.M):
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"no successful probe in 30 s: {log.read_text()}")
            # the runbooks ship in the wheel (package data), and the alerts link to them
            status, page = _get(f"http://127.0.0.1:{port}/runbooks")
            assert status == 200 and 'id="target-down"' in page
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize(
    "argv",
    [
        ("keys", "new", "--keystore", "k.json", "--password-file", "pw"),
        ("report", "verify", "r.json", "--contract", "0x" + "11" * 20, "--chain-id", "1"),
        ("contract", "deploy", "--rpc-url", "http://127.0.0.1:9"),
        ("contract", "register", "--help"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_chain_commands_say_what_to_install(
    core: CoreInstall, argv: tuple[str, ...], tmp_path: Path
) -> None:
    res = core.run(*argv, cwd=tmp_path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'slamon[chain]'" in lines[0], res.stderr
    assert f"slamon {argv[0]} {argv[1]}" in lines[0]
    assert not list(tmp_path.iterdir())


def test_every_optional_command_names_a_real_parser() -> None:
    """The map is the one place optional commands are listed: each entry's module and
    function exist here, where the chain extra is installed."""
    import importlib

    for words, plugin in PLUGINS.items():
        assert len(words) == 1 or words[0] in GROUPS, words
        assert callable(getattr(importlib.import_module(plugin.module), plugin.configure)), words


def test_help_and_version_import_no_optional_command() -> None:
    code = (
        "import sys\n"
        "from slamon.cli import main, PLUGINS\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted({p.module for p in PLUGINS.values()} & set(sys.modules))\n"
        "print(loaded, file=sys.stderr)\n"
    )
    for argv in (["--version"], ["--help"], ["keys", "--help"]):
        res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
        assert res.stderr.strip().splitlines()[-1] == "[]", (argv, res.stderr)


@pytest.mark.parametrize(
    ("kind", "url", "section", "extra"),
    [
        ("dns", "dns://127.0.0.1/a.test", "{server: 127.0.0.1, query_name: a.test}", "dns"),
        ("icmp", "icmp://127.0.0.1", "{host: 127.0.0.1}", "icmp"),
        ("grpc", "grpc://127.0.0.1:1/x", "{host: 127.0.0.1, port: 1}", "grpc"),
    ],
)
def test_kinds_without_their_library_say_what_to_install(
    core: CoreInstall, kind: str, url: str, section: str, extra: str, tmp_path: Path
) -> None:
    """dns, icmp and grpc need an extra: without it, one line naming it, exit 2."""
    res = core.run("probe", url)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'slamon[{extra}]'" in lines[0], res.stderr
    config = tmp_path / "c.yaml"
    config.write_text(f"targets:\n  - {{id: t, kind: {kind}, {kind}: {section}}}\n")
    res = core.run("check-config", str(config))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert f"targets[0].kind: kind '{kind}' needs" in res.stderr, res.stderr
    assert f"pip install 'slamon[{extra}]'" in res.stderr and "Traceback" not in res.stderr
