"""A scraper that goes away during a /metrics scrape, over loopback.

Prometheus gives up on a scrape at its scrape timeout and closes the connection; on a
loaded host at 10,000 targets that happens. slamon then stops sending and logs one
structured warning, not aiohttp's traceback of a server error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

import slamon.web.server as server_module
from slamon.metrics.collector import ListedRegistry, SlamonCollector, make_registry
from slamon.metrics.exposition import PIECE, render_chunks
from slamon.web.server import HttpServer, build_app
from tests.misbehaving import rst_close
from tests.test_exposition import NOW, populated

#: what the scrape sends after the exposition when the client goes away mid-stream:
#: far more than loopback's socket buffers take, so a write meets the closed connection
FILLER = b"#" * (64 * PIECE)


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.head = asyncio.get_running_loop().create_future()
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data
        if b"\r\n\r\n" in self.received and not self.head.done():
            self.head.set_result(None)


async def _gone(request: web.Request) -> None:
    """Until the server has seen the client's reset; bounded, a loop turn at a time (the
    connection's loss has no hook to await)."""
    for _ in range(10_000):
        if request.transport is None or request.transport.is_closing():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the server never saw the client go")


@pytest.mark.parametrize("when", ["before-headers", "mid-stream"])
async def test_a_scraper_gone_mid_scrape_gets_one_warning_and_no_traceback(
        when: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    live, stats = populated()
    collector = SlamonCollector(lambda: live, lambda: stats, clock=lambda: NOW)
    registry = make_registry(collector)
    ready = asyncio.Event()
    ready.set()
    entered = asyncio.Event()
    client_closed = asyncio.Event()
    handled = asyncio.Event()
    requests: list[web.Request] = []
    enabled = [True]

    async def render_then(registry: ListedRegistry, collector: SlamonCollector
                          ) -> list[bytes]:
        chunks = list(await render_chunks(registry, collector))
        if not enabled[0]:
            return chunks
        entered.set()
        if when == "before-headers":
            await client_closed.wait()
            await _gone(requests[-1])
            return chunks
        return [*chunks, FILLER]

    @web.middleware
    async def remember(request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
        requests.append(request)
        try:
            return await handler(request)
        finally:
            handled.set()

    monkeypatch.setattr(server_module, "render_chunks", render_then)
    app = build_app(registry, ready, collector)
    app.middlewares.append(remember)
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    caplog.set_level(logging.INFO, logger="aiohttp")
    try:
        loop = asyncio.get_running_loop()
        with capture_logs() as logs:
            transport, client = await loop.create_connection(
                _Client, "127.0.0.1", server.bound_port)
            transport.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                            b"Accept-Encoding: identity\r\n\r\n")
            await asyncio.wait_for(entered.wait(), 10)
            if when == "mid-stream":
                await asyncio.wait_for(client.head, 10)
            rst_close(transport)
            client_closed.set()
            await asyncio.wait_for(handled.wait(), 10)
        abandoned = [e for e in logs if e["event"] == "metrics_scrape_abandoned"]
        assert len(abandoned) == 1, logs
        assert abandoned[0]["log_level"] == "warning"
        assert abandoned[0]["encoding"] == "identity"
        if when == "before-headers":
            assert abandoned[0]["sent_bytes"] == 0
            assert client.received == b""
        else:
            assert 0 < abandoned[0]["sent_bytes"] < len(FILLER)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
        assert "Traceback" not in caplog.text

        # the next scraper is served in full
        enabled[0] = False
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{server.bound_port}/metrics") as resp:
            assert resp.status == 200
            assert b"\nprobe_success{" in await resp.read()
    finally:
        await server.stop()
