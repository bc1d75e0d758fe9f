"""HTTP/2 for the HTTP prober: one request on one fresh TLS connection.

Used only when a target sets `http2: true` and the server picks `h2` in the
TLS handshake (ALPN), as browsers negotiate it; otherwise the request goes out
as HTTP/1.1 on the same connection. The framing is the `h2` library's (a
sans-IO state machine, the optional `http2` extra), imported on the first
HTTP/2 probe. The transport, phases, proxy tunnel, TLS facts and assertions
stay the HTTP prober's: `H2Protocol` exposes what `_HttpProtocol` does
(status, headers, kept body chunks, `done`, `error`), so `http.py` judges the
answer the same way whatever the version.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from slamon.probers._response import ResponseReader
from slamon.probers.base import FailureReason
from slamon.probers.checks import show

if TYPE_CHECKING:
    from h2.connection import H2Connection

#: hop-by-hop fields HTTP/2 forbids (RFC 9113 8.2.2); the request never carries them
_CONNECTION_FIELDS = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                b"transfer-encoding", b"upgrade", b"te"})
_STREAM = 1
#: the largest frame slamon accepts: h2's default SETTINGS_MAX_FRAME_SIZE, which it
#: announces, so a larger frame is the server's protocol error
_MAX_FRAME = 16_384


def h2_request(raw: bytes, https: bool) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The HTTP/1.1 request the prober prepared, as HTTP/2 header fields and body.

    One prepared request per hop serves both versions: the fields are translated
    here, only for a connection that negotiated h2 (Host becomes :authority, the
    connection-specific fields are dropped, names are lower-cased)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, _version = lines[0].split(b" ", 2)
    authority = b""
    fields: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, _, value = line.partition(b": ")
        low = name.lower()
        if low == b"host":
            authority = value
        elif low not in _CONNECTION_FIELDS:
            fields.append((low, value))
    pseudo = [(b":method", method), (b":scheme", b"https" if https else b"http"),
              (b":authority", authority), (b":path", target)]
    return pseudo + fields, body


class H2Protocol(ResponseReader):
    """Sends one request on stream 1 and reads its response to the end (flow control is
    acknowledged as the body arrives); the outcome contract is ResponseReader's."""

    def _start(self) -> None:
        self.conn: H2Connection | None = None
        self._pending = b""  # request body not yet sent (flow control)
        self._inbox = bytearray()  # received bytes not yet a whole frame
        self._first = True  # the server's first frame is still to come

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def send(self, raw: bytes, https: bool) -> None:
        """Open the connection (preface, SETTINGS) and send the request."""
        from h2.config import H2Configuration
        from h2.connection import H2Connection

        fields, body = h2_request(raw, https)
        conn = self.conn = H2Connection(H2Configuration(client_side=True,
                                                        header_encoding=None))
        conn.initiate_connection()
        conn.send_headers(_STREAM, fields, end_stream=not body)
        self._pending = body
        self._pump()
        self._flush()

    def _pump(self) -> None:
        """Send as much of the request body as the peer's windows allow.

        A server may answer before it has read the body and close the stream (RFC 9113
        8.1; nginx does on a `return`). h2 reports events after taking a whole read, so
        a window update can be handled when the stream is already closed: the rest of
        the body is then dropped, and the answer's events decide the probe."""
        from h2.exceptions import StreamClosedError

        conn = self.conn
        if conn is None or not self._pending:
            return
        try:
            while self._pending:
                room = min(conn.local_flow_control_window(_STREAM),
                           conn.max_outbound_frame_size)
                if room <= 0:
                    return
                chunk, self._pending = self._pending[:room], self._pending[room:]
                conn.send_data(_STREAM, chunk, end_stream=not self._pending)
        except StreamClosedError:
            self._pending = b""

    def _flush(self) -> None:
        conn, transport = self.conn, self.transport
        if conn is not None and transport is not None:
            out = conn.data_to_send()
            if out:
                transport.write(out)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.conn is None or self.done.done():
            return
        buf = self._inbox
        buf += data
        frames: list[bytes] = []
        pos, size = 0, len(buf)
        # frames are split here, not only in h2: the first must be SETTINGS (RFC 9113
        # 3.4), an oversized one fails at once instead of being buffered, and GOAWAY is
        # judged here because h2 closes the whole connection on any GOAWAY, even a
        # graceful one that still covers our stream (python-hyper/h2#1181)
        while size - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            kind = buf[pos + 3]
            if self._first:
                self._first = False
                if kind != 0x4 or buf[pos + 5:pos + 9] != b"\0\0\0\0":
                    self.fail(FailureReason.OTHER, f"malformed HTTP/2 response: the server's "
                                                    f"first bytes are not a SETTINGS frame: "
                                                    f"{show(bytes(buf[:24]).decode('latin-1'))}")
                    return
            if length > _MAX_FRAME:
                self.fail(FailureReason.OTHER, f"malformed HTTP/2 response: a frame of "
                                                f"{length} bytes (at most {_MAX_FRAME})")
                return
            end = pos + 9 + length
            if end > size:
                break
            if kind == 0x7:
                if not self._receive(b"".join(frames)):
                    return
                frames = []
                self._goaway(bytes(buf[pos + 9:end]))
                if self.done.done():
                    return
            else:
                frames.append(bytes(buf[pos:end]))
            pos = end
        del buf[:pos]
        if self._receive(b"".join(frames)):
            self._flush()

    def _receive(self, data: bytes) -> bool:
        """Feed whole frames to h2 and act on its events; False once the probe is decided."""
        conn = self.conn
        if not data or conn is None:
            return not self.done.done()
        from h2.exceptions import ProtocolError

        try:
            events = conn.receive_data(data)
        except ProtocolError as exc:
            self.fail(FailureReason.OTHER, f"malformed HTTP/2 response: {exc}")
            return False
        for event in events:
            self._event(event)
            if self.done.done():
                return False
        return True

    def _goaway(self, payload: bytes) -> None:
        last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        code = int.from_bytes(payload[4:8], "big")
        # a graceful GOAWAY (NO_ERROR) that covers our stream lets it finish
        if code or last < _STREAM:
            self.fail(FailureReason.RESET, f"server closed the HTTP/2 connection "
                                            f"(GOAWAY {_code(code)})")

    def _event(self, event: Any) -> None:
        from h2 import events as ev

        if isinstance(event, ev.ResponseReceived):
            self._headers(event.headers)
        elif isinstance(event, ev.DataReceived):
            assert self.conn is not None  # events come from conn
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self._body(event.data)
        elif isinstance(event, ev.StreamEnded):
            self.finish()
        elif isinstance(event, ev.StreamReset):
            self.fail(FailureReason.RESET, f"server reset the HTTP/2 stream "
                                            f"({_code(event.error_code)})")
        elif isinstance(event, ev.WindowUpdated):
            self._pump()

    def _headers(self, fields: list[tuple[bytes, bytes]]) -> None:
        self.first_byte = time.perf_counter()
        length = -1
        for name, value in fields:
            if name == b":status":
                self.status = int(value)
            elif name.startswith(b":"):
                continue
            else:
                self.headers.append((name, value))
                if name == b"content-length":
                    length = int(value)  # h2 validated it against the body
                elif name == b"content-encoding":
                    self.content_encoding = value.strip().lower()
                elif name == b"location":
                    self.location = value
        if self.head or self.status in self.stop_at:
            self.finish()
        else:
            self.length_too_large(length)

    def _body(self, body: bytes) -> None:
        if not self.keep(body):
            self.body_too_large()

    def eof_received(self) -> bool | None:
        self._eof(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof(exc)

    def release(self) -> None:
        """Drop the connection state and transport (see `_HttpProtocol.release`)."""
        self.conn = None
        self.transport = None

    def version(self) -> str:
        return "2.0"

    def _eof(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.closed_early(exc)


def _code(code: int) -> str:
    """An HTTP/2 error code by name (RFC 9113 7), else its number."""
    from h2.errors import ErrorCodes

    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"error code {code}"


class Pending(asyncio.Protocol):
    """Holds what arrives between the TLS handshake and the choice of protocol.

    The server may send its HTTP/2 SETTINGS right after its handshake messages,
    before the prober has read the negotiated ALPN; this keeps those bytes (and
    an EOF) for the protocol chosen, instead of feeding them to the wrong parser.
    """

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = False
        self.lost: tuple[Exception | None] | None = None

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = (exc,)

    def hand_over(self, transport: asyncio.Transport, proto: asyncio.Protocol) -> None:
        """Make `proto` the transport's protocol; `replay` then gives it what arrived
        meanwhile (after the request is sent: HTTP/2 needs its connection state)."""
        transport.set_protocol(proto)
        proto.connection_made(transport)

    def replay(self, proto: asyncio.Protocol) -> None:
        for data in self.data:
            proto.data_received(data)
        self.data.clear()
        if self.eof:
            proto.eof_received()
        if self.lost is not None:
            proto.connection_lost(self.lost[0])
