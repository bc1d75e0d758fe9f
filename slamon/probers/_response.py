"""What the HTTP/1.1 and HTTP/2 response readers share: the outcome, the kept body, the
size rule. A leaf of the HTTP prober: `http.py` and `_h2.py` both build on it.

The outcome contract: `done` is resolved exactly once and never carries an exception
(an unawaited one would be logged); a failure goes to `error`, handed over by
`raise_error`. The body is read to the end whatever its size; its first `limit` bytes
are kept for the assertions; `max_size` (max_body_size) fails a larger one.
"""

from __future__ import annotations

import asyncio
import time

from slamon.probers._net import ProbeError
from slamon.probers.base import FailureReason
from slamon.util.durations import format_size


class ResponseReader(asyncio.Protocol):
    __slots__ = (
        "body_bytes",
        "chunks",
        "content_encoding",
        "done",
        "end",
        "error",
        "first_byte",
        "head",
        "headers",
        "keep_body",
        "kept",
        "limit",
        "location",
        "max_size",
        "status",
        "stop_at",
        "transport",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        head: bool,
        limit: int,
        keep_body: bool,
        stop_at: frozenset[int],
        max_size: int | None = None,
    ) -> None:
        self.done: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.BaseTransport | None = None
        #: a HEAD request: the answer has no body
        self.head = head
        #: body bytes kept for the assertions; the rest is read and dropped
        self.limit = limit
        #: max_body_size: a body larger than this fails the probe (None: any size)
        self.max_size = max_size
        self.kept = 0
        self.keep_body = keep_body
        #: statuses answered without reading a body (redirects being followed)
        self.stop_at = stop_at
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.body_bytes = 0
        self.first_byte = 0.0
        self.end = 0.0
        self.content_encoding = b""
        self.location: bytes | None = None
        self.error: ProbeError | None = None
        self._start()

    def _start(self) -> None:
        """A reader's own state, set at the end of __init__ (same arguments for all)."""

    def keep(self, body: bytes) -> bool:
        """Count a piece of the body and keep what the assertions see; False when the
        body has grown past max_body_size (the caller fails the probe)."""
        n = self.body_bytes + len(body)
        self.body_bytes = n
        if self.max_size is not None and n > self.max_size:
            return False
        # a browser shows a page larger than body_limit: the assertions see its first
        # body_limit bytes and the rest is read to the end and dropped
        if self.keep_body and self.kept < self.limit:
            if self.kept + len(body) > self.limit:
                body = body[: self.limit - self.kept]
            self.kept += len(body)
            self.chunks.append(body)
        return True

    def length_too_large(self, length: int) -> bool:
        """Fail at once on a declared Content-Length above max_body_size."""
        if self.max_size is not None and length > self.max_size:
            self.fail(FailureReason.TOO_LARGE, f"Content-Length {length} larger than "
                                               f"max_body_size {format_size(self.max_size)}")
            return True
        return False

    def body_too_large(self) -> None:
        self.fail(FailureReason.TOO_LARGE,
                  f"body larger than max_body_size {format_size(self.max_size or 0)}")

    def raise_error(self) -> None:
        """Raise the failure, if any, handing it over: kept here or in a local it
        would form an error -> traceback -> frame -> error cycle."""
        error, self.error = self.error, None
        if error is not None:
            try:
                raise error
            finally:
                del error

    def closed_early(self, exc: Exception | None) -> None:
        """The connection ended before the response did."""
        if isinstance(exc, OSError) and exc.strerror:
            self.fail(FailureReason.RESET, f"connection reset: {exc.strerror}")
        elif not self.first_byte:
            self.fail(FailureReason.RESET, "connection closed before response")
        else:
            self.fail(FailureReason.RESET, "connection closed before end of response")

    def finish(self) -> None:
        if not self.done.done():
            self.end = time.perf_counter()
            self.done.set_result(None)

    def fail(self, reason: FailureReason, detail: str) -> None:
        if not self.done.done():
            self.end = time.perf_counter()
            self.error = ProbeError(reason, detail)
            self.done.set_result(None)
            if self.transport is not None:
                self.transport.abort()  # type: ignore[attr-defined]
