"""HTTP/2 servers on 127.0.0.1 for the HTTP/2 prober tests.

- `nginx_h2`: the Debian nginx over TLS with `http2` on its listener: an
  independent, widely deployed HTTP/2 implementation (ALPN, flow control,
  HPACK), so the prober is not only checked against the library it uses.
- `MisbehavingH2Server`: a server written with the `h2` library that answers,
  resets the stream, sends GOAWAY, sends garbage, stops mid-body or hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import trustme
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived, RequestReceived, StreamEnded
from hyperframe.frame import GoAwayFrame

from tests.misbehaving import HOST, StreamServer, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MARKER = b"slamon-h2-marker"
BIG = 5 * 1024 * 1024

_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type text/plain;
    server {{
        listen {host}:{port} ssl http2;
        ssl_certificate {tmp}/cert.pem;
        ssl_certificate_key {tmp}/key.pem;
        root {tmp}/www;
        location = /ok {{ return 200 "{marker}\\n"; }}
        location = /down {{ return 503 "maintenance\\n"; }}
        location = /moved {{ return 301 /ok; }}
        location = /post {{ client_max_body_size 1m; return 200 "{marker} posted\\n"; }}
        location /static/ {{ }}
    }}
}}
"""


@dataclass
class Nginx:
    port: int
    tmp: Path

    def url(self, path: str) -> str:
        return f"https://{HOST}:{self.port}{path}"


@contextlib.contextmanager
def nginx_h2(ca: trustme.CA, tmp: Path) -> Iterator[Nginx]:
    """nginx serving HTTP/2 (and HTTP/1.1, by ALPN) over TLS with a cert from `ca`;
    /static/big.txt is a 5 MiB file whose first bytes are MARKER."""
    cert = ca.issue_cert(HOST, "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "key.pem"))
    (tmp / "www" / "static").mkdir(parents=True)
    (tmp / "www" / "static" / "big.txt").write_bytes(MARKER + b"x" * (BIG - len(MARKER)))
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(_CONF.format(tmp=tmp, user=user, host=HOST, port=port,
                                 marker=MARKER.decode()))
    proc = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(conf), "-e",
                             str(tmp / "error.log")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_listening(port, proc)
        yield Nginx(port, tmp)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError("nginx did not listen within 10 s")


H2Mode = Literal["ok", "reset", "goaway", "goaway_graceful", "garbage", "close_mid_body",
                 "hang_body", "answer_early"]


class MisbehavingH2Server(StreamServer):
    """HTTP/2 over TLS (ALPN h2 only) with the `h2` library, one behaviour per mode.
    `requests` holds each request's header fields (decoded) and body size."""

    def __init__(self, ca: trustme.CA, mode: H2Mode = "ok") -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOST, "localhost").configure_cert(ctx)
        ctx.set_alpn_protocols(["h2"])
        super().__init__(ctx)
        self.mode: H2Mode = mode
        self.requests: list[tuple[dict[str, str], int]] = []

    def url(self, path: str = "/") -> str:
        return f"https://{HOST}:{self.port}{path}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "garbage":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            await reader.read(65536)
            return
        conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        if self.mode == "goaway":
            conn.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
            writer.write(conn.data_to_send())
            await writer.drain()
            await reader.read(65536)
            return
        writer.write(conn.data_to_send())
        fields: dict[str, str] = {}
        size = 0
        while True:
            data = await reader.read(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, RequestReceived):
                    fields = dict(event.headers)  # type: ignore[arg-type]
                elif isinstance(event, DataReceived):
                    size += len(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                    if self.mode == "answer_early" and size:
                        # as nginx's `return` on a POST: the whole answer before the
                        # rest of the body, then RST_STREAM(NO_ERROR) (RFC 9113 8.1), in
                        # the same write as the WINDOW_UPDATE the client waits for
                        self.requests.append((fields, size))
                        conn.increment_flow_control_window(size)
                        conn.increment_flow_control_window(size, event.stream_id)
                        conn.send_headers(event.stream_id, [(":status", "200")])
                        conn.send_data(event.stream_id, MARKER + b" posted\n",
                                       end_stream=True)
                        conn.reset_stream(event.stream_id, ErrorCodes.NO_ERROR)
                        writer.write(conn.data_to_send())
                        await writer.drain()
                        await reader.read(65536)
                        return
                elif isinstance(event, StreamEnded):
                    self.requests.append((fields, size))
                    await self._answer(conn, writer, event.stream_id)
                    if self.mode == "hang_body":
                        await asyncio.Event().wait()
                    if self.mode == "close_mid_body":
                        writer.close()  # a clean close (TLS close_notify, FIN), no reset
                        await writer.wait_closed()
                        return
            writer.write(conn.data_to_send())
            await writer.drain()

    async def _answer(self, conn: H2Connection, writer: asyncio.StreamWriter,
                      stream: int) -> None:
        if self.mode == "goaway_graceful":
            # as nginx at keepalive_requests: GOAWAY NO_ERROR covering stream 1, then the
            # answer (a raw frame: h2 itself refuses to send anything after a GOAWAY)
            writer.write(GoAwayFrame(0, last_stream_id=stream, error_code=0).serialize())
        if self.mode == "reset":
            conn.send_headers(stream, [(":status", "200")])
            conn.reset_stream(stream, ErrorCodes.INTERNAL_ERROR)
        elif self.mode in ("close_mid_body", "hang_body"):
            conn.send_headers(stream, [(":status", "200"), ("content-length", "100")])
            conn.send_data(stream, MARKER)
        else:
            conn.send_headers(stream, [(":status", "200"), ("content-type", "text/plain")])
            conn.send_data(stream, MARKER + b" h2 ok\n", end_stream=True)
        writer.write(conn.data_to_send())
        await writer.drain()
