"""/metrics for the dns, icmp and grpc probe kinds and the TLS facts: blackbox_exporter's
names and values from the last result, and `promtool check metrics` clean."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client import generate_latest

from slamon.config.root import Config
from slamon.metrics.collector import SlamonCollector, make_registry
from slamon.probers.base import FailureReason, ProbeResult, TlsFacts
from slamon.sli.live import LiveState
from tests.promtext import parse_metrics, value

NOW = 1_800_000_000.0

TARGETS: list[dict[str, Any]] = [
    {"id": "ns", "kind": "dns", "interval": "10s", "timeout": "2s",
     "dns": {"server": "[::1]:5353", "query_name": "example.com", "query_type": "SOA"}},
    {"id": "ns-down", "kind": "dns", "interval": "10s", "timeout": "2s",
     "dns": {"server": "ns.test", "query_name": "example.com"}},
    {"id": "web", "kind": "tcp", "tcp": {"host": "127.0.0.1", "port": 80}},
    {"id": "gw", "kind": "icmp", "timeout": "2s", "icmp": {"host": "::1", "count": 4}},
    {"id": "gw-down", "kind": "icmp", "icmp": {"host": "gw.test"}},
    {"id": "pay", "kind": "grpc",
     "grpc": {"host": "pay.test", "port": 8443, "service": "pay.v1.Payments", "tls": True}},
    {"id": "pay-down", "kind": "grpc", "grpc": {"host": "::1", "port": 50051}},
    {"id": "pay-gone", "kind": "grpc", "grpc": {"host": "127.0.0.1", "port": 1}},
]


def exposition(results: dict[str, ProbeResult]) -> str:
    config = Config.model_validate({"targets": TARGETS})
    live = LiveState(config)
    for target in config.targets:
        if target.id in results:
            live.record(target, NOW - 10, results[target.id])
    collector = SlamonCollector(lambda: live, lambda: None, clock=lambda: NOW)
    return generate_latest(make_registry(collector)).decode()


RESULTS = {
    "ns": ProbeResult(
        ok=True, duration=0.004, phases={"connect": 0.0001, "request": 0.0035},
        facts={"dns_rcode": 0.0, "dns_answer_rrs": 1.0, "dns_authority_rrs": 2.0,
               "dns_additional_rrs": 3.0, "dns_serial": 2026120301.0}),
    "ns-down": ProbeResult.failure(
        FailureReason.TIMEOUT, 2.0, "timeout", phases={"resolve": 0.02, "connect": 0.001}),
    "web": ProbeResult(
        ok=True, duration=0.001, phases={"connect": 0.001, "tls": 0.002},
        cert_expiry=NOW + 5 * 86400,
        tls=TlsFacts(version="TLS 1.3", earliest_expiry=NOW + 5 * 86400,
                     last_chain_expiry=NOW + 5 * 86400, fingerprint_sha256="ab" * 32,
                     subject="CN=leaf.test", issuer='CN=inter "G2"',
                     subjectalternative="leaf.test,localhost", serialnumber="0a1b")),
    "gw": ProbeResult(
        ok=True, duration=0.6, phases={"setup": 0.0001, "rtt": 0.0004},
        facts={"icmp_packets_sent": 4.0, "icmp_packets_received": 3.0}),
    "gw-down": ProbeResult.failure(
        FailureReason.TIMEOUT, 2.0, "no reply", phases={"resolve": 0.01, "setup": 0.0001},
        facts={"icmp_packets_sent": 1.0, "icmp_packets_received": 0.0}),
    "pay": ProbeResult(
        ok=True, duration=0.01, phases={"resolve": 0.002, "check": 0.008},
        facts={"grpc_ssl": 1.0, "grpc_status_code": 0.0, "grpc_serving_status": 1.0}),
    "pay-down": ProbeResult.failure(
        FailureReason.NOT_SERVING, 0.01, "health of the server: NOT_SERVING",
        phases={"check": 0.01},
        facts={"grpc_ssl": 0.0, "grpc_status_code": 0.0, "grpc_serving_status": 2.0}),
    "pay-gone": ProbeResult.failure(
        FailureReason.REFUSED, 0.01, "connection refused", phases={"check": 0.01},
        facts={"grpc_ssl": 0.0, "grpc_status_code": 14.0}),
}


def test_dns_metrics() -> None:
    m = parse_metrics(exposition(RESULTS))
    assert value(m, "probe_dns_duration_seconds", target="ns", phase="request") == 0.0035
    assert value(m, "probe_dns_duration_seconds", target="ns", phase="resolve") is None
    assert value(m, "probe_dns_lookup_time_seconds", target="ns") == 0
    assert value(m, "probe_dns_lookup_time_seconds", target="ns-down") == 0.02
    assert value(m, "probe_dns_query_succeeded", target="ns") == 1
    assert value(m, "probe_dns_query_succeeded", target="ns-down") == 0
    assert value(m, "probe_dns_rcode", target="ns") == 0
    assert value(m, "probe_dns_answer_rrs", target="ns") == 1
    assert value(m, "probe_dns_authority_rrs", target="ns") == 2
    assert value(m, "probe_dns_additional_rrs", target="ns") == 3
    assert value(m, "probe_dns_serial", target="ns") == 2026120301
    assert value(m, "probe_dns_rcode", target="ns-down") is None
    # a DNS probe's connect phase is not a TCP probe's
    assert value(m, "probe_tcp_duration_seconds", target="ns", phase="connect") is None
    assert value(m, "probe_tcp_duration_seconds", target="web", phase="connect") == 0.001
    assert value(m, "slamon_target_info", target="ns", kind="dns",
                 endpoint="dns://[::1]:5353/example.com?type=SOA") == 1


def test_icmp_metrics() -> None:
    m = parse_metrics(exposition(RESULTS))
    assert value(m, "probe_icmp_duration_seconds", target="gw", phase="rtt") == 0.0004
    assert value(m, "probe_icmp_duration_seconds", target="gw", phase="resolve") is None
    assert value(m, "probe_icmp_duration_seconds", target="gw-down", phase="resolve") == 0.01
    assert value(m, "probe_icmp_duration_seconds", target="gw-down", phase="rtt") is None
    assert value(m, "probe_icmp_packets_sent", target="gw") == 4
    assert value(m, "probe_icmp_packets_received", target="gw") == 3
    assert value(m, "probe_icmp_packets_received", target="gw-down") == 0
    assert value(m, "probe_failed_reason", target="gw-down", reason="timeout") == 1
    assert value(m, "slamon_target_info", target="gw", kind="icmp", endpoint="icmp://[::1]") == 1
    assert value(m, "slamon_target_info", target="gw-down", kind="icmp",
                 endpoint="icmp://gw.test") == 1


def test_grpc_metrics() -> None:
    m = parse_metrics(exposition(RESULTS))
    assert value(m, "probe_grpc_duration_seconds", target="pay", phase="resolve") == 0.002
    assert value(m, "probe_grpc_duration_seconds", target="pay", phase="check") == 0.008
    assert value(m, "probe_grpc_status_code", target="pay") == 0
    assert value(m, "probe_grpc_status_code", target="pay-gone") == 14
    assert value(m, "probe_grpc_ssl", target="pay") == 1
    assert value(m, "probe_grpc_ssl", target="pay-down") == 0
    for tid, serving in (("pay", "SERVING"), ("pay-down", "NOT_SERVING"), ("pay-gone", None)):
        for status in ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"):
            got = value(m, "probe_grpc_healthcheck_response", target=tid, serving_status=status)
            assert got == (1 if status == serving else 0), (tid, status)
    assert value(m, "probe_failed_reason", target="pay-down", reason="not_serving") == 1
    assert value(m, "slamon_target_info", target="pay", kind="grpc",
                 endpoint="grpc://pay.test:8443/pay.v1.Payments?tls=1") == 1
    assert value(m, "slamon_target_info", target="pay-down", kind="grpc",
                 endpoint="grpc://[::1]:50051/") == 1


def test_tls_families_as_blackbox_exporter() -> None:
    m = parse_metrics(exposition(RESULTS))
    expiry = NOW + 5 * 86400
    assert value(m, "probe_ssl_earliest_cert_expiry", target="web") == expiry
    assert value(m, "probe_ssl_last_chain_expiry_timestamp_seconds", target="web") == expiry
    assert value(m, "probe_tls_version_info", target="web", version="TLS 1.3") == 1
    assert value(m, "probe_ssl_last_chain_info", target="web", fingerprint_sha256="ab" * 32,
                 subject="CN=leaf.test", issuer='CN=inter "G2"',
                 subjectalternative="leaf.test,localhost", serialnumber="0a1b") == 1
    assert value(m, "probe_tls_version_info", target="ns", version="TLS 1.3") is None


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_check_metrics_is_clean() -> None:
    res = subprocess.run(["promtool", "check", "metrics"], input=exposition(RESULTS),
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), (
        res.stdout, res.stderr)
