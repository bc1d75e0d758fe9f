"""TLS facts shared by the HTTP and TCP probers.

The SSL context for a spec (cached), the handshake as its own timed phase, the
peer certificate's expiry, and how TLS errors are classified and worded. Whether
that expiry is acceptable is an assertion: see `checks.cert_validity_failure`.
"""

from __future__ import annotations

import asyncio
import calendar
import ssl

from slamon.probers._net import PhaseClock, ProbeError, exc_text
from slamon.probers.base import FailureReason
from slamon.util.redact import redact_text

_CACHE_MAX = 10_000


# ---------------------------------------------------------------- contexts


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


# ---------------------------------------------------------------- handshake


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
        raise ProbeError(FailureReason.TLS, f"TLS handshake failed: {tls_text(exc)}") from None
    finally:
        clock.leave()
    if tls is None:  # pragma: no cover - only for a protocol without TLS
        raise ProbeError(FailureReason.TLS, "TLS not supported on this transport")
    return tls


# ---------------------------------------------------------------- certificate expiry


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
    """notAfter of the peer's certificate, or None (no TLS, no certificate, unparsable)."""
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


# ---------------------------------------------------------------- errors


def tls_text(exc: BaseException) -> str:
    """Short, redacted text of a TLS error; a failed verification says why
    ("certificate has expired"), not the generic "[SSL] certificate verify failed"."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return redact_text(exc.verify_message or str(exc))[:200]
    return exc_text(exc)


def tls_failure(exc: BaseException) -> tuple[FailureReason, str] | None:
    """Reason tls and a detail if `exc` is a TLS error, else None.

    Asked before `_net.classify`: `ssl.SSLError` is an `OSError`, which
    `classify` would call a network error.
    """
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return FailureReason.TLS, f"TLS error: {tls_text(exc)}"
    return None
