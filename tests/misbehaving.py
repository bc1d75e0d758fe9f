"""Loopback servers that misbehave on purpose, for prober and end-to-end tests.

Real sockets on 127.0.0.1, no mocks: a prober is only trustworthy if it has
met a server that hangs, drips, resets, lies about its body or never ends.

Use as async context managers or as pytest fixtures (import them into a test
module or list this module in `pytest_plugins`):

- `misbehaving_http`   MisbehavingHttpServer (plain HTTP)
- `misbehaving_https`  same over TLS, cert for 127.0.0.1/localhost from `tls_ca`
- `expiring_https`     TLS server whose certificate expires in 2 days
- `tls_ca`, `ca_file`  the trustme CA and its PEM written to tmp_path
- `raw_tcp`, `raw_tcp_tls`  RawTcpServer (banner/expect, silent, reset, garbage...)
- `silent_port`        a port on 127.0.0.1 that completes handshakes and says nothing
- `refused_port`       a port on 127.0.0.1 nobody listens on
- `http_target(url, **http)` / `tcp_target(host, port, **tcp)` build a Target
- `serve(app)`         any aiohttp app on a free port (for test-specific servers)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import socket
import ssl
import struct
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Self

import pytest
import trustme
from aiohttp import web

from slamon.config.targets import Target

HOST = "127.0.0.1"
JSON_DOC: dict[str, Any] = {
    "status": "up",
    "count": 2,
    "healthy": True,
    "data": {"items": [{"state": "up"}, {"state": "down"}]},
}
Mode = Literal["up", "down", "hang", "reset", "slow"]


def free_port() -> int:
    """A port that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


async def serve(
    app: web.Application,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 0.5,
) -> tuple[web.AppRunner, int]:
    """Serve `app` on a free 127.0.0.1 port: its runner (`await runner.cleanup()` stops
    it) and the port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0, ssl_context=ssl_context).start()
    port: int = runner.addresses[0][1]
    return runner, port


def rst_close(transport: asyncio.BaseTransport) -> None:
    """Close with SO_LINGER 0 so the peer gets a TCP RST (ECONNRESET), not a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


class MisbehavingHttpServer:
    """aiohttp server on a free 127.0.0.1 port; each route misbehaves one way.

    `/` follows `set_mode()`: up (200 "OK"), down (503), hang, reset, slow
    (`slow_delay` seconds then 200) so end-to-end tests can flip a target.
    `hits` counts requests per path.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.mode: Mode = "up"
        self.slow_delay = 1.0
        self.hits: Counter[str] = Counter()
        self.port = 0
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # control
    def set_mode(self, mode: Mode) -> None:
        self.mode = mode

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{HOST}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    async def __aenter__(self) -> MisbehavingHttpServer:
        app = web.Application()
        app.middlewares.append(self._count)
        r = app.router
        r.add_route("*", "/", self._root)
        r.add_get("/ok", self._ok)
        r.add_route("*", "/status/{code}", self._status)
        r.add_get("/hang", self._hang)
        r.add_get("/hang-body", self._hang_body)
        r.add_get("/drip", self._drip)
        r.add_get("/reset", self._reset)
        r.add_get("/close-early", self._close_early)
        r.add_get("/wrong-body", self._wrong_body)
        r.add_get("/json", self._json)
        r.add_get("/json-invalid", self._json_invalid)
        r.add_get("/headers", self._headers)
        r.add_get("/redirect/{n}", self._redirect)
        r.add_get("/loop", self._loop)
        r.add_post("/see-other", self._see_other)
        r.add_get("/big", self._big)
        r.add_get("/big-cl", self._big_cl)
        r.add_get("/delay/{ms}", self._delay)
        r.add_get("/gzip", self._gzip)
        r.add_get("/deflate", self._deflate)
        r.add_route("*", "/echo", self._echo)
        self._runner, self.port = await serve(app, self.ssl_context)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _count(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.hits[request.path] += 1
        return await handler(request)

    # misbehaviours
    async def _wait_closing(self) -> None:
        await self._closing.wait()

    def _rst(self, request: web.Request) -> web.Response:
        if request.transport is not None:
            rst_close(request.transport)
        return web.Response()

    # routes
    async def _root(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "down":
            return web.Response(status=503, text="down for maintenance")
        if self.mode == "hang":
            await self._wait_closing()
        elif self.mode == "reset":
            return self._rst(request)
        elif self.mode == "slow":
            await asyncio.sleep(self.slow_delay)
        return web.Response(text="OK")

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}")

    async def _hang(self, request: web.Request) -> web.Response:
        """Read the request, never answer (until the server closes)."""
        await self._wait_closing()
        return web.Response(text="too late")

    async def _hang_body(self, request: web.Request) -> web.StreamResponse:
        """Headers and part of the body, then silence: a stall in phase transfer."""
        resp = web.StreamResponse(headers={"Content-Length": "100"})
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        await self._wait_closing()
        return resp

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        """1 byte every 100 ms of a 1000-byte body: each read succeeds, the whole never ends."""
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(1000):
                if self._closing.is_set():
                    break
                await resp.write(b"x")
                await asyncio.sleep(0.1)
        return resp

    async def _reset(self, request: web.Request) -> web.Response:
        """Read the request, then RST."""
        await request.read()
        return self._rst(request)

    async def _close_early(self, request: web.Request) -> web.StreamResponse:
        """Promise 100 bytes, send 10, close: truncated response."""
        resp = web.StreamResponse(headers={"Content-Length": "100"})
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        if request.transport is not None:
            request.transport.close()
        return resp

    async def _wrong_body(self, request: web.Request) -> web.Response:
        return web.Response(text="Service Unavailable: maintenance in progress")

    async def _json(self, request: web.Request) -> web.Response:
        return web.json_response(JSON_DOC)

    async def _json_invalid(self, request: web.Request) -> web.Response:
        return web.Response(text="{not json", content_type="application/json")

    async def _headers(self, request: web.Request) -> web.Response:
        return web.Response(text="OK", headers={"X-Slamon": "present-1", "X-Version": "2.3"})

    async def _redirect(self, request: web.Request) -> web.Response:
        """/redirect/n -> .../n-1 (relative Location) ... /redirect/0 -> absolute /ok."""
        n = int(request.match_info["n"])
        location = str(n - 1) if n > 0 else self.url("/ok")
        raise web.HTTPFound(location)

    async def _loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def _see_other(self, request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/echo")

    async def _stream(self, request: web.Request, size: int, length: bool) -> web.StreamResponse:
        headers = {"Content-Length": str(size)} if length else {}
        resp = web.StreamResponse(headers=headers)
        if not length:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        chunk = b"y" * 65536
        sent = 0
        # ?first=TEXT: the body starts with TEXT (a marker), ?last=TEXT: ends with it
        first = request.query.get("first", "").encode()
        last = request.query.get("last", "").encode()
        with contextlib.suppress(ConnectionError):
            while sent < size:
                part = chunk[: size - sent]
                if sent == 0 and first:
                    part = first + part[len(first):]
                if sent + len(part) >= size and last:
                    part = part[: len(part) - len(last)] + last
                await resp.write(part)
                sent += len(part)
        return resp

    async def _big(self, request: web.Request) -> web.StreamResponse:
        """50 MB (or ?size=N) chunked, generated as it is sent."""
        return await self._stream(request, int(request.query.get("size", 50_000_000)), False)

    async def _big_cl(self, request: web.Request) -> web.StreamResponse:
        """Same with a Content-Length announcing the size up front."""
        return await self._stream(request, int(request.query.get("size", 50_000_000)), True)

    async def _delay(self, request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
        return web.Response(text="OK")

    async def _gzip(self, request: web.Request) -> web.Response:
        """Compressed although the client said Accept-Encoding: identity."""
        body = gzip.compress(b"OK compressed body")
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    async def _deflate(self, request: web.Request) -> web.Response:
        body = zlib.compress(b"OK deflated body")
        return web.Response(body=body, headers={"Content-Encoding": "deflate"})

    async def _echo(self, request: web.Request) -> web.Response:
        """What the server received, as JSON."""
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body": body.decode("utf-8", "replace"),
            }
        )


RawMode = Literal["banner", "silent", "reset", "close", "garbage", "flood", "http-eof",
                  "reply"]


class StreamServer:
    """An asyncio server on a free 127.0.0.1 port that hands each connection to
    `serve`; leaving the context aborts every connection and cancels its handler.
    A handler ends quietly on the errors a misbehaving peer causes."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, HOST, 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.serve(reader, writer)
        except (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError,
                asyncio.CancelledError):
            # CancelledError too: asyncio's stream callback would log a cancelled handler
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class RawTcpServer(StreamServer):
    """Plain asyncio TCP server on a free 127.0.0.1 port, behaviour by `mode`.

    banner: send `banner`, then answer each line `PING` with `PONG`;
    silent: accept and say nothing (also a TLS handshake that stalls);
    reset: accept then RST; close: accept then FIN;
    garbage: read a request, answer non-HTTP bytes and close;
    flood: send bytes forever without a newline;
    http-eof: HTTP/1.0 answer without Content-Length, body ends at close;
    reply: read a request, answer the bytes in `reply` as they are, and close.
    """

    def __init__(self, mode: RawMode = "banner", ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(ssl_context)
        self.mode: RawMode = mode
        self.banner = b"220 slamon-test ESMTP ready\r\n"
        self.reply = b""
        #: lines received in banner mode, and an event set on each one
        self.lines: list[bytes] = []
        self.got_line = asyncio.Event()

    def set_mode(self, mode: RawMode) -> None:
        self.mode = mode

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(self.mode, reader, writer)

    async def _serve(
        self, mode: RawMode, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if mode == "reset":
            rst_close(writer.transport)
        elif mode == "close":
            writer.close()
        elif mode == "silent":
            await reader.read()  # until the client goes away
        elif mode == "garbage":
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"THIS IS NOT HTTP\r\n\r\n")
            await writer.drain()
            writer.close()
        elif mode == "http-eof":
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nOK until EOF")
            await writer.drain()
            writer.close()
        elif mode == "reply":
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.reply)
            await writer.drain()
            writer.close()
        elif mode == "flood":
            while True:
                writer.write(b"z" * 4096)
                await writer.drain()
        else:
            writer.write(self.banner)
            await writer.drain()
            while line := await reader.readline():
                self.lines.append(line)
                self.got_line.set()
                if line.strip() == b"PING":
                    writer.write(b"PONG\r\n")
                    await writer.drain()


# ---------------------------------------------------------------- targets


def http_target(url: str, timeout: float = 2.0, **http: Any) -> Target:
    """A validated http Target (interval 10s) for `url`; extra keys go to HttpSpec."""
    return Target.model_validate(
        {
            "id": "t",
            "kind": "http",
            "interval": 10,
            "timeout": timeout,
            "http": {"url": url, **http},
        }
    )


def tcp_target(host: str, port: int, timeout: float = 2.0, **tcp: Any) -> Target:
    """A validated tcp Target (interval 10s); extra keys go to TcpSpec."""
    return Target.model_validate(
        {
            "id": "t",
            "kind": "tcp",
            "interval": 10,
            "timeout": timeout,
            "tcp": {"host": host, "port": port, **tcp},
        }
    )


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> str:
    """The test CA as a PEM file (for `ca_file:` in configs)."""
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_ssl_context(ca: trustme.CA, not_after: dt.datetime | None = None) -> ssl.SSLContext:
    """Server-side context with a cert for 127.0.0.1 and localhost signed by `ca`."""
    cert = ca.issue_cert(HOST, "localhost", not_after=not_after)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


@pytest.fixture
async def misbehaving_http() -> AsyncIterator[MisbehavingHttpServer]:
    async with MisbehavingHttpServer() as server:
        yield server


@pytest.fixture
async def misbehaving_https(tls_ca: trustme.CA) -> AsyncIterator[MisbehavingHttpServer]:
    async with MisbehavingHttpServer(server_ssl_context(tls_ca)) as server:
        yield server


@pytest.fixture
async def expiring_https(tls_ca: trustme.CA) -> AsyncIterator[MisbehavingHttpServer]:
    """TLS server whose certificate expires in 2 days."""
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    async with MisbehavingHttpServer(server_ssl_context(tls_ca, soon)) as server:
        yield server


@pytest.fixture
async def raw_tcp() -> AsyncIterator[RawTcpServer]:
    async with RawTcpServer() as server:
        yield server


@pytest.fixture
async def raw_tcp_tls(tls_ca: trustme.CA) -> AsyncIterator[RawTcpServer]:
    async with RawTcpServer(ssl_context=server_ssl_context(tls_ca)) as server:
        yield server


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 whose connections are never accepted, read or answered (the
    kernel's backlog completes the handshakes)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen(512)
        yield s.getsockname()[1]


@pytest.fixture
def refused_port() -> int:
    """Bind a socket, note its port, close it: connecting there is refused."""
    return free_port()
