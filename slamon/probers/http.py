"""HTTP(S) prober: HTTP/1.1 on a bare asyncio.Protocol with the llhttp parser.

Why not aiohttp's client: at 1,000 fresh-connection probes per second on two
cores its per-request overhead (~1.2 CPU-ms) is too much; a Protocol feeding
`httptools` costs about half. The probe is deliberately simple HTTP/1.1: one
fresh connection per hop, `Connection: close`, phases timed as
blackbox_exporter does (dns, connect, tls, processing, transfer; summed over
redirect hops). This module is the transport; what a good answer is
(status, headers, body, JSON, response time) is decided in `checks`.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urljoin, urlsplit

import httptools

from slamon import __version__
from slamon.config.targets import HttpSpec, Target
from slamon.probers._h2 import H2Protocol, Pending
from slamon.probers._net import PhaseClock, ProbeError, classify, connect, resolve, timeout_detail
from slamon.probers._response import ResponseReader
from slamon.probers._tls import (
    H2_ALPN,
    HTTP1_ALPN,
    alpn,
    peer_tls,
    ssl_context,
    start_tls,
    tls_failure,
)
from slamon.probers.base import FailureReason, PerSpec, ProbeResult, TlsFacts
from slamon.probers.checks import (
    Failure,
    HeaderRule,
    body_failure,
    cert_validity_failure,
    header_failure,
    header_rules,
    json_failure,
    patterns,
    response_time_failure,
    show,
    status_failure,
    valid_codes,
    version_failure,
)
from slamon.util.redact import redact_text, redact_url

USER_AGENT = f"slamon/{__version__}"
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_NO_BODY_CODES = frozenset({204, 304})
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"
_CACHE_MAX = 50_000


# ---------------------------------------------------------------- preparation


@dataclass(slots=True)
class _Hop:
    """One request: where to connect and the exact bytes to send."""

    url: str
    https: bool
    host: str
    port: int
    method: str
    request: bytes


@dataclass(frozen=True, slots=True)
class _Proxy:
    """An HTTP proxy: where to connect, and the Proxy-Authorization line (or b"")."""

    host: str
    port: int
    auth: bytes


def _make_proxy(url: str) -> _Proxy:
    parts = urlsplit(url)
    auth = b""
    if parts.username is not None:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = b"Proxy-Authorization: Basic " + base64.b64encode(cred.encode()) + b"\r\n"
    assert parts.hostname is not None and parts.port is not None  # HttpSpec checked both
    return _Proxy(parts.hostname, parts.port, auth)


def _authority(host: str, port: int) -> bytes:
    return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode()


def _proxy_form(hop: _Hop, proxy: _Proxy) -> bytes:
    """The request for a proxy: the absolute URL on the request line, its credentials."""
    line, _, rest = hop.request.partition(b"\r\n")
    method, target, version = line.split(b" ", 2)
    origin = _authority(hop.host, hop.port)
    return b"%s http://%s%s %s\r\n%s%s" % (method, origin, target, version, proxy.auth, rest)


class _Tunnel(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT: the head only (a 2xx to CONNECT has no body)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[None] = loop.create_future()
        self.head = b""

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.head += data
        if b"\r\n\r\n" in self.head or len(self.head) > 16384:
            self.done.set_result(None)

    def eof_received(self) -> bool | None:
        if not self.done.done():
            self.done.set_result(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _tunnel_failure(head: bytes) -> ProbeError | None:
    """None if the proxy opened the tunnel (2xx), else why not."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1").strip()
    if not line:
        return ProbeError(FailureReason.PROXY, "proxy closed the connection before answering "
                                               "CONNECT")
    parts = line.split(" ", 2)
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        if 200 <= int(parts[1]) < 300:
            return None
        return ProbeError(FailureReason.PROXY, f"proxy answered CONNECT with {show(line)}")
    return ProbeError(FailureReason.PROXY, f"proxy answered CONNECT with no HTTP status: "
                                           f"{show(line)}")


@dataclass(slots=True)
class _Prepared:
    """Everything derivable from an HttpSpec once, reused by every probe of it."""

    spec: HttpSpec
    first: _Hop
    valid: frozenset[int]
    valid_text: str
    # tuples, not lists: an empty tuple is a shared untracked constant, so 10,000
    # prepared specs add no containers for the cyclic GC to walk (docs/benchmarks.md)
    headers: tuple[HeaderRule, ...]
    matches: tuple[re.Pattern[str], ...]
    not_matches: tuple[re.Pattern[str], ...]
    keep_body: bool
    stop_at: frozenset[int]
    proxy: _Proxy | None = None


def _make_hop(
    spec: HttpSpec, url: str, method: str, body: bytes | None, same_origin: bool = True
) -> _Hop:
    parts = urlsplit(url)
    https = parts.scheme == "https"
    if parts.scheme not in ("http", "https"):
        raise ProbeError(FailureReason.REDIRECTS, f"unsupported scheme in {redact_url(url)}")
    host = parts.hostname
    if not host:
        raise ProbeError(FailureReason.OTHER, f"URL has no host: {redact_url(url)}")
    try:
        port = parts.port or (443 if https else 80)
    except ValueError:
        raise ProbeError(FailureReason.OTHER, f"invalid port in {redact_url(url)}") from None
    target = quote(parts.path or "/", safe=_SAFE_PATH)
    if parts.query:
        target += "?" + quote(parts.query, safe=_SAFE_QUERY)
    host_hdr = f"[{host}]" if ":" in host else host
    if port != (443 if https else 80):
        host_hdr = f"{host_hdr}:{port}"
    user = {k.lower() for k in spec.headers}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in user:
        lines.append(f"Host: {host_hdr}")
    if "user-agent" not in user:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in user:
        lines.append("Accept: */*")
    if "accept-encoding" not in user:
        lines.append("Accept-Encoding: identity")
    if parts.username is not None and "authorization" not in user:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        lines.append("Authorization: Basic " + base64.b64encode(cred.encode()).decode())
    for name, value in spec.headers.items():
        low = name.lower()
        if low in ("connection", "content-length"):
            continue
        if not same_origin and low in ("authorization", "cookie"):
            continue
        lines.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    lines.append("Connection: close")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    if body:
        raw += body
    return _Hop(url, https, host, port, method, raw)


def _prepare(spec: HttpSpec) -> _Prepared:
    return _prepared.get(spec, _build_prepared)


def _build_prepared(spec: HttpSpec) -> _Prepared:
    body = spec.body.encode() if spec.body is not None else None
    valid, valid_text = valid_codes(tuple(spec.valid_status_codes))
    return _Prepared(
        spec=spec,
        first=_make_hop(spec, spec.url, spec.method, body),
        valid=valid,
        valid_text=valid_text,
        headers=header_rules(spec.header_matches),
        matches=patterns(spec.body_matches),
        not_matches=patterns(spec.body_not_matches),
        keep_body=bool(
            spec.body_contains or spec.body_matches or spec.body_not_matches or spec.json_equals
        ),
        stop_at=REDIRECT_CODES if spec.follow_redirects else frozenset(),
        proxy=_make_proxy(spec.proxy) if spec.proxy is not None else None,
    )


_prepared: PerSpec[HttpSpec, _Prepared] = PerSpec(_CACHE_MAX)


# ---------------------------------------------------------------- protocol


class _TooLarge(Exception):
    pass


class _HttpProtocol(ResponseReader):
    """Feeds the response into llhttp; resolves `done` once the outcome is known
    (the outcome contract is ResponseReader's)."""

    __slots__ = ("eof_body", "headers_done", "informational", "parser")

    def _start(self) -> None:
        # made on connect: a protocol whose connection is refused then holds no cycle
        self.parser: httptools.HttpResponseParser | None = None
        self.headers_done = False
        self.eof_body = False
        self.informational = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        parser = self.parser = httptools.HttpResponseParser(self)
        # parse as browsers and curl do where nothing is ambiguous: bare LF line endings
        # and obsolete header folding are accepted; duplicate or conflicting lengths and
        # bad chunk sizes stay errors (llhttp keeps those strict whatever these say)
        parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True,
                                        lenient_headers=True)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None or self.done.done():
            return
        if not self.first_byte:
            self.first_byte = time.perf_counter()
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.done.done():
                return
            if isinstance(exc.__context__, _TooLarge):
                self.body_too_large()
            else:
                self.fail(FailureReason.OTHER, f"malformed HTTP response: {exc}")
        except httptools.HttpParserUpgrade:
            self.finish()

    def eof_received(self) -> bool | None:
        self._eof(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof(exc)

    # llhttp callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.parser is not None  # called from feed_data only
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.informational = True
            self.headers = []
            return
        self.status = status
        self.headers_done = True
        length = -1
        chunked = False
        for name, value in self.headers:
            low = name.lower()
            if low == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
            elif low == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif low == b"content-encoding":
                self.content_encoding = value.strip().lower()
            elif low == b"location":
                self.location = value
        if self.head or status in self.stop_at:
            self.finish()
            return
        if self.length_too_large(length):
            return
        self.eof_body = length < 0 and not chunked and status not in _NO_BODY_CODES

    def on_body(self, body: bytes) -> None:
        if not self.keep(body):
            raise _TooLarge

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.finish()

    def release(self) -> None:
        """Drop the parser and transport: both point back here (the parser through
        bound callbacks), so without this every probe left a reference cycle that
        only the cyclic GC could free; at 10,000 targets that was ~17k objects/s
        and full collections of 60-160 ms (docs/benchmarks.md)."""
        self.parser = None
        self.transport = None

    def version(self) -> str | None:
        """The response's HTTP version, "1.1" or "1.0"."""
        return self.parser.get_http_version() if self.parser is not None else None

    def _eof(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if self.headers_done and self.eof_body:
            self.finish()
        else:
            self.closed_early(exc)


# ---------------------------------------------------------------- probe


@dataclass(slots=True)
class _State:
    """What a probe has learned so far, kept for failure results and cleanup."""

    clock: PhaseClock = field(default_factory=PhaseClock)
    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    proto: _HttpProtocol | H2Protocol | None = None
    status: int | None = None
    redirects: int = 0
    cert_expiry: float | None = None
    tls: TlsFacts | None = None
    http_version: str | None = None
    body_bytes: int = 0

    def result(
        self, duration: float, reason: FailureReason | None = None, detail: str = ""
    ) -> ProbeResult:
        """The probe's result with everything learned so far, passed or failed."""
        return ProbeResult(
            ok=reason is None,
            duration=duration,
            reason=reason,
            detail=detail,
            status_code=self.status,
            phases=self.clock.phases,
            cert_expiry=self.cert_expiry,
            tls=self.tls,
            http_version=self.http_version,
            redirects=self.redirects,
            body_bytes=self.body_bytes,
        )


async def _exchange(
    loop: asyncio.AbstractEventLoop, hop: _Hop, prep: _Prepared, st: _State
) -> _HttpProtocol | H2Protocol:
    spec = prep.spec
    clock = st.clock
    clock.current = "dns"
    head = hop.method == "HEAD"
    request = hop.request

    def factory() -> _HttpProtocol:
        return _HttpProtocol(loop, head, spec.body_limit, prep.keep_body, prep.stop_at,
                             spec.max_body_size)

    proxy = prep.proxy
    if proxy is None:
        addrs = await resolve(loop, hop.host, hop.port, spec.ip_family, clock)
        transport, proto = await connect(loop, factory, addrs, hop.port, clock,
                                         st.transports.append)
    else:
        addrs = await resolve(loop, proxy.host, proxy.port, spec.ip_family, clock)
        if hop.https:
            transport, tunnel = await connect(loop, lambda: _Tunnel(loop), addrs, proxy.port,
                                              clock, st.transports.append)
            # the CONNECT exchange counts as connecting: the tunnel is the TCP path
            clock.enter("connect")
            where = _authority(hop.host, hop.port)
            transport.write(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                            % (where, where, proxy.auth))
            await tunnel.done
            clock.leave()
            refused = _tunnel_failure(tunnel.head)
            if refused is not None:
                raise refused
            proto = factory()
            transport.set_protocol(proto)
            proto.connection_made(transport)
        else:
            transport, proto = await connect(loop, factory, addrs, proxy.port, clock,
                                             st.transports.append)
            request = _proxy_form(hop, proxy)
    st.proto = proto
    pending: Pending | None = None
    if hop.https:
        ctx = ssl_context(spec.tls_verify, spec.ca_file, spec.cert_file, spec.key_file,
                          H2_ALPN if spec.http2 else HTTP1_ALPN)
        if spec.http2:
            # which protocol reads the answer is known only after the handshake
            pending = Pending()
        transport = await start_tls(loop, transport, pending or proto, ctx, hop.host, clock)
        st.transports.append(transport)
        proto.transport = transport
        tls = st.tls = peer_tls(transport)
        st.cert_expiry = tls.earliest_expiry if tls is not None else None
        if spec.min_cert_validity is not None:
            failed = cert_validity_failure(st.cert_expiry, spec.min_cert_validity, time.time())
            if failed is not None:
                raise ProbeError(*failed)
    sent = clock.enter("processing")
    answer: _HttpProtocol | H2Protocol = proto
    if pending is not None and alpn(transport) == "h2":
        h2 = st.proto = answer = H2Protocol(loop, head, spec.body_limit, prep.keep_body,
                                            prep.stop_at, spec.max_body_size)
        pending.hand_over(transport, h2)
        h2.send(request, hop.https)
        pending.replay(h2)
    elif pending is not None:
        pending.hand_over(transport, proto)
        transport.write(request)
        pending.replay(proto)
    else:
        transport.write(request)
    await answer.done
    transport.abort()
    if answer.first_byte:
        clock.add("processing", answer.first_byte - sent)
        clock.add("transfer", answer.end - answer.first_byte)
    else:
        clock.add("processing", answer.end - sent)
    clock.current = "transfer"
    if answer.status:
        st.status = answer.status
        st.http_version = answer.version()
    st.body_bytes = answer.body_bytes
    answer.release()
    answer.raise_error()
    return answer


def _decode_body(proto: _HttpProtocol | H2Protocol, limit: int) -> bytes:
    body = b"".join(proto.chunks)
    enc = proto.content_encoding
    if not body or enc in (b"", b"identity"):
        return body
    if enc in (b"gzip", b"x-gzip"):
        candidates = [31]
    elif enc == b"deflate":
        candidates = [15, -15]
    else:
        return body
    for wbits in candidates:
        try:
            out = zlib.decompressobj(wbits).decompress(body, limit + 1)
        except zlib.error:
            continue
        # the assertions see the first `limit` decompressed bytes, as of a plain body
        return out[:limit]
    raise ProbeError(FailureReason.OTHER, f"cannot decode {enc.decode('latin-1')} body")


def _check(
    prep: _Prepared, proto: _HttpProtocol | H2Protocol, version: str | None, elapsed: float
) -> Failure | None:
    """The assertions, in the documented order; the first failure wins.

    The body is decoded only once status and headers passed, so a bad status is
    reported as such even when the body cannot be decoded.
    """
    spec = prep.spec
    failed = status_failure(proto.status, prep.valid, prep.valid_text)
    if failed is None and spec.valid_http_versions:
        failed = version_failure(version, spec.valid_http_versions)
    # the guards skip the call for rules a target does not set (most set none):
    # this runs for every probe
    if failed is None and prep.headers:
        failed = header_failure(proto.headers, prep.headers)
    if failed is None and prep.keep_body:
        text = _decode_body(proto, spec.body_limit).decode("utf-8", "replace")
        failed = body_failure(text, spec.body_contains, prep.matches, prep.not_matches)
        if failed is None and spec.json_equals:
            failed = json_failure(text, spec.json_equals)
    if failed is None and spec.max_response_time is not None:
        failed = response_time_failure(elapsed, spec.max_response_time)
    return failed


async def _run(prep: _Prepared, st: _State, start: float) -> ProbeResult:
    loop = asyncio.get_running_loop()
    spec = prep.spec
    hop = prep.first
    body = spec.body.encode() if spec.body is not None else None
    visited = {hop.url}
    origin = (hop.https, hop.host, hop.port)
    while True:
        proto = await _exchange(loop, hop, prep, st)
        if proto.status not in prep.stop_at or proto.location is None:
            break
        st.redirects += 1
        if st.redirects > spec.max_redirects:
            raise ProbeError(FailureReason.REDIRECTS, f"more than {spec.max_redirects} redirects")
        url = urljoin(hop.url, proto.location.decode("latin-1").strip())
        if url in visited:
            raise ProbeError(FailureReason.REDIRECTS, f"redirect loop at {redact_url(url)}")
        visited.add(url)
        method = hop.method
        if (proto.status == 303 and method != "HEAD") or (
            proto.status in (301, 302) and method == "POST"
        ):
            method, body = "GET", None
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        same = origin == (
            parts.scheme == "https",
            parts.hostname,
            port or (443 if parts.scheme == "https" else 80),
        )
        hop = _make_hop(spec, url, method, body, same_origin=same)
    elapsed = time.perf_counter() - start
    failed = _check(prep, proto, st.http_version, elapsed)
    if failed is None:
        return st.result(elapsed)
    return st.result(elapsed, failed[0], redact_text(failed[1]))


async def probe(target: Target, timeout: float) -> ProbeResult:
    """Probe `target.http`; never raises, never takes longer than `timeout`."""
    start = time.perf_counter()
    st = _State()
    reason: FailureReason
    deadline: asyncio.Timeout | None = None
    try:
        spec = target.http
        if spec is None:
            raise ProbeError(FailureReason.OTHER, "target has no http section")
        prep = _prepare(spec)
        async with asyncio.timeout(timeout) as deadline:
            return await _run(prep, st, start)
    except ProbeError as exc:
        reason, detail = exc.reason, redact_text(exc.detail)
    except TimeoutError as exc:
        if deadline is not None and deadline.expired():
            phase = st.clock.current
            if phase == "processing" and st.proto is not None and st.proto.first_byte:
                phase = "transfer"
            reason, detail = FailureReason.TIMEOUT, timeout_detail(timeout, phase)
        else:
            reason, detail = classify(exc)
    except Exception as exc:
        reason, detail = tls_failure(exc) or classify(exc)
    finally:
        for tr in st.transports:
            tr.abort()  # type: ignore[attr-defined]
        if st.proto is not None:
            st.proto.release()
    return st.result(time.perf_counter() - start, reason, detail)
