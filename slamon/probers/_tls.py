"""TLS facts shared by the HTTP and TCP probers.

The SSL context for a spec (cached), the handshake as its own timed phase, the
facts of the peer's certificate chain (earliest expiry, the leaf's identity, the
TLS version), and how TLS errors are classified and worded. Whether that expiry
is acceptable is an assertion: see `checks.cert_validity_failure`.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import os
import ssl
from collections.abc import Sequence

from slamon.probers._net import PhaseClock, ProbeError, exc_text
from slamon.probers.base import FailureReason, TlsFacts
from slamon.util.redact import redact_text

_CACHE_MAX = 10_000


# ---------------------------------------------------------------- contexts


_ssl_cache: dict[tuple[object, ...], ssl.SSLContext] = {}


#: ALPN offers: HTTP/1.1 only, or HTTP/2 first with HTTP/1.1 as the fallback
#: (the server chooses, as with a browser)
HTTP1_ALPN = ("http/1.1",)
H2_ALPN = ("h2", "http/1.1")


def ssl_context(
    verify: bool, ca_file: str | None, cert_file: str | None = None,
    key_file: str | None = None, protocols: tuple[str, ...] = HTTP1_ALPN,
) -> ssl.SSLContext:
    """One context per (verify, ca_file, client certificate, ALPN): building one costs
    ~1 ms of CPU (CA store load). With a client certificate the files' modification
    times are part of the key, so a renewed certificate is used from the next probe on."""
    key: tuple[object, ...] = (verify, ca_file, protocols)
    if cert_file is not None:
        try:
            stamps = tuple(os.stat(f).st_mtime_ns for f in (cert_file, key_file) if f)
        except OSError as exc:
            raise ProbeError(FailureReason.TLS, f"cannot read client certificate: "
                                                f"{exc.strerror}: {exc.filename}") from None
        key = (verify, ca_file, protocols, cert_file, key_file, stamps)
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
    if cert_file is not None:
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            # the message names the file, never its content (the key is a secret)
            raise ProbeError(FailureReason.TLS, f"cannot load client certificate {cert_file}"
                                                f": {type(exc).__name__}") from None
    ctx.set_alpn_protocols(list(protocols))
    _ssl_cache[key] = ctx
    return ctx


# ---------------------------------------------------------------- handshake


def alpn(transport: asyncio.BaseTransport) -> str | None:
    """The application protocol the server chose in the handshake, or None."""
    obj = transport.get_extra_info("ssl_object")
    return obj.selected_alpn_protocol() if obj is not None else None


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


# ---------------------------------------------------------------- chain


#: `_ssl.ENCODING_DER`: the private `get_verified_chain` of Python < 3.13 returns
#: `_ssl.Certificate` objects, which give their DER form for this constant
_ENCODING_DER = 2


def _as_der(certs: Sequence[object] | None) -> tuple[bytes, ...]:
    """DER bytes of a chain as either API returns it (bytes or `_ssl.Certificate`)."""
    out: list[bytes] = []
    for cert in certs or ():
        if isinstance(cert, bytes):
            out.append(cert)
        else:
            out.append(cert.public_bytes(_ENCODING_DER))  # type: ignore[attr-defined]
    return tuple(out)


def _chain(obj: object, name: str) -> tuple[bytes, ...]:
    """`get_verified_chain` / `get_unverified_chain` of an SSL object, as DER.

    Public on `ssl.SSLObject` from Python 3.13. On 3.11 and 3.12 the same method
    exists only on the `_ssl._SSLSocket` the SSLObject wraps (`_sslobj`): asyncio's
    and uvloop's TLS transports expose nothing else that sees the intermediates,
    and the leaf alone misses the certificate that breaks first when an
    intermediate expires. Empty when neither exists (or no chain was verified).
    """
    method = getattr(obj, name, None)
    if method is None:
        method = getattr(getattr(obj, "_sslobj", None), name, None)
    if method is None:
        return ()
    try:
        return _as_der(method())
    except (ssl.SSLError, ValueError, AttributeError, TypeError):
        return ()


_TLS_VERSIONS = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2",
                 "TLSv1.3": "TLS 1.3"}

#: one TlsFacts per distinct (version, chains): probes of the same server share
#: it, so the collector formats its label text once (it keeps it by identity)
_facts_cache: dict[tuple[str, tuple[bytes, ...], tuple[bytes, ...]], TlsFacts] = {}


def chain_facts(
    version: str | None, verified: tuple[bytes, ...], presented: tuple[bytes, ...]
) -> TlsFacts | None:
    """TlsFacts from the DER chains; None when there is no certificate at all.

    The earliest expiry is over the verified chain, as what breaks first when an
    intermediate expires; without verification (`tls_verify: false`) over what
    the server presented. The leaf is the first certificate of either.
    """
    key = (version or "", verified, presented)
    cached = _facts_cache.get(key)
    if cached is not None:
        return cached
    certs = verified or presented
    if not certs:
        return None
    expiries = [e for e in map(_not_after, certs) if e is not None]
    earliest = min(expiries) if expiries else None
    ident = _identity(certs[0])
    facts = TlsFacts(
        version=_TLS_VERSIONS.get(version or "", "unknown"),
        earliest_expiry=earliest,
        # one verified chain (OpenSSL builds one), so its end is its earliest expiry
        last_chain_expiry=earliest if verified else None,
        fingerprint_sha256=hashlib.sha256(certs[0]).hexdigest(),
        **ident,
    )
    if len(_facts_cache) > _CACHE_MAX:
        _facts_cache.clear()
    _facts_cache[key] = facts
    return facts


def peer_tls(transport: asyncio.BaseTransport) -> TlsFacts | None:
    """The peer's chain facts, or None (no TLS, no certificate)."""
    obj = transport.get_extra_info("ssl_object")
    if obj is None:
        return None
    # without verification OpenSSL still reports the chain it built, unchecked
    verifying = obj.context.verify_mode != ssl.CERT_NONE
    verified = _chain(obj, "get_verified_chain") if verifying else ()
    presented = () if verified else _chain(obj, "get_unverified_chain")
    if not verified and not presented:
        # neither API (another TLS implementation): the leaf is all there is
        leaf = obj.getpeercert(binary_form=True)
        presented = (leaf,) if leaf else ()
    return chain_facts(obj.version(), verified, presented)


def _not_after(der: bytes) -> float | None:
    try:
        return cert_not_after(der)
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


# ---------------------------------------------------------------- certificate identity

#: attribute types 2.5.4.n in the order Go's pkix.Name.String() prints them
#: (blackbox_exporter's subject and issuer labels): most specific first
_NAME_ORDER = ((5, "SERIALNUMBER"), (3, "CN"), (11, "OU"), (10, "O"), (17, "POSTALCODE"),
               (9, "STREET"), (7, "L"), (8, "ST"), (6, "C"))
_SAN_OID = bytes.fromhex("551d11")  # 2.5.29.17 subjectAltName


def _der_text(tag: int, raw: bytes) -> str:
    if tag == 0x1E:  # BMPString
        return raw.decode("utf-16-be", "replace")
    if tag == 0x1C:  # UniversalString
        return raw.decode("utf-32-be", "replace")
    if tag == 0x14:  # TeletexString: latin-1 in practice
        return raw.decode("latin-1")
    return raw.decode("utf-8", "replace")


def _oid_text(raw: bytes) -> str:
    parts = [raw[0] // 40, raw[0] % 40] if raw else []
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _escape_rdn(value: str) -> str:
    """As Go's RDNSequence.String() escapes a value."""
    out: list[str] = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        if (ch in ',+"\\<>;' or (ch == " " and i in (0, last)) or (ch == "#" and i == 0)):
            out.append("\\")
        out.append(ch)
    return "".join(out)


def _name_text(der: bytes, start: int, end: int) -> str:
    """A DER Name as Go prints it: "CN=leaf,O=Example,C=DE"."""
    known: dict[int, list[str]] = {}
    other: list[str] = []
    pos = start
    while pos < end:  # RDNs: SET OF AttributeTypeAndValue
        _, set_pos, set_end = _der_item(der, pos)
        pos = set_end
        while set_pos < set_end:
            _, atv, atv_end = _der_item(der, set_pos)
            set_pos = atv_end
            _, oid_start, oid_end = _der_item(der, atv)
            oid = der[oid_start:oid_end]
            tag, v_start, v_end = _der_item(der, oid_end)
            if len(oid) == 3 and oid[:2] == b"\x55\x04":
                known.setdefault(oid[2], []).append(_der_text(tag, der[v_start:v_end]))
            else:
                other.append(f"{_oid_text(oid)}=#{der[oid_end:v_end].hex()}")
    rdns = ["+".join(f"{short}={_escape_rdn(v)}" for v in known[n])
            for n, short in _NAME_ORDER if n in known]
    for n in sorted(set(known) - {n for n, _ in _NAME_ORDER}):
        other.extend(f"2.5.4.{n}=" + _escape_rdn(v) for v in known[n])
    return ",".join(rdns + other)


def _san_dns(der: bytes, start: int, end: int) -> str:
    """dNSName entries of the extensions [3], comma-separated (as blackbox)."""
    _, pos, end = _der_item(der, start)  # SEQUENCE OF Extension
    while pos < end:
        _, ext, ext_end = _der_item(der, pos)
        pos = ext_end
        _, oid_start, oid_end = _der_item(der, ext)
        if der[oid_start:oid_end] != _SAN_OID:
            continue
        tag, v_start, v_end = _der_item(der, oid_end)
        if tag == 0x01:  # critical
            tag, v_start, v_end = _der_item(der, v_end)
        _, gn, gn_end = _der_item(der, v_start)  # GeneralNames
        names: list[str] = []
        while gn < gn_end:
            tag, n_start, n_end = _der_item(der, gn)
            gn = n_end
            if tag == 0x82:  # [2] dNSName
                names.append(der[n_start:n_end].decode("ascii", "replace"))
        return ",".join(names)
    return ""


def _identity(der: bytes) -> dict[str, str]:
    """subject, issuer, subjectalternative, serialnumber of a DER certificate, for
    `probe_ssl_last_chain_info`; parsed by hand like `cert_not_after`. Empty
    strings where the certificate cannot be parsed."""
    try:
        _, start, _ = _der_item(der, 0)  # Certificate
        _, pos, tbs_end = _der_item(der, start)  # tbsCertificate
        tag, _, end = _der_item(der, pos)
        if tag == 0xA0:  # [0] version
            pos = end
        _, s_start, s_end = _der_item(der, pos)  # serialNumber
        serial = int.from_bytes(der[s_start:s_end], "big", signed=True)
        _, _, pos = _der_item(der, s_end)  # signature
        _, i_start, i_end = _der_item(der, pos)  # issuer
        _, _, pos = _der_item(der, i_end)  # validity
        _, n_start, n_end = _der_item(der, pos)  # subject
        _, _, pos = _der_item(der, n_end)  # subjectPublicKeyInfo
        sans = ""
        while pos < tbs_end:
            tag, x_start, x_end = _der_item(der, pos)
            if tag == 0xA3:  # [3] extensions
                sans = _san_dns(der, x_start, x_end)
            pos = x_end
        return {
            "subject": _name_text(der, n_start, n_end),
            "issuer": _name_text(der, i_start, i_end),
            "subjectalternative": sans,
            "serialnumber": format(serial, "x"),
        }
    except (IndexError, ValueError, UnicodeDecodeError):
        return {}


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
