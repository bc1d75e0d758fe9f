"""TCP prober: connect, optional TLS, optional send, then optional expect.

The banner/expect check is what makes a TCP probe measure the service rather
than an open port (an SMTP server answering `220`, not just a listener).
Phases: dns, connect, tls, and processing (send -> expect matched). Whether
`expect` matched is judged by `checks.expect_failure`.
"""

from __future__ import annotations

import asyncio
import re
import time

from slamon.config.targets import Target
from slamon.probers._net import PhaseClock, ProbeError, classify, connect, resolve, timeout_detail
from slamon.probers._tls import peer_cert_expiry, ssl_context, start_tls, tls_failure
from slamon.probers.base import FailureReason, ProbeResult
from slamon.probers.checks import cert_validity_failure, expect_failure, pattern
from slamon.util.redact import redact_text


class _ExpectProtocol(asyncio.Protocol):
    """Buffers what the server says until `pattern` matches, EOF or `limit` bytes."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, pattern: re.Pattern[str] | None, limit: int
    ) -> None:
        self.done: asyncio.Future[None] = loop.create_future()
        self.pattern = pattern
        self.limit = limit
        self.buf = bytearray()
        self.matched = False
        self.eof = False
        self.error: OSError | None = None

    def data_received(self, data: bytes) -> None:
        if self.done.done() or self.pattern is None:
            return
        room = self.limit - len(self.buf)
        self.buf += data[:room]
        if self.pattern.search(self.buf.decode("utf-8", "replace")):
            self.matched = True
            self.done.set_result(None)
        elif len(self.buf) >= self.limit:
            self.done.set_result(None)

    def eof_received(self) -> bool | None:
        self.eof = True
        if not self.done.done():
            self.done.set_result(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if isinstance(exc, OSError):
            self.error = exc
        if not self.done.done():
            self.done.set_result(None)


async def _run(
    target: Target,
    clock: PhaseClock,
    out: dict[str, float | None],
    transports: list[asyncio.BaseTransport],
) -> None:
    spec = target.tcp
    if spec is None:
        raise ProbeError(FailureReason.OTHER, "target has no tcp section")
    loop = asyncio.get_running_loop()
    expect_re = pattern(spec.expect) if spec.expect is not None else None
    addrs = await resolve(loop, spec.host, spec.port, spec.ip_family, clock)

    def factory() -> _ExpectProtocol:
        return _ExpectProtocol(loop, expect_re, spec.read_limit)

    transport, proto = await connect(loop, factory, addrs, spec.port, clock, transports.append)
    if spec.tls:
        ctx = ssl_context(spec.tls_verify, spec.ca_file)
        transport = await start_tls(
            loop, transport, proto, ctx, spec.server_name or spec.host, clock
        )
        transports.append(transport)
        out["cert_expiry"] = peer_cert_expiry(transport)
        if spec.min_cert_validity is not None:
            failed = cert_validity_failure(out["cert_expiry"], spec.min_cert_validity, time.time())
            if failed is not None:
                raise ProbeError(*failed)
    if spec.send is None and expect_re is None:
        return
    clock.enter("processing")
    if spec.send is not None:
        transport.write(spec.send.encode())
    if expect_re is not None:
        await proto.done
        clock.leave()
        out["bytes"] = len(proto.buf)
        if not proto.matched and proto.error is not None and proto.error.strerror:
            # the connection broke: a transport failure, not a wrong answer
            raise ProbeError(FailureReason.RESET, f"connection reset: {proto.error.strerror}")
        failed = expect_failure(
            expect_re, proto.matched, proto.eof, len(proto.buf), spec.read_limit
        )
        if failed is not None:
            raise ProbeError(*failed)
        return
    clock.leave()


async def probe(target: Target, timeout: float) -> ProbeResult:
    """Probe `target.tcp`; never raises, never takes longer than `timeout`."""
    start = time.perf_counter()
    clock = PhaseClock()
    transports: list[asyncio.BaseTransport] = []
    out: dict[str, float | None] = {"cert_expiry": None, "bytes": 0}
    deadline: asyncio.Timeout | None = None
    reason: FailureReason
    ok = False
    try:
        async with asyncio.timeout(timeout) as deadline:
            await _run(target, clock, out, transports)
        # close, not abort: a `send` without `expect` must still reach the server
        transports[-1].close()
        ok = True
        return ProbeResult(
            ok=True,
            duration=time.perf_counter() - start,
            phases=clock.phases,
            cert_expiry=out["cert_expiry"],
            body_bytes=int(out["bytes"] or 0),
        )
    except ProbeError as exc:
        reason, detail = exc.reason, redact_text(exc.detail)
    except TimeoutError as exc:
        if deadline is not None and deadline.expired():
            reason, detail = FailureReason.TIMEOUT, timeout_detail(timeout, clock.current)
        else:
            reason, detail = classify(exc)
    except Exception as exc:
        reason, detail = tls_failure(exc) or classify(exc)
    finally:
        if not ok:
            for tr in transports:
                tr.abort()  # type: ignore[attr-defined]
    return ProbeResult.failure(
        reason,
        time.perf_counter() - start,
        detail,
        phases=clock.phases,
        cert_expiry=out["cert_expiry"],
        body_bytes=int(out["bytes"] or 0),
    )
