"""DNS prober: one query to one server, judged on its rcode and answer records.

As blackbox_exporter's dns prober: phases resolve (the server's own name;
absent for an IP), connect (socket set-up; for TCP the handshake) and request
(query sent -> answer read). The rcode must be one of `valid_rcodes`
(NOERROR by default); NXDOMAIN and SERVFAIL fail with reasons of their own,
any other rcode with `rcode`; then the `answer_*` regexes are matched against
each answer record in presentation form (`example.com. 300 IN A 192.0.2.1`).

A UDP answer with the TC (truncated) bit is asked again over TCP, inside the
same timeout, as a stub resolver and dig do: what a client of the server gets
is the full answer, so that is what is judged. `dns_truncated` in the facts
says that it happened.

dnspython is the optional `dns` extra, imported on the first probe (config
validation tells a user without it what to install). Chosen over aiodns: it
runs on the event loop's own sockets (asyncio and uvloop alike; aiodns wraps
c-ares with its own socket handling), lets a probe pick the server, the
transport and the RD flag per query, and hands back the whole message
(rcode, every section, the TC bit) rather than only parsed records.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import TYPE_CHECKING

from slamon.config.targets import DnsSpec, Target
from slamon.probers._net import PhaseClock, ProbeError, classify, ip_literal_family, timeout_detail
from slamon.probers.base import FailureReason, ProbeResult
from slamon.util.redact import redact_text

if TYPE_CHECKING:
    import dns._asyncbackend
    import dns.message

#: the phases of a DNS probe, in order (the label values of probe_dns_duration_seconds)
PHASES = ("resolve", "connect", "request")
_FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
_RCODE_REASONS = {2: FailureReason.SERVFAIL, 3: FailureReason.NXDOMAIN}


def answer_failure(spec: DnsSpec, records: list[str]) -> tuple[FailureReason, str] | None:
    """The `answer_*` assertions over the answer records' text; None = all pass.

    Pure, kept beside the prober because only DNS has records to match.
    """
    for regex in spec.answer_not_matches:
        pat = re.compile(regex)
        for rr in records:
            if pat.search(rr):
                return FailureReason.ANSWER, f"answer record {rr!r} matches {regex!r}"
    for regex in spec.answer_matches:
        pat = re.compile(regex)
        if not any(pat.search(rr) for rr in records):
            shown = f"{len(records)} answer records" if records else "no answer records"
            return FailureReason.ANSWER, f"none of {shown} matches {regex!r}"
    for regex in spec.answer_all_match:
        pat = re.compile(regex)
        if not records:
            return FailureReason.ANSWER, f"no answer records to match {regex!r}"
        for rr in records:
            if not pat.search(rr):
                return FailureReason.ANSWER, f"answer record {rr!r} does not match {regex!r}"
    return None


async def _resolve(
    loop: asyncio.AbstractEventLoop, host: str, port: int, ip_family: str, clock: PhaseClock
) -> tuple[int, str]:
    """The server's (family, address); an IP literal skips the resolve phase."""
    literal = ip_literal_family(host)
    wanted = _FAMILIES[ip_family]
    if literal is not None:
        if wanted not in (socket.AF_UNSPEC, literal):
            raise ProbeError(FailureReason.DNS, f"server address {host} is not {ip_family}")
        return literal, host
    clock.enter("resolve")
    try:
        infos = await loop.getaddrinfo(host, port, family=wanted, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ProbeError(
            FailureReason.DNS, f"cannot resolve server {host}: {exc.strerror}"
        ) from None
    finally:
        clock.leave()
    if not infos:
        raise ProbeError(FailureReason.DNS, f"no {ip_family} address for server {host}")
    fam, _type, _proto, _canon, sockaddr = infos[0]
    return int(fam), str(sockaddr[0])


async def _udp(
    backend: dns._asyncbackend.Backend,
    query: dns.message.Message,
    family: int,
    addr: str,
    port: int,
    clock: PhaseClock,
) -> dns.message.Message:
    import dns.asyncquery

    clock.enter("connect")
    # a connected socket: an ICMP port unreachable comes back as "refused" at once
    # instead of the probe waiting out its timeout
    sock = await backend.make_socket(  # type: ignore[no-untyped-call]  # dnspython: untyped
        family, socket.SOCK_DGRAM, 0, None, (addr, port)
    )
    clock.leave()
    try:
        clock.enter("request")
        response = await dns.asyncquery.udp(query, addr, port=port, sock=sock,
                                            ignore_unexpected=True)
        clock.leave()
        return response
    finally:
        await sock.close()


async def _tcp(
    backend: dns._asyncbackend.Backend,
    query: dns.message.Message,
    family: int,
    addr: str,
    port: int,
    clock: PhaseClock,
) -> dns.message.Message:
    import dns.asyncquery

    clock.enter("connect")
    sock = await backend.make_socket(  # type: ignore[no-untyped-call]  # dnspython: untyped
        family, socket.SOCK_STREAM, 0, None, (addr, port)
    )
    clock.leave()
    try:
        clock.enter("request")
        response = await dns.asyncquery.tcp(query, addr, port=port, sock=sock)
        clock.leave()
        return response
    except EOFError:
        raise ProbeError(
            FailureReason.RESET, "connection closed by the server before the answer"
        ) from None
    finally:
        await sock.close()


async def _run(target: Target, clock: PhaseClock, facts: dict[str, float]) -> None:
    import dns.asyncbackend
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdatatype

    spec = target.dns
    if spec is None:
        raise ProbeError(FailureReason.OTHER, "target has no dns section")
    loop = asyncio.get_running_loop()
    host, port = spec.address()
    family, addr = await _resolve(loop, host, port, spec.ip_family, clock)
    query = dns.message.make_query(spec.query_name, spec.query_type)
    if not spec.recursion_desired:
        query.flags &= ~dns.flags.RD
    # explicit: the default backend would ask sniffio which library runs the loop
    backend = dns.asyncbackend.get_backend("asyncio")
    if spec.transport == "tcp":
        response = await _tcp(backend, query, family, addr, port, clock)
    else:
        response = await _udp(backend, query, family, addr, port, clock)
        if response.flags & dns.flags.TC:
            facts["dns_truncated"] = 1.0
            response = await _tcp(backend, query, family, addr, port, clock)
    rcode = response.rcode()
    facts["dns_rcode"] = float(rcode)
    facts["dns_answer_rrs"] = float(sum(len(rrset) for rrset in response.answer))
    facts["dns_authority_rrs"] = float(sum(len(rrset) for rrset in response.authority))
    facts["dns_additional_rrs"] = float(sum(len(rrset) for rrset in response.additional))
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            facts["dns_serial"] = float(rrset[0].serial)
            break
    name = dns.rcode.to_text(rcode)
    if name not in spec.valid_rcodes:
        reason = _RCODE_REASONS.get(rcode, FailureReason.RCODE)
        raise ProbeError(
            reason, f"rcode {name} for {spec.query_name} {spec.query_type} "
            f"(valid: {', '.join(spec.valid_rcodes)})"
        )
    records = [line for rrset in response.answer for line in rrset.to_text().splitlines()]
    failed = answer_failure(spec, records)
    if failed is not None:
        raise ProbeError(*failed)


def _failure(exc: Exception) -> tuple[FailureReason, str]:
    """dnspython's own errors in words; the rest as every prober words them."""
    import dns.exception

    if isinstance(exc, dns.exception.DNSException):
        return FailureReason.OTHER, f"bad DNS response: {redact_text(str(exc))[:200]}"
    return classify(exc)


async def probe(target: Target, timeout: float) -> ProbeResult:
    """Probe `target.dns`; never raises, never takes longer than `timeout`."""
    start = time.perf_counter()
    clock = PhaseClock(current="resolve")
    facts: dict[str, float] = {}
    deadline: asyncio.Timeout | None = None
    reason: FailureReason
    try:
        async with asyncio.timeout(timeout) as deadline:
            await _run(target, clock, facts)
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
        reason, detail = _failure(exc)
    return ProbeResult.failure(
        reason, time.perf_counter() - start, detail, phases=clock.phases, facts=facts
    )
