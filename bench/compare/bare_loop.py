"""The floor for a Python prober: uvloop, an asyncio Protocol and httptools, nothing else.

Each target is probed at its own tick (ticks spread evenly over the interval) with a fresh
connection, and judged with the same assertions as slamon's config in ``run.py``: status
2xx, body containing ``OK``, response within ``slow_threshold``, ``timeout`` overall. No
SLI, no state, no metrics, no logging: what is left of slamon's CPU beyond this is
slamon's own overhead.

    python bench/compare/bare_loop.py SPEC.json

SPEC: ``{"urls": [...], "interval": s, "timeout": s, "slow_threshold": s}``. Prints one JSON
line once every task is started, then one per SIGUSR1 with its counters (``started``,
``ok``, ``failed``, ``skipped``, ``rss``); stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools
import uvloop


class _Probe(asyncio.Protocol):
    __slots__ = ("body_ok", "done", "parser", "status", "transport")

    def __init__(self, done: asyncio.Future[bool]) -> None:
        self.done = done
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.body_ok = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish(False)

    def on_body(self, body: bytes) -> None:
        if b"OK" in body:
            self.body_ok = True

    def on_message_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self._finish(200 <= self.status < 300 and self.body_ok)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(False)

    def _finish(self, ok: bool) -> None:
        if not self.done.done():
            self.done.set_result(ok)
        if self.transport is not None:
            self.transport.close()


def main(spec_path: str) -> None:
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text())
    urls: list[str] = spec["urls"]
    interval: float = spec["interval"]
    timeout: float = spec["timeout"]
    slow: float = spec["slow_threshold"]
    #: probes start on this grid, as slamon's do by default (0: evenly spread)
    slot: float = spec.get("slot", 0.0)
    stats = {"started": 0, "ok": 0, "failed": 0, "skipped": 0}

    async def one(url: str, first: float) -> None:
        loop = asyncio.get_running_loop()
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        request = (f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                   "User-Agent: bare\r\nConnection: close\r\n\r\n").encode()
        due = first
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            start = loop.time()
            stats["started"] += 1
            done: asyncio.Future[bool] = loop.create_future()
            ok = False
            transport = None
            try:
                async with asyncio.timeout(timeout):
                    transport, _ = await loop.create_connection(
                        lambda done=done: _Probe(done), host, port)
                    transport.write(request)
                    ok = await done
            except (OSError, TimeoutError):
                ok = False
            finally:
                if transport is not None:
                    transport.close()
            ok = ok and loop.time() - start <= slow
            stats["ok" if ok else "failed"] += 1
            due += interval
            now = loop.time()
            while due <= now:  # overran a tick: skipped, as slamon counts it missed
                stats["skipped"] += 1
                due += interval

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def report() -> None:
            rss = 0
            with open(f"/proc/{os.getpid()}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) * 1024
            sys.stdout.write(json.dumps(dict(stats, rss=rss)) + "\n")
            sys.stdout.flush()

        loop.add_signal_handler(signal.SIGUSR1, report)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        start = loop.time() + 0.5
        n = len(urls)
        phases = [interval * i / n for i in range(n)]
        if slot > 0:
            phases = [(p // slot) * slot for p in phases]
        tasks = [asyncio.create_task(one(url, start + p))
                 for url, p in zip(urls, phases, strict=True)]
        sys.stdout.write(json.dumps({"tasks": len(tasks)}) + "\n")
        sys.stdout.flush()
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    uvloop.run(run())


if __name__ == "__main__":
    main(sys.argv[1])
