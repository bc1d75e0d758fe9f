"""`slamon rules`: the generated file passes `promtool check rules`, and
`promtool test rules` shows each alert firing (and not firing) on synthetic
series shaped like slamon's own metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from slamon.config.root import Config
from slamon.metrics.rules import (
    BURN_ALERT,
    CERT_ALERT,
    DOWN_ALERT,
    LAG_ALERT,
    NO_DATA_ALERT,
    STALE_ALERT,
    generate_rules,
    no_data_window,
    render_rules,
)

ROOT = Path(__file__).resolve().parent.parent



@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (scripts/setup does)"
    return path


def make_config(window_series: bool = False, **slo: Any) -> Config:
    return Config.model_validate({
        "metrics": {"window_series": window_series},
        "targets": [
            {"id": "web", "kind": "tcp", "interval": "30s", "timeout": "10s",
             "labels": {"team": "shop"}, "tcp": {"host": "127.0.0.1", "port": 1}},
            {"id": "api", "kind": "tcp", "interval": "30s", "timeout": "10s",
             "tcp": {"host": "127.0.0.1", "port": 2}},
        ],
        "slos": [
            {"id": "shop", "targets": ["web", "api"], "objective": 0.999, "window": "30d", **slo},
            {"id": "api-latency", "targets": ["api"], "objective": 0.95, "sli": "latency",
             "latency_threshold": "300ms", "window": "7d",
             "alert_windows": [{"long": "2h", "short": "10m", "burn_rate": 10}]},
        ],
    })


def alerts(doc: dict[str, Any], name: str | None = None) -> list[dict[str, Any]]:
    return [r for g in doc["groups"] for r in g["rules"]
            if "alert" in r and (name is None or r["alert"] == name)]


def test_alerts_follow_the_configured_windows() -> None:
    doc = generate_rules(make_config())
    assert [g["name"] for g in doc["groups"]] == [
        "slamon-slo-shop", "slamon-slo-api-latency", "slamon-targets", "slamon-self"]
    burn = [a for a in alerts(doc, BURN_ALERT) if a["labels"]["slo"] == "shop"]
    got = [(a["labels"]["long_window"], a["labels"]["short_window"], a["labels"]["burn_rate"],
            a["labels"]["severity"], a["for"]) for a in burn]
    assert got == [
        ("1h", "5m", "14.4", "page", "2m"),
        ("6h", "30m", "6", "page", "2m"),
        ("1d", "2h", "3", "ticket", "15m"),
        ("3d", "6h", "1", "ticket", "15m"),
    ]
    assert 'window="1h"} > 14.4' in burn[0]["expr"] and 'window="5m"} > 14.4' in burn[0]["expr"]
    custom = [a for a in alerts(doc, BURN_ALERT) if a["labels"]["slo"] == "api-latency"]
    assert [(a["labels"]["long_window"], a["labels"]["burn_rate"]) for a in custom] == [
        ("2h", "10")]
    for alert in alerts(doc):
        assert alert["labels"]["severity"] in ("page", "ticket")
        # absolute: Alertmanager and chat tools show it as a link
        assert alert["annotations"]["runbook_url"].startswith(
            "http://127.0.0.1:9115/runbooks#")


def test_runbook_base_follows_external_url_and_override() -> None:
    config = make_config()
    external = config.model_copy(update={"server": config.server.model_copy(
        update={"external_url": "https://slamon.example.com/mon"})})
    for cfg, override, base in (
        (external, None, "https://slamon.example.com/mon/runbooks#"),
        (external, "https://wiki.example/slamon", "https://wiki.example/slamon#"),
    ):
        for alert in alerts(generate_rules(cfg, override)):
            assert alert["annotations"]["runbook_url"].startswith(base), alert
    with pytest.raises(ValueError, match="absolute"):
        Config.model_validate({"server": {"external_url": "slamon.example.com"}})


def test_runbook_anchors_exist_in_the_runbooks_doc_and_page() -> None:
    from slamon.web.runbooks import anchor, runbooks_page

    text = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    used = {a["annotations"]["runbook_url"].split("#")[1] for a in alerts(
        generate_rules(make_config()))}
    assert used <= anchors, used - anchors
    page = runbooks_page()
    for name in used:
        assert f'id="{name}"' in page, name


def test_no_data_window_holds_several_probes() -> None:
    config = make_config()
    assert no_data_window(config.slos[0], config) == 300  # 5m >= 3 x 30s
    slow = Config.model_validate({
        "targets": [{"id": "t", "kind": "tcp", "interval": "11m", "timeout": "10s",
                     "tcp": {"host": "127.0.0.1", "port": 1}}],
        "slos": [{"id": "s", "targets": ["t"], "objective": 0.99}],
    })
    assert no_data_window(slow.slos[0], slow) == 3600  # 30m < 3 x 11m: the 1h window


def test_promtool_check_rules(tmp_path: Path, promtool: str) -> None:
    example = ROOT / "config" / "example.yaml"
    from slamon.config.loader import load_config

    for config in (make_config(), load_config(example)):
        out = tmp_path / "rules.yml"
        out.write_text(render_rules(config, source="test"))
        res = subprocess.run([promtool, "check", "rules", str(out)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "SUCCESS" in res.stdout


def _series(
    slo: str, window: str, good: str, valid: str, instance: str = "a"
) -> list[dict[str, str]]:
    labels = f'slo="{slo}",window="{window}",instance="{instance}",job="slamon"'
    return [
        {"series": f"slamon_sli_good_events{{{labels}}}", "values": good},
        {"series": f"slamon_sli_valid_events{{{labels}}}", "values": valid},
    ]


def _annotations(rule: dict[str, Any], value: str) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them for `value`."""
    out = {}
    for key, text in rule["annotations"].items():
        out[key] = re.sub(r"\{\{ \$value \| \w+ \}\}", value, text)
    return out


def _find(doc: dict[str, Any], name: str, **labels: str) -> dict[str, Any]:
    for rule in alerts(doc, name):
        if all(rule["labels"].get(k) == v for k, v in labels.items()):
            return rule
    raise AssertionError(f"no {name} {labels}")


def _burn_case(doc: dict[str, Any]) -> dict[str, Any]:
    """Two instances (a quorum) see 2% errors over 1h and 5m: burn 20 > 14.4 pages.
    The 6h/30m pair stays below 6 and the SLO window below 1: nothing else fires."""
    series: list[dict[str, str]] = []
    for inst in ("a", "b"):
        series += _series("shop", "1h", "980x20", "1000x20", inst)
        series += _series("shop", "5m", "98x20", "100x20", inst)
        series += _series("shop", "6h", "5990x20", "6000x20", inst)
        series += _series("shop", "30m", "995x20", "1000x20", inst)
        series += _series("shop", "30d", "99990x20", "100000x20", inst)
        series.append({"series": f'slamon_slo_objective_ratio{{slo="shop",instance="{inst}",'
                                 'job="slamon"}', "values": "0.999x20"})
    page = _find(doc, BURN_ALERT, slo="shop", long_window="1h")
    labels = dict(page["labels"], slo="shop", window="1h")
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": BURN_ALERT, "exp_alerts": []},  # pending (for: 2m)
            {"eval_time": "3m", "alertname": BURN_ALERT, "exp_alerts": [
                {"exp_labels": labels, "exp_annotations": _annotations(page, "20")}]},
            {"eval_time": "3m", "alertname": "SlamonErrorBudgetExhausted", "exp_alerts": []},
            {"eval_time": "3m", "alertname": NO_DATA_ALERT, "exp_alerts": []},
        ],
        "promql_expr_test": [
            {"expr": 'slamon:slo_burn_rate{slo="shop",window="1h"}', "eval_time": "3m",
             "exp_samples": [{"labels": 'slamon:slo_burn_rate{slo="shop",window="1h"}',
                              "value": 20}]},
            {"expr": 'round(slamon:slo_error_budget_remaining{slo="shop"}, 0.001)',
             "eval_time": "3m",
             "exp_samples": [{"labels": '{slo="shop",window="30d"}', "value": 0.9}]},
        ],
    }


def _burn_in_maintenance_case(doc: dict[str, Any]) -> dict[str, Any]:
    """The burn of _burn_case, but a maintenance window covers a target of the SLO on
    one instance: no page while it lasts, the page once it has ended."""
    case = _burn_case(doc)
    case["input_series"].append({
        "series": 'slamon_slo_maintenance_active{slo="shop",instance="a",job="slamon"}',
        "values": "1x9 0x10"})
    fired = case["alert_rule_test"][1]["exp_alerts"]
    case["alert_rule_test"] = [
        {"eval_time": "3m", "alertname": BURN_ALERT, "exp_alerts": []},
        {"eval_time": "8m", "alertname": BURN_ALERT, "exp_alerts": []},
        {"eval_time": "13m", "alertname": BURN_ALERT, "exp_alerts": fired},
    ]
    del case["promql_expr_test"]
    return case


def _short_spike_case(doc: dict[str, Any]) -> dict[str, Any]:
    """1h is high but the short 5m window has recovered: the page must not fire."""
    series = _series("shop", "1h", "980x20", "1000x20")
    series += _series("shop", "5m", "100x20", "100x20")
    series.append({"series": 'slamon_slo_objective_ratio{slo="shop",instance="a",job="slamon"}',
                   "values": "0.999x20"})
    return {"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "10m", "alertname": BURN_ALERT, "exp_alerts": []}]}


def _exhausted_and_no_data_case(doc: dict[str, Any]) -> dict[str, Any]:
    """30d SLI 0.998 against 0.999: budget -100%, and no valid events in 5m."""
    series = _series("shop", "30d", "99800x20", "100000x20")
    series += _series("shop", "5m", "0x20", "0x20")
    series.append({"series": 'slamon_slo_objective_ratio{slo="shop",instance="a",job="slamon"}',
                   "values": "0.999x20"})
    exhausted = _find(doc, "SlamonErrorBudgetExhausted", slo="shop")
    no_data = _find(doc, NO_DATA_ALERT, slo="shop")
    other = _find(doc, NO_DATA_ALERT, slo="api-latency")  # reported by no instance here
    return {"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "10m", "alertname": "SlamonErrorBudgetExhausted", "exp_alerts": [
            {"exp_labels": dict(exhausted["labels"], slo="shop", window="30d"),
             "exp_annotations": _annotations(exhausted, "-100%")}]},
        {"eval_time": "10m", "alertname": NO_DATA_ALERT, "exp_alerts": [
            {"exp_labels": dict(no_data["labels"], slo="shop"),
             "exp_annotations": _annotations(no_data, "0")},
            {"exp_labels": dict(other["labels"], window="10m"),
             "exp_annotations": _annotations(other, "1")}]},
    ]}


def _absent_and_stale_case(doc: dict[str, Any]) -> dict[str, Any]:
    """slamon reports nothing for api-latency (absent), and web's schedule is stale."""
    no_data = _find(doc, NO_DATA_ALERT, slo="api-latency")
    shop = _find(doc, NO_DATA_ALERT, slo="shop")
    stale = _find(doc, STALE_ALERT, slo="shop", target="web")
    series = [
        {"series": 'slamon_probe_scheduled_timestamp_seconds{target="web",instance="a"}',
         "values": "0x20"},
        # api is probed on time: its scheduled timestamp follows the clock
        {"series": 'slamon_probe_scheduled_timestamp_seconds{target="api",instance="a"}',
         "values": "0+60x20"},
    ]
    window = no_data["expr"].split('window="')[1].split('"')[0]
    return {"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "10m", "alertname": NO_DATA_ALERT, "exp_alerts": [
            {"exp_labels": dict(no_data["labels"], slo="api-latency", window=window),
             "exp_annotations": _annotations(no_data, "1")},
            {"exp_labels": dict(shop["labels"], window="5m"),
             "exp_annotations": _annotations(shop, "1")}]},
        {"eval_time": "10m", "alertname": STALE_ALERT, "exp_alerts": [
            {"exp_labels": dict(stale["labels"]),
             "exp_annotations": _annotations(stale, "10m 0s")}]},
    ]}


def _lag_case(doc: dict[str, Any]) -> dict[str, Any]:
    """Instance b starts every probe 0.25-0.5 s late, instance a within 10 ms: only b
    gets the ticket, once the lag has lasted the alert's `for`."""
    from slamon.scheduler import LAG_BUCKETS

    rule = _find(doc, LAG_ALERT)
    series = []
    for inst, slowest in (("a", 0.01), ("b", 0.5)):
        for le in [*LAG_BUCKETS, "+Inf"]:
            counts = "0+100x40" if le == "+Inf" or float(le) >= slowest else "0x40"
            series.append({
                "series": f'slamon_scheduler_lag_seconds_bucket{{le="{le}",instance="{inst}",'
                          'job="slamon"}',
                "values": counts,
            })
    firing = {"exp_labels": dict(rule["labels"], instance="b"),
              "exp_annotations": rule["annotations"]}
    return {"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "10m", "alertname": LAG_ALERT, "exp_alerts": []},  # pending (for: 15m)
        {"eval_time": "30m", "alertname": LAG_ALERT, "exp_alerts": [firing]},
    ]}


def _target_down_case(doc: dict[str, Any]) -> dict[str, Any]:
    """web fails on both instances, api on one only, db on both but under maintenance:
    only web pages, once `for` has passed. Another exporter's probe_success for web
    (no slamon_target_info beside it) changes nothing."""
    rule = _find(doc, DOWN_ALERT)
    series = []
    for inst in ("a", "b"):
        for tid, ok in (("web", "0x20"), ("api", "1x20" if inst == "a" else "0x20"),
                        ("db", "0x20")):
            labels = f'target="{tid}",instance="{inst}",job="slamon"'
            team = ',team="shop"' if tid == "web" else ""
            series.append({"series": f"probe_success{{{labels}}}", "values": ok})
            series.append({"series": f'slamon_target_info{{{labels},kind="tcp",endpoint="x"'
                                     f"{team}}}", "values": "1x20"})
            series.append({"series": f"slamon_maintenance_active{{{labels}}}",
                           "values": "1x20" if tid == "db" else "0x20"})
    series.append({"series": 'probe_success{target="web",instance="bb",job="blackbox"}',
                   "values": "1x20"})
    # the target's config labels come along, for routing by team
    fired = {"exp_labels": dict(rule["labels"], target="web", team="shop"),
             "exp_annotations": {k: v.replace("{{ $labels.target }}", "web")
                                 for k, v in rule["annotations"].items()}}
    return {"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "3m", "alertname": DOWN_ALERT, "exp_alerts": []},  # pending (for: 5m)
        {"eval_time": "10m", "alertname": DOWN_ALERT, "exp_alerts": [fired]},
    ]}


def _cert_case(doc: dict[str, Any]) -> dict[str, Any]:
    """web's chain expires in 10 days (ticket only), api's in 3 days (ticket and page),
    db's in 60 days (nothing)."""
    series = []
    day = 86400
    for tid, left in (("web", 10), ("api", 3), ("db", 60)):
        labels = f'target="{tid}",instance="a",job="slamon"'
        series.append({"series": f"probe_ssl_earliest_cert_expiry{{{labels}}}",
                       "values": f"{left * day}x30"})
        series.append({"series": f'slamon_target_info{{{labels},kind="http",endpoint="x"}}',
                       "values": "1x30"})
    ticket = _find(doc, CERT_ALERT, severity="ticket")
    page = _find(doc, CERT_ALERT, severity="page")

    left = {"web": "9d 23h 40m 0s", "api": "2d 23h 40m 0s"}  # at 20m

    def fired(rule: dict[str, Any], tid: str) -> dict[str, Any]:
        notes = {k: v.replace("{{ $labels.target }}", tid)
                 .replace("{{ $value | humanizeDuration }}", left[tid])
                 for k, v in rule["annotations"].items()}
        return {"exp_labels": dict(rule["labels"], target=tid), "exp_annotations": notes}

    return {"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "20m", "alertname": CERT_ALERT, "exp_alerts": [
            fired(ticket, "web"), fired(ticket, "api"), fired(page, "api")]},
    ]}


def test_promtool_test_rules_on_window_series(tmp_path: Path, promtool: str) -> None:
    """`metrics.window_series: true`: the rules read slamon's exact window counts."""
    config = make_config(window_series=True)
    doc = generate_rules(config)
    (tmp_path / "rules.yml").write_text(render_rules(config))
    cases = [_burn_case(doc), _burn_in_maintenance_case(doc), _short_spike_case(doc),
             _exhausted_and_no_data_case(doc),
             _absent_and_stale_case(doc), _lag_case(doc), _target_down_case(doc),
             _cert_case(doc)]
    spec = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": cases}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    res = subprocess.run([promtool, "test", "rules", "tests.yml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def _counters(slo: str, good: str, valid: str, instance: str) -> list[dict[str, str]]:
    labels = f'slo="{slo}",instance="{instance}",job="slamon"'
    return [
        {"series": f"slamon_sli_good_total{{{labels}}}", "values": good},
        {"series": f"slamon_sli_valid_total{{{labels}}}", "values": valid},
    ]


def test_promtool_test_rules_on_counters(tmp_path: Path, promtool: str) -> None:
    """The default: two counters per SLO, every window summed in Prometheus. Instance a
    sees 2 % errors, b none: pooled, 1 % over every window, a burn rate of 10, which pages
    on the 6h/30m pair (> 6) and not on 1h/5m (< 14.4); the tickets are still pending.
    Nobody reports api-latency: no data. An SLO whose counters stand still: no data too."""
    config = make_config()
    doc = generate_rules(config)
    assert "slamon_sli_good_events" not in yaml.safe_dump(doc)
    (tmp_path / "rules.yml").write_text(render_rules(config))
    series = [*_counters("shop", "0+98x30", "0+100x30", "a"),
              *_counters("shop", "0+100x30", "0+100x30", "b")]
    for inst in ("a", "b"):
        series.append({"series": f'slamon_slo_objective_ratio{{slo="shop",instance="{inst}",'
                                 'job="slamon"}', "values": "0.999x30"})
    page = _find(doc, BURN_ALERT, slo="shop", long_window="6h")
    no_data = _find(doc, NO_DATA_ALERT, slo="api-latency")
    burning: dict[str, Any] = {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": "12m", "alertname": BURN_ALERT, "exp_alerts": [
                {"exp_labels": dict(page["labels"], slo="shop", window="6h"),
                 "exp_annotations": _annotations(page, "10")}]},
            {"eval_time": "12m", "alertname": NO_DATA_ALERT, "exp_alerts": [
                {"exp_labels": dict(no_data["labels"], slo="api-latency"),
                 "exp_annotations": _annotations(no_data, "1")}]},
        ],
        "promql_expr_test": [
            {"expr": f'round(slamon:slo_error_ratio{{slo="shop",window="{w}"}}, 0.0001)',
             "eval_time": "12m",
             "exp_samples": [{"labels": f'{{slo="shop",window="{w}"}}',
                              "value": 0.01}]}
            for w in ("5m", "30m", "1h", "30d")
        ] + [
            {"expr": 'round(slamon:slo_burn_rate{slo="shop",window="1h"}, 0.001)',
             "eval_time": "12m",
             "exp_samples": [{"labels": '{slo="shop",window="1h"}', "value": 10}]},
        ],
    }
    shop = _find(doc, NO_DATA_ALERT, slo="shop")
    still = {"interval": "1m", "input_series": _counters("shop", "7x30", "9x30", "a"),
             "alert_rule_test": [
                 {"eval_time": "12m", "alertname": NO_DATA_ALERT, "exp_alerts": [
                     {"exp_labels": dict(shop["labels"], slo="shop"),
                      "exp_annotations": _annotations(shop, "0")},
                     {"exp_labels": dict(no_data["labels"], slo="api-latency"),
                      "exp_annotations": _annotations(no_data, "1")}]}]}
    spec = {"rule_files": ["rules.yml"], "evaluation_interval": "1m",
            "tests": [burning, still]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    res = subprocess.run([promtool, "test", "rules", "tests.yml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_cli_rules_command(tmp_path: Path) -> None:
    config = tmp_path / "slamon.yaml"
    config.write_text(
        "targets: [{id: t, kind: tcp, tcp: {host: 127.0.0.1, port: 1}}]\n"
        "slos: [{id: s, targets: [t], objective: 0.99, window: 7d}]\n"
    )
    out = tmp_path / "rules.yml"
    code = "import sys; from slamon.cli import main; sys.exit(main())"
    res = subprocess.run(
        [sys.executable, "-c", code, "rules", "-c", str(config), "-o", str(out),
         "--runbook-url", "https://wiki.example/slamon.md"],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr
    doc = yaml.safe_load(out.read_text())
    assert out.read_text().startswith("# Generated by `slamon rules`")
    assert alerts(doc)[0]["annotations"]["runbook_url"].startswith("https://wiki.example/slamon.md#")
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [{id: t, kind: tcp, interval: 0s, tcp: {host: h, port: 1}}]\n")
    res = subprocess.run([sys.executable, "-c", code, "rules", "-c", str(bad)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "error: targets[0].interval" in res.stderr
    assert "Traceback" not in res.stderr
    # stdout by default
    res = subprocess.run([sys.executable, "-c", code, "rules", "-c", str(config)],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "groups:" in res.stdout


async def test_runbooks_page_is_served() -> None:
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from slamon.metrics.collector import ListedRegistry
    from slamon.web.server import build_app

    app = build_app(ListedRegistry(), asyncio.Event())
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/runbooks")
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    for alert in alerts(generate_rules(make_config())):
        assert f'id="{alert["annotations"]["runbook_url"].split("#")[1]}"' in page
    assert "<script" not in page and "<h2" in page


def test_prometheusrule_format_wraps_the_same_groups(tmp_path: Path, promtool: str) -> None:
    config = tmp_path / "slamon.yaml"
    config.write_text(
        "targets: [{id: t, kind: tcp, tcp: {host: 127.0.0.1, port: 1}}]\n"
        "slos: [{id: s, targets: [t], objective: 0.99, window: 7d}]\n"
    )
    code = "import sys; from slamon.cli import main; sys.exit(main())"
    res = subprocess.run([sys.executable, "-c", code, "rules", "-c", str(config), "--format",
                          "prometheusrule", "--label", "release=prometheus"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    doc = yaml.safe_load(res.stdout)
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    assert doc["metadata"] == {"name": "slamon", "labels": {"release": "prometheus"}}
    plain = subprocess.run([sys.executable, "-c", code, "rules", "-c", str(config)],
                           capture_output=True, text=True)
    assert doc["spec"] == yaml.safe_load(plain.stdout)
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump(doc["spec"]))
    check = subprocess.run([promtool, "check", "rules", str(spec)], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    bad = subprocess.run([sys.executable, "-c", code, "rules", "-c", str(config), "--label",
                          "novalue"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--label" in bad.stderr
