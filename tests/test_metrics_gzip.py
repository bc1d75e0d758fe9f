"""/metrics gzipped when the scraper asks, served over loopback.

Prometheus asks for gzip on every scrape; tests/test_prometheus_e2e.py has Debian's
real Prometheus ingest what this serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import signal
import sys
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from slamon.config.root import Config
from slamon.metrics.collector import SlamonCollector, make_registry
from slamon.metrics.exposition import gzip_packer, gzipped, paced, render
from slamon.web.server import HttpServer, accepts_gzip, build_app
from tests.misbehaving import free_port
from tests.test_exposition import NOW, loop_turns, populated
from tests.test_reload import SlamonProcess


@pytest.mark.parametrize(("header", "taken"), [
    ("gzip", True),
    ("gzip, deflate", True),
    ("deflate, gzip;q=0.5", True),
    ("GZIP;Q=1", True),
    ("x-gzip", True),
    ("*", True),
    ("", False),
    ("identity", False),
    ("deflate, br", False),
    ("gzip;q=0", False),
    ("gzip; q=0.000", False),
    ("*;q=0", False),
    ("*, gzip;q=0", False),
    ("gzip;q=abc", False),
])
def test_accept_encoding_is_read_with_its_q_values(header: str, taken: bool) -> None:
    assert accepts_gzip(header) is taken


@contextlib.asynccontextmanager
async def _serve(gzip_on: Callable[[], bool]) -> AsyncIterator[tuple[str, bytes]]:
    live, stats = populated()
    collector = SlamonCollector(lambda: live, lambda: stats, clock=lambda: NOW)
    registry = make_registry(collector)
    ready = asyncio.Event()
    ready.set()
    server = HttpServer(build_app(registry, ready, collector, gzip=gzip_on), "127.0.0.1", 0)
    await server.start()
    try:
        # what the same state renders to, without HTTP
        yield f"http://127.0.0.1:{server.bound_port}/metrics", await render(registry, collector)
    finally:
        await server.stop()


def _steady(text: bytes) -> bytes:
    """The exposition without the process' own families (CPU, memory, open files), which
    move between two renders."""
    return b"".join(line for line in text.splitlines(keepends=True)
                    if line.split(b" process_", 1)[0] not in (b"# HELP", b"# TYPE")
                    and not line.startswith(b"process_"))


async def _get(url: str, accept: str) -> tuple[dict[str, str], bytes]:
    async with aiohttp.ClientSession(auto_decompress=False) as session, \
            session.get(url, headers={"Accept-Encoding": accept}) as resp:
        assert resp.status == 200
        return dict(resp.headers), await resp.read()


async def test_metrics_are_gzipped_when_asked_and_plain_otherwise() -> None:
    async with _serve(lambda: True) as (url, text):
        assert b"\nprobe_success{" in _steady(text)
        headers, body = await _get(url, "gzip")
        assert headers["Content-Encoding"] == "gzip"
        assert headers["Vary"] == "Accept-Encoding"
        assert _steady(gzip.decompress(body)) == _steady(text)
        assert len(body) * 3 < len(text)

        headers, body = await _get(url, "identity")
        assert "Content-Encoding" not in headers
        assert headers["Vary"] == "Accept-Encoding"
        assert _steady(body) == _steady(text)

        headers, body = await _get(url, "gzip;q=0, deflate")
        assert "Content-Encoding" not in headers
        assert _steady(body) == _steady(text)


async def test_metrics_gzip_switched_off_serves_plain_text_to_a_scraper_that_asks() -> None:
    async with _serve(lambda: False) as (url, text):
        headers, body = await _get(url, "gzip")
        assert "Content-Encoding" not in headers
        assert _steady(body) == _steady(text)


def test_metrics_gzip_is_on_by_default_and_can_be_switched_off() -> None:
    assert Config.model_validate({}).metrics.gzip is True
    assert Config.model_validate({"metrics": {"gzip": False}}).metrics.gzip is False


async def _joined(parts: AsyncIterator[bytes | memoryview]) -> bytes:
    return b"".join([bytes(part) async for part in parts])

CHUNKS = [bytes(range(256)) * 40, b"# HELP x\n" * 3, bytes(reversed(range(256))) * 80]


async def test_plain_text_goes_out_in_pieces_with_yields_to_the_loop() -> None:
    sizes = [len(part) async for part in paced(CHUNKS, piece=4096)]
    assert max(sizes) == 4096 and sum(sizes) == sum(map(len, CHUNKS))
    ticks, got = await loop_turns(_joined(paced(CHUNKS, piece=4096)))
    # 30,747 bytes in pieces of 4,096: at least 7 yields to the loop on the way
    assert ticks >= 7
    assert got == b"".join(CHUNKS)


@pytest.mark.parametrize("fast", [True, False])
async def test_gzip_yields_to_the_loop_between_pieces_and_is_one_stream(fast: bool) -> None:
    ticks, stream = await loop_turns(_joined(gzipped(paced(CHUNKS, piece=4096), fast=fast)))
    assert ticks >= 7
    assert gzip.decompress(stream) == b"".join(CHUNKS)
    # one gzip member (not one per piece): a single decompressor reads it to its end
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert inflater.decompress(stream) == b"".join(CHUNKS)
    assert inflater.eof and inflater.unused_data == b""


def test_gzip_packer_is_isa_l_when_installed_and_zlib_without_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # isal is a dependency where it has wheels (pyproject.toml), so the fast packer is
    # ISA-L's here; a platform without it falls back to zlib's, the same stream format
    text = b"".join(CHUNKS) * 20
    fast = gzip_packer()
    assert type(fast).__module__.startswith("isal")
    fast_stream = fast.compress(memoryview(text)) + fast.flush()
    assert type(gzip_packer(fast=False)) is type(zlib.compressobj())
    monkeypatch.setitem(sys.modules, "isal", None)  # `import isal` now raises ImportError
    fallback = gzip_packer()
    assert type(fallback) is type(zlib.compressobj())
    slow_stream = fallback.compress(memoryview(text)) + fallback.flush()
    assert gzip.decompress(fast_stream) == gzip.decompress(slow_stream) == text
    assert len(fast_stream) * 5 < len(text) and len(slow_stream) * 5 < len(text)


def _encoding(url: str, accept: str) -> tuple[str | None, bytes]:
    req = urllib.request.Request(url, headers={"Accept-Encoding": accept})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.headers.get("Content-Encoding"), resp.read()


def test_a_running_slamon_gzips_until_a_reload_switches_it_off(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "slamon.yaml"
    base = (f"server: {{listen: '127.0.0.1:{port}'}}\n"
            f"state: {{path: '{tmp_path / 'state.sqlite3'}'}}\n"
            "targets: [{id: db, kind: tcp, tcp: {host: 127.0.0.1, port: 9}}]\n")
    config.write_text(base)
    run = SlamonProcess(config, port, tmp_path / "log")
    try:
        run.wait_ready(30)
        url = f"http://127.0.0.1:{port}/metrics"
        coding, body = _encoding(url, "gzip")
        assert coding == "gzip" and b"\nslamon_targets 1" in gzip.decompress(body)
        coding, body = _encoding(url, "identity")
        assert coding is None and b"\nslamon_targets 1" in body
        config.write_text(base + "metrics: {gzip: false}\n")
        run.proc.send_signal(signal.SIGHUP)
        run.wait_log("reloaded")
        coding, body = _encoding(url, "gzip")
        assert coding is None and b"\nslamon_targets 1" in body
        run.stop()
    finally:
        run.close()
