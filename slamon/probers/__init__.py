"""Prober registry: adding a protocol is adding a module and a line here.

Laid out as blackbox_exporter's prober/: every prober has the one signature
of `base.Prober` and `PROBERS` maps a target kind to its prober.

- `base`: `ProbeResult`, `FailureReason` and the `Prober` signature.
- `http`, `tcp`, `dns`, `icmp`, `grpc`: the transports. They connect, speak the protocol, time the
  phases and gather the facts of the response.
- `checks`: the assertions, pure functions over those facts and the target
  spec (status, headers, body, JSON, response time, certificate validity,
  TCP `expect`), each returning None or `(FailureReason, detail)`.
- `_net`: DNS, TCP connect, phase timing, `ProbeError` and error classification.
- `_tls`: SSL contexts (cached), the TLS handshake, the peer certificate's
  expiry and TLS error classification.
"""

from __future__ import annotations

from slamon.probers import dns, grpc, heartbeat, http, icmp, tcp
from slamon.probers.base import FailureReason, Prober, ProbeResult

# dns, icmp and grpc import their libraries (optional extras) on their first probe, not here
PROBERS: dict[str, Prober] = {
    "http": http.probe, "tcp": tcp.probe, "dns": dns.probe, "icmp": icmp.probe,
    "grpc": grpc.probe, "heartbeat": heartbeat.probe,
}


def get_prober(kind: str) -> Prober:
    """The probe function for a target kind; KeyError names the known kinds."""
    try:
        return PROBERS[kind]
    except KeyError:
        raise KeyError(f"unknown prober kind {kind!r} (known: {', '.join(PROBERS)})") from None


__all__ = ["PROBERS", "FailureReason", "ProbeResult", "Prober", "get_prober"]
