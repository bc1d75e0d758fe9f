"""The one HTTP port: /metrics, /healthz, /readyz (and the APIs later issues add)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from slamon import __version__
from slamon.metrics.collector import ListedRegistry, SlamonCollector
from slamon.metrics.exposition import gzipped, paced, render_chunks
from slamon.util.log import get_logger
from slamon.web.runbooks import runbooks_page

READY_KEY = web.AppKey("ready", asyncio.Event)

INDEX = """<!doctype html><html><head><meta charset="utf-8"><title>slamon</title></head>
<body><h1>slamon {version}</h1><ul>
<li><a href="metrics">/metrics</a> Prometheus metrics</li>
<li><a href="healthz">/healthz</a> liveness</li>
<li><a href="readyz">/readyz</a> readiness</li>
<li><a href="runbooks">/runbooks</a> what to do when an alert fires</li>
</ul></body></html>
"""


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding value takes gzip (RFC 9110 12.5.3): named, or by `*`,
    with a q-value above 0; an explicit `gzip;q=0` refuses it even after a `*`."""
    star = False
    for item in header.split(","):
        coding, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0  # a q-value that is not one: as good as refused
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return star


def build_app(
    registry: ListedRegistry,
    ready: asyncio.Event,
    collector: SlamonCollector | None = None,
    extra_routes: Callable[[web.Application], None] | None = None,
    gzip: Callable[[], bool] = lambda: True,
) -> web.Application:
    app = web.Application()
    app[READY_KEY] = ready

    async def metrics(request: web.Request) -> web.StreamResponse:
        if collector is None:
            body = generate_latest(registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        # streamed family by family: at 10,000 targets the text is ~10 MB, and one
        # joined copy of it would be that much more peak memory
        chunks = await render_chunks(registry, collector)
        headers = {"Content-Type": CONTENT_TYPE_LATEST, "Vary": "Accept-Encoding"}
        stream: AsyncIterator[bytes | memoryview] = paced(chunks)
        if gzip() and accepts_gzip(request.headers.get("Accept-Encoding", "")):
            headers["Content-Encoding"] = "gzip"
            stream = gzipped(stream)
        response = web.StreamResponse(headers=headers)
        sent = 0
        try:
            await response.prepare(request)
            async for piece in stream:
                await response.write(piece)
                sent += len(piece)
            await response.write_eof()
        except ConnectionError:
            # the scraper went away (its scrape timeout, a restart): stop compressing and
            # sending for it and say so in one line. Raised on, aiohttp would log a
            # traceback as a server error; returned, it finishes the response quietly
            get_logger().warning("metrics_scrape_abandoned", sent_bytes=sent,
                                 encoding=headers.get("Content-Encoding", "identity"))
        return response

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if request.app[READY_KEY].is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="starting\n")

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=INDEX.format(version=__version__), content_type="text/html")

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)

    async def runbooks(_request: web.Request) -> web.Response:
        return web.Response(text=runbooks_page(), content_type="text/html")

    app.router.add_get("/", index)
    app.router.add_get("/runbooks", runbooks)
    if extra_routes is not None:
        extra_routes(app)
    return app


class HttpServer:
    """Thin wrapper so the daemon can start and stop the site explicitly."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._host = host
        self._port = port
        self.bound_port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        # the port actually bound (the configured one may be 0: any free port);
        # getsockname() gives (host, port) or, for IPv6, (host, port, flow, scope)
        addresses = self._runner.addresses
        self.bound_port = int(addresses[0][1]) if addresses else self._port

    async def stop(self) -> None:
        await self._runner.cleanup()
