"""The metric families of the probe kinds beyond http and tcp, named as blackbox_exporter's.

The collector hands each such target's last result here (`KindMetrics.add`) and
yields `families()` with its own; one instance per slice of targets, so a
family may come in several pieces like every other probe family.

- dns: probe_dns_duration_seconds{phase=resolve|connect|request},
  probe_dns_lookup_time_seconds (resolving the server's own name, 0 for an IP,
  as blackbox), probe_dns_query_succeeded, probe_dns_rcode, probe_dns_answer_rrs,
  probe_dns_authority_rrs, probe_dns_additional_rrs, probe_dns_serial (SOA queries).
- icmp: probe_icmp_duration_seconds{phase=resolve|setup|rtt} (rtt: the mean of the
  replies), and slamon's probe_icmp_packets_sent, probe_icmp_packets_received.
- grpc: probe_grpc_duration_seconds{phase=resolve|check}, probe_grpc_status_code,
  probe_grpc_healthcheck_response{serving_status} (1 for the status answered, 0 for
  the others, all 0 when the call failed, as blackbox), probe_grpc_ssl.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from slamon.config.targets import Target
from slamon.probers.base import ProbeResult
from slamon.probers.grpc import SERVING_STATUSES


def endpoint(target: Target) -> str:
    """What the target probes, for slamon_target_info: the URL `slamon probe` takes."""
    if target.dns is not None:
        spec = target.dns
        return f"dns://{spec.server}/{spec.query_name}?type={spec.query_type}"
    if target.icmp is not None:
        host = target.icmp.host
        return f"icmp://[{host}]" if ":" in host else f"icmp://{host}"
    if target.grpc is not None:
        g = target.grpc
        where = f"[{g.host}]:{g.port}" if ":" in g.host else f"{g.host}:{g.port}"
        return f"grpc://{where}/{g.service}" + ("?tls=1" if g.tls else "")
    return ""


class KindMetrics:
    def __init__(self) -> None:
        def gauge(name: str, text: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=["target", *labels])

        self.dns_phases = gauge(
            "probe_dns_duration_seconds", "Duration of each phase of the last DNS probe", "phase"
        )
        self.dns_lookup = gauge(
            "probe_dns_lookup_time_seconds",
            "Time to resolve the DNS server's own name in the last probe (0 for an IP)",
        )
        self.dns_succeeded = gauge(
            "probe_dns_query_succeeded", "Whether the last DNS query got an answer"
        )
        self.dns_rcode = gauge("probe_dns_rcode", "Response code of the last DNS answer")
        self.dns_answer = gauge(
            "probe_dns_answer_rrs", "Entries in the answer section of the last DNS answer"
        )
        self.dns_authority = gauge(
            "probe_dns_authority_rrs", "Entries in the authority section of the last DNS answer"
        )
        self.dns_additional = gauge(
            "probe_dns_additional_rrs",
            "Entries in the additional section of the last DNS answer",
        )
        self.dns_serial = gauge("probe_dns_serial", "Zone serial of the last SOA answer")
        self.icmp_phases = gauge(
            "probe_icmp_duration_seconds",
            "Duration of each phase of the last ICMP probe (rtt: mean round trip)",
            "phase",
        )
        self.icmp_sent = gauge(
            "probe_icmp_packets_sent", "Echo requests sent by the last ICMP probe"
        )
        self.icmp_received = gauge(
            "probe_icmp_packets_received", "Echo replies received by the last ICMP probe"
        )
        self.grpc_phases = gauge(
            "probe_grpc_duration_seconds", "Duration of each phase of the last gRPC probe",
            "phase",
        )
        self.grpc_status = gauge(
            "probe_grpc_status_code", "gRPC status code of the last health check call"
        )
        self.grpc_health = gauge(
            "probe_grpc_healthcheck_response",
            "1 for the serving status the last health check answered",
            "serving_status",
        )
        self.grpc_ssl = gauge("probe_grpc_ssl", "Whether the last gRPC probe used TLS")

    def add(self, tid: str, kind: str, res: ProbeResult) -> None:
        if kind == "dns":
            self._dns(tid, res)
        elif kind == "grpc":
            self._grpc(tid, res)
        elif kind == "icmp":
            for phase, value in res.phases.items():
                self.icmp_phases.add_metric([tid, phase], value)
            if "icmp_packets_sent" in res.facts:
                self.icmp_sent.add_metric([tid], res.facts["icmp_packets_sent"])
                self.icmp_received.add_metric([tid], res.facts["icmp_packets_received"])

    def _dns(self, tid: str, res: ProbeResult) -> None:
        for phase, value in res.phases.items():
            self.dns_phases.add_metric([tid, phase], value)
        self.dns_lookup.add_metric([tid], res.phases.get("resolve", 0.0))
        facts = res.facts
        answered = "dns_rcode" in facts
        self.dns_succeeded.add_metric([tid], 1.0 if answered else 0.0)
        if not answered:
            return
        self.dns_rcode.add_metric([tid], facts["dns_rcode"])
        self.dns_answer.add_metric([tid], facts["dns_answer_rrs"])
        self.dns_authority.add_metric([tid], facts["dns_authority_rrs"])
        self.dns_additional.add_metric([tid], facts["dns_additional_rrs"])
        if "dns_serial" in facts:
            self.dns_serial.add_metric([tid], facts["dns_serial"])

    def _grpc(self, tid: str, res: ProbeResult) -> None:
        for phase, value in res.phases.items():
            self.grpc_phases.add_metric([tid, phase], value)
        facts = res.facts
        if "grpc_status_code" in facts:
            self.grpc_status.add_metric([tid], facts["grpc_status_code"])
        if "grpc_ssl" in facts:
            self.grpc_ssl.add_metric([tid], facts["grpc_ssl"])
        answered = facts.get("grpc_serving_status")
        for i, name in enumerate(SERVING_STATUSES):
            self.grpc_health.add_metric([tid, name], 1.0 if answered == i else 0.0)

    def families(self) -> Iterator[Metric]:
        yield from (self.dns_phases, self.dns_lookup, self.dns_succeeded, self.dns_rcode)
        yield from (self.dns_answer, self.dns_authority, self.dns_additional, self.dns_serial)
        yield from (self.icmp_phases, self.icmp_sent, self.icmp_received)
        yield from (self.grpc_phases, self.grpc_status, self.grpc_health, self.grpc_ssl)
