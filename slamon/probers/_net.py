"""Connection plumbing shared by the HTTP and TCP probers.

DNS, TCP connect and the TLS handshake are done as separate steps so each
phase can be timed (blackbox_exporter's dns/connect/tls), and every failure is
mapped to one fixed `FailureReason`. Nothing here builds per-probe objects that
could be cached: SSL contexts, IP-literal checks and certificate expiry
parsing are memoised.
"""

from __future__ import annotations

import asyncio
import calendar
import ipaddress
import re
import socket
import ssl
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


_patterns: dict[str, re.Pattern[str]] = {}


def pattern(source: str) -> re.Pattern[str]:
    """Compiled regex, shared by every target using the same pattern string."""
    pat = _patterns.get(source)
    if pat is None:
        if len(_patterns) > _CACHE_MAX:
            _patterns.clear()
        pat = _patterns[source] = re.compile(source)
    return pat


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


# ---------------------------------------------------------------- TLS


_ssl_cache: dict[tuple[bool, str | None], ssl.SSLContext] = {}


def ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """One context per (verify, ca_file): building one costs ~1 ms of CPU (CA store load)."""
    key = (verify, ca_file)
    ctx = _ssl_cache.get(key)
    if ctx is not None:
        return ctx
    try:
        if verify:
            ctx = ssl.create_default_context(cafile=ca_file)
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if ca_file:
                ctx.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(FailureReason.TLS, f"cannot load ca_file {ca_file}: {exc}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    _ssl_cache[key] = ctx
    return ctx


def _der_item(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER item at `pos`."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    return tag, pos, pos + length


def _der_time(tag: int, raw: bytes) -> float:
    text = raw.decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSS
        year = int(text[:2])
        year += 2000 if year < 50 else 1900
        rest = text[2:]
    else:  # GeneralizedTime YYYYMMDDHHMMSS
        year = int(text[:4])
        rest = text[4:]
    month, day, hour, minute = (int(rest[i : i + 2]) for i in (0, 2, 4, 6))
    second = int(rest[8:10]) if len(rest) >= 10 else 0
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


_expiry_cache: dict[bytes, float] = {}


def cert_not_after(der: bytes) -> float:
    """notAfter of a DER X.509 certificate as unix time.

    Parsed by hand because `getpeercert()` returns nothing when verification
    is off, and this avoids a runtime dependency on `cryptography`.
    """
    cached = _expiry_cache.get(der)
    if cached is not None:
        return cached
    _, start, _ = _der_item(der, 0)  # Certificate
    _, pos, _ = _der_item(der, start)  # tbsCertificate
    tag, _, end = _der_item(der, pos)
    if tag == 0xA0:  # [0] version
        pos = end
    for _skip in range(3):  # serialNumber, signature, issuer
        _, _, pos = _der_item(der, pos)
    _, pos, _ = _der_item(der, pos)  # validity
    _, _, pos = _der_item(der, pos)  # notBefore
    tag, start, end = _der_item(der, pos)  # notAfter
    value = _der_time(tag, der[start:end])
    if len(_expiry_cache) > _CACHE_MAX:
        _expiry_cache.clear()
    _expiry_cache[der] = value
    return value


def peer_cert_expiry(transport: asyncio.BaseTransport) -> float | None:
    obj = transport.get_extra_info("ssl_object")
    if obj is None:
        return None
    der = obj.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        return cert_not_after(der)
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def check_cert_validity(expiry: float | None, min_validity: float | None) -> None:
    """Raise a tls failure if the certificate expires within `min_validity`."""
    if min_validity is None or expiry is None:
        return
    left = expiry - time.time()
    if left < min_validity:
        if left <= 0:
            msg = "certificate has expired"
        else:
            step = 3600 if left >= 86400 else 60 if left >= 3600 else 1
            msg = f"certificate expires in {format_duration(max(1, round(left / step)) * step)}"
        raise ProbeError(
            FailureReason.TLS, f"{msg} (min_cert_validity {format_duration(min_validity)})"
        )


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


async def start_tls(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    protocol: asyncio.BaseProtocol,
    ctx: ssl.SSLContext,
    server_hostname: str,
    clock: PhaseClock,
) -> asyncio.Transport:
    """TLS handshake over an open transport; phase tls; every failure is reason tls."""
    clock.enter("tls")
    try:
        tls = await loop.start_tls(transport, protocol, ctx, server_hostname=server_hostname)
    except (OSError, ssl.CertificateError, EOFError) as exc:
        raise ProbeError(FailureReason.TLS, f"TLS handshake failed: {_exc_text(exc)}") from None
    finally:
        clock.leave()
    if tls is None:  # pragma: no cover - only for a protocol without TLS
        raise ProbeError(FailureReason.TLS, "TLS not supported on this transport")
    return tls


# ---------------------------------------------------------------- errors


def _exc_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = exc.verify_message or str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return redact_text(text)[:200]


def classify(exc: BaseException) -> tuple[FailureReason, str]:
    """Map any exception from a probe to a reason and a short, redacted detail."""
    if isinstance(exc, ProbeError):
        return exc.reason, redact_text(exc.detail)
    if isinstance(exc, socket.gaierror):
        return FailureReason.DNS, f"cannot resolve: {_exc_text(exc)}"
    if isinstance(exc, ConnectionRefusedError):
        return FailureReason.REFUSED, "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return FailureReason.RESET, f"connection reset: {_exc_text(exc)}"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return FailureReason.TLS, f"TLS error: {_exc_text(exc)}"
    if isinstance(exc, TimeoutError):
        return FailureReason.TIMEOUT, f"timeout: {_exc_text(exc)}"
    if isinstance(exc, OSError):
        return FailureReason.OTHER, f"network error: {_exc_text(exc)}"
    return FailureReason.OTHER, f"{type(exc).__name__}: {_exc_text(exc)}"
