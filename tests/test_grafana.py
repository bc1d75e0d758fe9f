"""docs/grafana-dashboard.json: valid JSON, a well-formed dashboard, every query
valid PromQL (checked by promtool) over metrics slamon actually exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def queries(dashboard: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    out += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    return out


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "slamon-slos" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names == ["datasource", "slo", "target"]


def test_covers_what_operators_need(dashboard: dict[str, Any]) -> None:
    text = "\n".join(queries(dashboard))
    for metric in (
        "slamon:slo_error_ratio", "slamon:slo_burn_rate",
        "slamon_error_budget_remaining_ratio", "slamon_slo_objective_ratio",
        "probe_http_duration_seconds", "slamon_scheduler_lag_seconds_bucket",
        "slamon_oracle_backlog", "slamon_sli_part_ratio",
    ):
        assert metric in text, metric


def exported_metrics() -> set[str]:
    """Metric names slamon exports: collectors' family names (+ _total/_bucket...)."""
    names: set[str] = set()
    for path in (ROOT / "slamon").rglob("*.py"):
        src = path.read_text()
        for kind, name in re.findall(
            r"(Gauge|Counter|Histogram)MetricFamily\(\s*\"([a-z_:]+)\"", src
        ):
            names.add(name)
            if kind == "Counter":
                names.add(name + "_total")
            if kind == "Histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count"})
        # families written as text (metrics/text.py) carry their exposed name
        names.update(re.findall(r"\bfamily\(\s*\"([a-z_:]+)\"", src))
    # what the generated recording rules record (the dashboard reads the windows there)
    from slamon.metrics import rules

    names.update(v for v in vars(rules).values() if isinstance(v, str) and v.startswith("slamon:"))
    return names | {"ALERTS"}


def test_queries_use_exported_metrics(dashboard: dict[str, Any]) -> None:
    known = exported_metrics()
    functions = {"histogram_quantile", "sum", "rate", "by", "on", "time", "max", "le",
                 "instance", "reason", "and", "or", "group_left"}
    for expr in queries(dashboard):
        stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
        for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped):
            if word in functions or not ("_" in word or word == "ALERTS"):
                continue
            assert word in known, f"{word!r} in {expr!r} is not a slamon metric"


def test_queries_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (scripts/setup does)"
    rules = []
    for i, expr in enumerate(queries(dashboard)):
        concrete = expr.replace("$__rate_interval", "5m").replace("$slo", ".*")
        concrete = concrete.replace("$target", ".*")
        assert "$" not in concrete, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": concrete})
    file = tmp_path / "dashboard-queries.yml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = subprocess.run([promtool, "check", "rules", str(file)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
