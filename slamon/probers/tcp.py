"""TCP prober: connect, optional TLS, then a dialogue of expect / send / STARTTLS.

The banner/expect check is what makes a TCP probe measure the service rather
than an open port (an SMTP server answering `220`, not just a listener). The
dialogue (`_dialogue.py`) is blackbox_exporter's `query_response`, the plain
`send`/`expect` keys, or a mail protocol's STARTTLS dialogue; after STARTTLS
the handshake is timed as phase tls and the certificate is judged as with
`tls: true`. Phases: dns, connect, tls, and processing (the dialogue). Whether
an `expect` matched is judged by `checks.expect_failure`.
"""

from __future__ import annotations

import asyncio
import codecs
import re
import time
from dataclasses import dataclass

from slamon.config.targets import Target, TcpSpec
from slamon.probers._dialogue import Step, dialogue, expand
from slamon.probers._net import PhaseClock, ProbeError, classify, connect, resolve, timeout_detail
from slamon.probers._tls import peer_tls, ssl_context, start_tls, tls_failure
from slamon.probers.base import FailureReason, ProbeResult, TlsFacts
from slamon.probers.checks import cert_validity_failure, expect_failure, show
from slamon.util.redact import redact_text


class _Reader(asyncio.Protocol):
    """Keeps what the server sent since the last match (at most `limit` bytes) and
    wakes the step waiting for its pattern at a match, EOF or the limit."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self.text = ""
        #: bytes in `text` (since the last match) and received in all
        self.pending = 0
        self.received = 0
        # a multi-byte character may be split between reads
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pattern: re.Pattern[str] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.match: re.Match[str] | None = None
        self.eof = False
        self.error: OSError | None = None

    def wait(self, pattern: re.Pattern[str]) -> asyncio.Future[None]:
        """Done when `pattern` matches the text since the last match (then `match` is
        set), or when EOF or `limit` says it never will (`match` is None)."""
        self._pattern = pattern
        self.match = None
        self._waiter = self.loop.create_future()
        self._check()
        return self._waiter

    def consume(self) -> str:
        """The text up to the match and the rest of its line, dropped from the buffer:
        blackbox matches line by line, so the next step starts on the next line."""
        assert self.match is not None
        end = self.match.end()
        if end and self.text[end - 1] != "\n":
            newline = self.text.find("\n", end)
            if newline >= 0:
                end = newline + 1
        reply, self.text = self.text[:end], self.text[end:]
        self.pending = len(self.text.encode())
        return reply

    def _check(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done() or self._pattern is None:
            return
        match = self._pattern.search(self.text)
        if match is not None:
            self.match = match
            waiter.set_result(None)
        elif self.eof or self.pending >= self.limit:
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        room = self.limit - self.pending
        if room <= 0:
            return
        chunk = data[:room]
        self.pending += len(chunk)
        self.received += len(chunk)
        self.text += self._decoder.decode(chunk)
        self._check()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._check()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if isinstance(exc, OSError):
            self.error = exc
        self._check()


@dataclass(slots=True)
class _Outcome:
    """What a probe learnt before it ended, for the result either way."""

    tls: TlsFacts | None = None
    cert_expiry: float | None = None
    received: int = 0


def _one_line(reply: str) -> str:
    """A reply for a detail: its lines joined, cut to a readable length."""
    return show(" | ".join(line.strip() for line in reply.splitlines() if line.strip()))


def _no_match(step: Step, proto: _Reader, read_limit: int) -> ProbeError:
    """Why `step.expect` never matched, as a ProbeError."""
    if proto.error is not None and proto.error.strerror:
        # the connection broke: a transport failure, not a wrong answer
        return ProbeError(FailureReason.RESET, f"connection reset: {proto.error.strerror}")
    if step.check is not None:  # a built-in dialogue: say which answer never came
        why = "connection closed" if proto.eof else f"read_limit {read_limit} bytes reached"
        detail = f"{step.what}: no complete answer ({why} after {proto.received} bytes)"
    else:
        assert step.expect is not None
        failed = expect_failure(step.expect, False, proto.eof, proto.received, read_limit)
        assert failed is not None  # never matched is always a failure
        detail = failed[1] if not step.starttls else f"STARTTLS not accepted: {failed[1]}"
    return ProbeError(step.reason, detail)


async def _upgrade(
    loop: asyncio.AbstractEventLoop,
    spec: TcpSpec,
    transport: asyncio.Transport,
    proto: _Reader,
    clock: PhaseClock,
    out: _Outcome,
    after_starttls: bool,
) -> asyncio.Transport:
    """The TLS handshake (phase tls), then the chain's facts and `min_cert_validity`."""
    ctx = ssl_context(spec.tls_verify, spec.ca_file, spec.cert_file, spec.key_file)
    try:
        tls = await start_tls(loop, transport, proto, ctx, spec.server_name or spec.host, clock)
    except ProbeError as exc:
        if after_starttls:
            raise ProbeError(exc.reason, f"after STARTTLS: {exc.detail}") from None
        raise
    out.tls = peer_tls(tls)
    out.cert_expiry = out.tls.earliest_expiry if out.tls is not None else None
    failed = cert_validity_failure(out.cert_expiry, spec.min_cert_validity, time.time())
    if failed is not None:
        raise ProbeError(*failed)
    return tls


async def _run(
    target: Target, clock: PhaseClock, out: _Outcome, transports: list[asyncio.BaseTransport]
) -> None:
    spec = target.tcp
    if spec is None:
        raise ProbeError(FailureReason.OTHER, "target has no tcp section")
    loop = asyncio.get_running_loop()
    talk = dialogue(spec)
    addrs = await resolve(loop, spec.host, spec.port, spec.ip_family, clock)

    def factory() -> _Reader:
        return _Reader(loop, spec.read_limit)

    transport, proto = await connect(loop, factory, addrs, spec.port, clock, transports.append)
    if spec.tls:
        transport = await _upgrade(loop, spec, transport, proto, clock, out, False)
        transports.append(transport)
    if not talk.steps:
        return
    clock.enter("processing")
    processing = True
    try:
        for step in talk.steps:
            send = step.send
            if step.expect is not None:
                await proto.wait(step.expect)
                if proto.match is None:
                    raise _no_match(step, proto, spec.read_limit)
                match = proto.match
                reply = proto.consume()
                if step.check is not None and step.check.search(reply) is None:
                    raise ProbeError(step.reason, f"{step.what}: {_one_line(reply)}")
                if send is not None and step.expand:
                    send = expand(send, match)
            if send:
                transport.write(send.encode())
            if step.starttls:
                clock.leave()
                processing = False
                transport = await _upgrade(loop, spec, transport, proto, clock, out, True)
                transports.append(transport)
                clock.enter("processing")
                processing = True
        if talk.goodbye is not None:
            transport.write(talk.goodbye.encode())
    finally:
        out.received = proto.received
        if processing:
            clock.leave()


async def probe(target: Target, timeout: float) -> ProbeResult:
    """Probe `target.tcp`; never raises, never takes longer than `timeout`."""
    start = time.perf_counter()
    clock = PhaseClock()
    transports: list[asyncio.BaseTransport] = []
    out = _Outcome()
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
            cert_expiry=out.cert_expiry,
            tls=out.tls,
            body_bytes=out.received,
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
        cert_expiry=out.cert_expiry,
        tls=out.tls,
        body_bytes=out.received,
    )
