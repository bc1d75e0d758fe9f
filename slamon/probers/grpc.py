"""gRPC prober: the standard grpc.health.v1.Health/Check, over TLS or plaintext.

SERVING is up; NOT_SERVING, UNKNOWN and SERVICE_UNKNOWN fail with reason
`not_serving`, an RPC that ends in another status than OK with `grpc_status`
(UNIMPLEMENTED: no health service; NOT_FOUND: the server does not know the
service), both with the status in the detail. A connection refused, reset or
a failed TLS handshake get the reasons every prober uses for them.

Phases as blackbox_exporter's grpc prober: resolve (the host's name; absent for
an IP) and check (connect, handshake and the call). The channel is new for
each probe, with a subchannel pool of its own, so every probe connects: as with
HTTP's `fresh_connection`, reachability is what is measured.

grpcio and grpcio-health-checking are the optional `grpc` extra, imported on
the first probe. grpc.aio drives its calls from the running event loop; it
works on asyncio's loop and on uvloop alike (tests/test_probe_grpc.py runs on
both, one after the other in one process).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
from typing import Any

from slamon.config.targets import GrpcSpec, Target
from slamon.probers._net import PhaseClock, ProbeError, classify, ip_literal_family, timeout_detail
from slamon.probers.base import FailureReason, ProbeResult
from slamon.util.redact import redact_text

#: the phases of a gRPC probe (the label values of probe_grpc_duration_seconds)
PHASES = ("resolve", "check")
#: grpc.health.v1.HealthCheckResponse.ServingStatus by value, so that the metrics can
#: name a status without importing grpc
SERVING_STATUSES = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")
_SERVING = 1
_FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


def _quiet() -> None:
    """grpc's C core logs each failed handshake to stderr; a probe reports its own
    failures, so keep the core quiet unless the operator asked (GRPC_VERBOSITY)."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")


@functools.lru_cache(maxsize=64)
def _credentials(ca_file: str | None, mtime: float) -> Any:
    """TLS channel credentials, cached per CA file and its modification time."""
    import grpc

    if ca_file is None:
        return grpc.ssl_channel_credentials()
    with open(ca_file, "rb") as f:
        return grpc.ssl_channel_credentials(root_certificates=f.read())


def credentials(ca_file: str | None) -> Any:
    try:
        mtime = os.stat(ca_file).st_mtime if ca_file is not None else 0.0
    except OSError as exc:
        raise ProbeError(FailureReason.TLS, f"cannot read ca_file: {exc.strerror}") from None
    return _credentials(ca_file, mtime)


async def _resolve(
    loop: asyncio.AbstractEventLoop, spec: GrpcSpec, clock: PhaseClock
) -> tuple[int, str]:
    literal = ip_literal_family(spec.host)
    wanted = _FAMILIES[spec.ip_family]
    if literal is not None:
        if wanted not in (socket.AF_UNSPEC, literal):
            raise ProbeError(FailureReason.DNS, f"address {spec.host} is not {spec.ip_family}")
        return literal, spec.host
    clock.enter("resolve")
    try:
        infos = await loop.getaddrinfo(
            spec.host, spec.port, family=wanted, type=socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise ProbeError(
            FailureReason.DNS, f"cannot resolve {spec.host}: {exc.strerror}"
        ) from None
    finally:
        clock.leave()
    if not infos:
        raise ProbeError(FailureReason.DNS, f"no {spec.ip_family} address for {spec.host}")
    fam, _type, _proto, _canon, sockaddr = infos[0]
    return int(fam), str(sockaddr[0])


def rpc_failure(code: str, details: str) -> tuple[FailureReason, str]:
    """A failed call's status in the words and reasons the other probers use."""
    text = redact_text(details)[:300]
    low = text.lower()
    if code == "DEADLINE_EXCEEDED":
        return FailureReason.TIMEOUT, f"rpc {code}: {text}"
    if code == "UNAVAILABLE":
        if "connection refused" in low:
            return FailureReason.REFUSED, "connection refused"
        if any(w in low for w in ("ssl", "tls", "handshake", "certificate", "verification")):
            return FailureReason.TLS, f"TLS handshake failed: {text}"
        if "reset" in low or "socket closed" in low:
            return FailureReason.RESET, f"connection reset: {text}"
    return FailureReason.GRPC_STATUS, f"rpc {code}: {text}" if text else f"rpc {code}"


async def _run(target: Target, clock: PhaseClock, facts: dict[str, float], timeout: float
               ) -> None:
    _quiet()  # before the first import of grpc, which reads it
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    spec = target.grpc
    if spec is None:
        raise ProbeError(FailureReason.OTHER, "target has no grpc section")
    end = time.monotonic() + timeout
    loop = asyncio.get_running_loop()
    family, addr = await _resolve(loop, spec, clock)
    # an IP target: grpc resolves nothing itself, the name goes in :authority and TLS
    where = (
        f"ipv6:[{addr}]:{spec.port}" if family == socket.AF_INET6 else f"ipv4:{addr}:{spec.port}"
    )
    options: list[tuple[str, Any]] = [
        ("grpc.default_authority", f"{spec.host}:{spec.port}"),
        ("grpc.use_local_subchannel_pool", 1),  # connect anew, share nothing
        ("grpc.enable_retries", 0),
    ]
    facts["grpc_ssl"] = 1.0 if spec.tls else 0.0
    clock.enter("check")
    if spec.tls:
        options.append(("grpc.ssl_target_name_override", spec.server_name or spec.host))
        channel = grpc.aio.secure_channel(where, credentials(spec.ca_file), options=options)
    else:
        channel = grpc.aio.insecure_channel(where, options=options)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=spec.service),
                timeout=max(end - time.monotonic(), 0.001),
            )
        except grpc.aio.AioRpcError as exc:
            clock.leave()
            code = exc.code()
            facts["grpc_status_code"] = float(code.value[0])
            raise ProbeError(*rpc_failure(code.name, exc.details() or "")) from None
        clock.leave()
    finally:
        await channel.close()
    facts["grpc_status_code"] = 0.0
    status = int(response.status)
    facts["grpc_serving_status"] = float(status)
    if status != _SERVING:
        name = SERVING_STATUSES[status] if 0 <= status < len(SERVING_STATUSES) else str(status)
        about = f"service {spec.service!r}" if spec.service else "the server"
        raise ProbeError(FailureReason.NOT_SERVING, f"health of {about}: {name}")


async def probe(target: Target, timeout: float) -> ProbeResult:
    """Probe `target.grpc`; never raises, never takes longer than `timeout`."""
    start = time.perf_counter()
    clock = PhaseClock(current="resolve")
    facts: dict[str, float] = {}
    deadline: asyncio.Timeout | None = None
    reason: FailureReason
    try:
        async with asyncio.timeout(timeout) as deadline:
            await _run(target, clock, facts, timeout)
        return ProbeResult(
            ok=True, duration=time.perf_counter() - start, phases=clock.phases, facts=facts
        )
    except ProbeError as exc:
        reason, detail = exc.reason, redact_text(exc.detail)
    except TimeoutError as exc:
        if deadline is not None and deadline.expired():
            reason, detail = FailureReason.TIMEOUT, timeout_detail(timeout, clock.current)
        else:
            reason, detail = classify(exc)
    except Exception as exc:
        reason, detail = classify(exc)
    return ProbeResult.failure(
        reason, time.perf_counter() - start, detail, phases=clock.phases, facts=facts
    )
