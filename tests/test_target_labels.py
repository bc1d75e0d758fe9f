"""A target's config `labels` reach /metrics on slamon_target_info (one label per
name; empty, i.e. absent, where a target has no such label), as docs/config.md says."""

from __future__ import annotations

from pathlib import Path

from tests.misbehaving import free_port
from tests.test_reload import SlamonProcess, tcp_config


def test_config_labels_on_target_info(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "slamon.yaml"
    text = tcp_config(port, tmp_path / "state.sqlite3", {"web": 9, "db": 9, "cache": 9})
    for tid, labels in (("web", "{team: shop, tier: front}"), ("db", "{team: data}")):
        assert f"- id: {tid}\n" in text
        text = text.replace(f"- id: {tid}\n", f"- id: {tid}\n  labels: {labels}\n")
    config.write_text(text)
    proc = SlamonProcess(config, port, tmp_path / "log")
    try:
        proc.wait_ready()
        samples = proc.metrics()
    finally:
        proc.close()
    info = {dict(labels)["target"]: dict(labels) for name, labels in samples
            if name == "slamon_target_info"}
    assert info["web"]["team"] == "shop" and info["web"]["tier"] == "front"
    # an empty label is no label for Prometheus
    assert info["db"]["team"] == "data" and info["db"].get("tier", "") == ""
    assert info["cache"].get("team", "") == "" and info["cache"]["kind"] == "tcp"
