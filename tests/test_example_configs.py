"""The example configs in config/ pass `slamon check-config` and give valid rules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slamon.config.loader import load_config
from slamon.metrics.rules import render_rules

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["single-web", "composite-sla", "discovery",
            "quorum-a", "quorum-b", "quorum-c", "quorum-d"]


def clean_env() -> dict[str, str]:
    """The environment without variables the examples read, so defaults are used."""
    prefixes = ("SLAMON_", "SHOP_", "PAYMENTS_", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@pytest.mark.parametrize("name", EXAMPLES)
def test_check_config_passes(name: str) -> None:
    path = ROOT / "config" / f"{name}.yaml"
    res = subprocess.run(
        [sys.executable, "-m", "slamon", "check-config", str(path)],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert ": OK:" in res.stdout


def test_composite_example_is_composite_with_an_sla() -> None:
    config = load_config(ROOT / "config" / "composite-sla.yaml")
    shop = next(s for s in config.slos if s.id == "shop")
    assert shop.targets == ["shop-web", "shop-api", "shop-login"]
    assert [s.slo for s in config.slas] == ["shop"]


def test_quorum_instances_agree_on_everything_that_decides_a_verdict() -> None:
    texts = [(ROOT / "config" / f"quorum-{c}.yaml").read_text() for c in "abcd"]
    # only the first comment line differs
    assert len({t.split("\n", 1)[1] for t in texts}) == 1
    assert len({t.split("\n", 1)[0] for t in texts}) == 4
    config = load_config(ROOT / "config" / "quorum-a.yaml")
    assert config.oracle is not None and config.oracle.mode == "chain"
    assert config.shard.count == 1  # a quorum measures everything everywhere


def test_container_listen_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLAMON_LISTEN", raising=False)
    assert load_config(ROOT / "config" / "single-web.yaml").server.listen == "127.0.0.1:9115"
    monkeypatch.setenv("SLAMON_LISTEN", "0.0.0.0:9115")  # set by the Dockerfile
    assert load_config(ROOT / "config" / "single-web.yaml").server.listen == "0.0.0.0:9115"


def test_rules_of_every_example_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (scripts/setup does)"
    files = []
    for name in EXAMPLES:
        out = tmp_path / f"{name}.rules.yml"
        out.write_text(render_rules(load_config(ROOT / "config" / f"{name}.yaml")))
        files.append(str(out))
    res = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
