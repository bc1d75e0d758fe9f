"""ICMP prober: echo requests to one host (IPv4 or IPv6), judged on the replies.

Phases as blackbox_exporter's icmp prober: resolve (the host's name; absent for
an IP), setup (opening the socket) and rtt (the mean round trip of the replies
received). `count` requests go out `packet_interval` apart on one socket; the
probe waits for their replies until all are in or the timeout is reached, on
the socket's readiness, without sleeping. No reply at all fails with reason
`timeout`; some replies but more loss than `max_packet_loss` fails with
`packet_loss`.

Sockets: an unprivileged ICMP ("ping") socket where the kernel allows one to
this process's group (net.ipv4.ping_group_range, which covers IPv6 too), else a
raw socket, which needs root or CAP_NET_RAW. The ping socket is tried first even
as root: the kernel hands it only its own replies, where every raw ICMP socket
sees every ICMP packet of the host, so many concurrent probes would each wake
for all the others' replies. The choice is made once per address family.

icmplib builds and parses the packets; it is the optional `icmp` extra,
imported on the first probe.
"""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
import time
from typing import TYPE_CHECKING, Any

from slamon.config.targets import Target
from slamon.probers._net import PhaseClock, ProbeError, classify, ip_literal_family, timeout_detail
from slamon.probers.base import FailureReason, ProbeResult
from slamon.util.durations import format_duration
from slamon.util.redact import redact_text

if TYPE_CHECKING:
    from collections.abc import Callable

#: the phases of an ICMP probe (the label values of probe_icmp_duration_seconds)
PHASES = ("resolve", "setup", "rtt")
_FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
_ECHO_REPLY: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 129}
#: address family -> privileged (raw) socket or not, decided on the first probe
_privileged: dict[int, bool] = {}


def _open_socket(family: int) -> Any:
    """An icmplib socket for `family`: unprivileged if the kernel allows, else raw."""
    import icmplib

    cls: Callable[..., Any] = (
        icmplib.ICMPv6Socket if family == socket.AF_INET6 else icmplib.ICMPv4Socket
    )
    known = _privileged.get(family)
    if known is not None:
        return cls(None, known)
    try:
        sock = cls(None, False)
    except icmplib.SocketPermissionError:
        sock = cls(None, True)  # a SocketPermissionError here is the probe's to report
        _privileged[family] = True
    else:
        _privileged[family] = False
    return sock


async def _resolve(
    loop: asyncio.AbstractEventLoop, host: str, ip_family: str, clock: PhaseClock
) -> tuple[int, str]:
    literal = ip_literal_family(host)
    wanted = _FAMILIES[ip_family]
    if literal is not None:
        if wanted not in (socket.AF_UNSPEC, literal):
            raise ProbeError(FailureReason.DNS, f"address {host} is not {ip_family}")
        return literal, host
    clock.enter("resolve")
    try:
        infos = await loop.getaddrinfo(host, None, family=wanted, type=socket.SOCK_RAW)
    except socket.gaierror as exc:
        raise ProbeError(FailureReason.DNS, f"cannot resolve {host}: {exc.strerror}") from None
    finally:
        clock.leave()
    if not infos:
        raise ProbeError(FailureReason.DNS, f"no {ip_family} address for {host}")
    fam, _type, _proto, _canon, sockaddr = infos[0]
    return int(fam), str(sockaddr[0])


async def _run(target: Target, clock: PhaseClock, facts: dict[str, float], timeout: float) -> None:
    import icmplib

    end = time.monotonic() + timeout

    spec = target.icmp
    if spec is None:
        raise ProbeError(FailureReason.OTHER, "target has no icmp section")
    loop = asyncio.get_running_loop()
    family, addr = await _resolve(loop, spec.host, spec.ip_family, clock)
    clock.enter("setup")
    try:
        raw = _open_socket(family)
    except icmplib.SocketPermissionError:
        raise ProbeError(
            FailureReason.OTHER,
            "no ICMP socket allowed: run as root (or with CAP_NET_RAW), or let this "
            "group open ping sockets (sysctl net.ipv4.ping_group_range)",
        ) from None
    clock.leave()
    # a random id: raw sockets see every echo reply of the host (other probes, other
    # slamons); a ping socket gets the kernel's own id and only its own replies
    ident = random.randrange(1, 0x10000)
    privileged = _privileged[family]
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    error = ""
    with icmplib.AsyncSocket(raw) as sock:
        next_seq, next_send = 0, time.monotonic()
        while len(rtts) < spec.count:
            now = time.monotonic()
            while next_seq < spec.count and now >= next_send:
                request = icmplib.ICMPRequest(
                    destination=addr, id=ident, sequence=next_seq, payload_size=spec.payload_size
                )
                try:
                    sock.send(request)
                except icmplib.ICMPSocketError as exc:
                    raise ProbeError(FailureReason.OTHER, f"cannot send: {exc}") from None
                sent[next_seq] = request.time
                facts["icmp_packets_sent"] = float(len(sent))
                next_seq += 1
                next_send += spec.packet_interval
            wait_until = next_send if next_seq < spec.count else end
            if wait_until <= now and next_seq >= spec.count:
                break
            try:
                reply = await sock.receive(None, max(wait_until - now, 0.0))
            except icmplib.TimeoutExceeded:
                continue  # time to send the next one, or the loop's test ends it
            except icmplib.ICMPSocketError as exc:
                raise ProbeError(FailureReason.OTHER, f"cannot receive: {exc}") from None
            seq = reply.sequence
            if seq not in sent or seq in rtts or (privileged and reply.id != ident):
                continue  # not ours: another probe's, a duplicate, our own request
            if reply.type == _ECHO_REPLY[family]:
                rtts[seq] = reply.time - sent[seq]
                facts["icmp_packets_received"] = float(len(rtts))
            elif reply.type not in (8, 128):  # an error about one of our requests
                try:
                    reply.raise_for_status()
                except icmplib.ICMPError as exc:
                    error = f"{exc} from {reply.source}" if reply.source else str(exc)
    facts.setdefault("icmp_packets_sent", float(len(sent)))
    facts.setdefault("icmp_packets_received", 0.0)
    if rtts:
        clock.add("rtt", statistics.fmean(rtts.values()))
    _judge(spec.count, len(rtts), spec.max_packet_loss, timeout, error)


def _judge(count: int, received: int, max_loss: float | None, budget: float, error: str) -> None:
    if received == 0:
        why = f": {error}" if error else ""
        raise ProbeError(
            FailureReason.TIMEOUT, f"no echo reply to {count} packet{'s' if count > 1 else ''}"
            f" in {format_duration(budget)}{why}"
        )
    loss = 1 - received / count
    if max_loss is not None and loss > max_loss:
        raise ProbeError(
            FailureReason.PACKET_LOSS,
            f"{loss:.0%} packet loss ({received} of {count} answered), more than "
            f"{max_loss:.0%}",
        )


async def probe(target: Target, timeout: float) -> ProbeResult:
    """Probe `target.icmp`; never raises, never takes longer than `timeout`."""
    start = time.perf_counter()
    clock = PhaseClock(current="resolve")
    facts: dict[str, float] = {}
    deadline: asyncio.Timeout | None = None
    reason: FailureReason
    try:
        # the probe stops waiting for replies at `timeout` itself and judges what came
        # back; the outer deadline only guards against a step that hangs
        async with asyncio.timeout(timeout + 0.5) as deadline:
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
