"""An HTTP proxy on 127.0.0.1 for the proxy tests: CONNECT tunnels and absolute-form
requests, optional Basic credentials (407 without them), and a mode that refuses
every CONNECT. It records what it was asked."""

from __future__ import annotations

import asyncio
import base64
import contextlib

from tests.misbehaving import HOST, StreamServer


class ProxyServer(StreamServer):
    def __init__(self, user: str | None = None, password: str = "",
                 refuse_connect: bool = False) -> None:
        super().__init__()
        self.auth = (None if user is None
                     else "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        self.refuse_connect = refuse_connect
        #: request lines received, in order
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        line, *fields = head.split("\r\n")
        self.requests.append(line)
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (f.partition(":") for f in fields if f)}
        if self.auth is not None and headers.get("proxy-authorization") != self.auth:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=test\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        method, target, _version = line.split(" ", 2)
        if method == "CONNECT":
            if self.refuse_connect:
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            host, _, port = target.rpartition(":")
            up_r, up_w = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await self._pipe(reader, writer, up_r, up_w)
            return
        # absolute form: forward in origin form, dropping the proxy's own header
        rest = target.removeprefix("http://")
        authority, _, path = rest.partition("/")
        host, _, port = authority.rpartition(":")
        up_r, up_w = await asyncio.open_connection(host.strip("[]"), int(port or 80))
        kept = [f for f in fields if f and not f.lower().startswith("proxy-authorization")]
        up_w.write(("\r\n".join([f"{method} /{path} {_version}", *kept]) + "\r\n\r\n").encode())
        await self._pipe(reader, writer, up_r, up_w)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:
        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(ConnectionError, OSError):
                dst.write_eof() if dst.can_write_eof() else dst.close()

        try:
            await asyncio.gather(copy(reader, up_w), copy(up_r, writer))
        finally:
            up_w.transport.abort()
