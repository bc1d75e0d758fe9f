"""Connection plumbing shared by the HTTP and TCP probers.

DNS and TCP connect are done as separate steps so each phase can be timed
(blackbox_exporter's dns/connect; the TLS handshake is in `_tls`), and every
failure is mapped to one fixed `FailureReason`. Nothing here builds per-probe
objects that could be cached: IP-literal checks are memoised.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from slamon.probers.base import FailureReason
from slamon.util.durations import format_duration
from slamon.util.redact import redact_text

IpFamily = Literal["any", "ipv4", "ipv6"]
_FAMILIES: dict[str, int] = {
    "any": socket.AF_UNSPEC,
    "ipv4": socket.AF_INET,
    "ipv6": socket.AF_INET6,
}
_CACHE_MAX = 10_000

P = TypeVar("P", bound=asyncio.BaseProtocol)


class ProbeError(Exception):
    """A probe failure with its reason already decided (raised inside a prober)."""

    def __init__(self, reason: FailureReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class PhaseClock:
    """Per-phase durations, summed over hops; knows which phase is running.

    The current phase is what a timeout detail reports ("timeout after 2s in
    phase tls"), which tells an SRE where the time went.
    """

    phases: dict[str, float] = field(default_factory=dict)
    current: str = "dns"
    _started: float = 0.0

    def enter(self, phase: str) -> float:
        """Start `phase` now; return the timestamp used."""
        now = time.perf_counter()
        self.current = phase
        self._started = now
        return now

    def leave(self, now: float | None = None) -> float:
        """Close the current phase and add its duration."""
        if now is None:
            now = time.perf_counter()
        self.add(self.current, now - self._started)
        return now

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds


def timeout_detail(timeout: float, phase: str) -> str:
    return f"timeout after {format_duration(timeout)} in phase {phase}"


# ---------------------------------------------------------------- DNS


_literal_cache: dict[str, int | None] = {}


def ip_literal_family(host: str) -> int | None:
    """AF_INET/AF_INET6 if `host` is an IP literal, else None (memoised)."""
    try:
        return _literal_cache[host]
    except KeyError:
        pass
    try:
        addr = ipaddress.ip_address(host)
        fam: int | None = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    except ValueError:
        fam = None
    if len(_literal_cache) > _CACHE_MAX:
        _literal_cache.clear()
    _literal_cache[host] = fam
    return fam


async def resolve(
    loop: asyncio.AbstractEventLoop, host: str, port: int, ip_family: str, clock: PhaseClock
) -> list[tuple[int, str]]:
    """Return [(family, address)] to try in order; IP literals skip DNS (no dns phase)."""
    wanted = _FAMILIES[ip_family]
    lit = ip_literal_family(host)
    if lit is not None:
        if wanted not in (socket.AF_UNSPEC, lit):
            raise ProbeError(FailureReason.DNS, f"address {host} is not {ip_family}")
        return [(lit, host)]
    clock.enter("dns")
    try:
        infos = await loop.getaddrinfo(
            host, port, family=wanted, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as exc:
        raise ProbeError(FailureReason.DNS, f"cannot resolve {host}: {exc.strerror}") from None
    finally:
        clock.leave()
    out: list[tuple[int, str]] = []
    for fam, _type, _proto, _canon, sockaddr in infos:
        item = (int(fam), str(sockaddr[0]))
        if item not in out:
            out.append(item)
    if not out:
        raise ProbeError(FailureReason.DNS, f"no {ip_family} address for {host}")
    return out


# ---------------------------------------------------------------- connect


async def connect(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], P],
    addrs: list[tuple[int, str]],
    port: int,
    clock: PhaseClock,
    on_transport: Callable[[asyncio.Transport], None],
) -> tuple[asyncio.Transport, P]:
    """TCP connect to the first address that accepts; phase connect.

    `on_transport` is called as soon as a transport exists, so the caller can
    abort it whatever happens later (cancellation-safe cleanup).
    """
    failure: tuple[FailureReason, str] | None = None
    clock.enter("connect")
    for fam, addr in addrs:
        try:
            transport, protocol = await loop.create_connection(factory, addr, port, family=fam)
        except OSError as exc:
            # keep the classification, not the exception: an exception held in a
            # local would form a frame <-> traceback cycle for the cyclic GC
            failure = classify(exc)
            continue
        on_transport(transport)
        clock.leave()
        return transport, protocol
    clock.leave()
    assert failure is not None
    raise ProbeError(*failure)


# ---------------------------------------------------------------- errors


def exc_text(exc: BaseException) -> str:
    """Short, redacted text of an exception: the OS's words when there are some."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return redact_text(text)[:200]


def classify(exc: BaseException) -> tuple[FailureReason, str]:
    """Map an exception from a probe to a reason and a short, redacted detail.

    TLS errors are `_tls.tls_failure`'s to word: a prober asks it first
    (`tls_failure(exc) or classify(exc)`), since `ssl.SSLError` is an `OSError`
    and would land here as a network error.
    """
    if isinstance(exc, ProbeError):
        return exc.reason, redact_text(exc.detail)
    if isinstance(exc, socket.gaierror):
        return FailureReason.DNS, f"cannot resolve: {exc_text(exc)}"
    if isinstance(exc, ConnectionRefusedError):
        return FailureReason.REFUSED, "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return FailureReason.RESET, f"connection reset: {exc_text(exc)}"
    if isinstance(exc, TimeoutError):
        return FailureReason.TIMEOUT, f"timeout: {exc_text(exc)}"
    if isinstance(exc, OSError):
        return FailureReason.OTHER, f"network error: {exc_text(exc)}"
    return FailureReason.OTHER, f"{type(exc).__name__}: {exc_text(exc)}"
