"""Behavioural HTTP target farm on 127.0.0.1 (one process, asyncio + uvloop).

Target i is ``http://127.0.0.1:<port>/t/<i>``: most targets share ``shared``
ports round-robin; targets with their own port (``schedule.has_own_port``) can
be *refused*: their listening socket is closed for the outage and reopened
after it. Every request is answered from ``schedule`` at the time its header
arrives: up = 200 "OK", 503, hang (hold the connection ``hang`` s, then close),
body = 200 "maintenance", slow = 200 "OK" after ``slow`` s, reset = RST
(SO_LINGER 0 + abort). ``Connection: close`` on every answer.

Run by the runner as ``python bench/compare/target_farm.py SPEC.json``; prints
``ready`` on stdout once every port listens; on SIGTERM writes request counts
per (client, behaviour) to ``SPEC.stats.json`` and exits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import struct
import sys
import time
from collections import Counter
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from schedule import TargetSchedule, build, has_own_port

OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    b"Connection: close\r\n\r\nOK\n"
)
BODY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
    b"Connection: close\r\n\r\nmaintenance\n"
)
E503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
    b"Connection: close\r\n\r\nunavailable\n"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
LINGER0 = struct.pack("ii", 1, 0)


class Farm:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.n = spec["targets"]
        self.sched: list[TargetSchedule] = build(spec["seed"], self.n, spec["t0"], spec["t1"])
        self.slow = float(spec["slow"])
        self.hang = float(spec["hang"])
        self.stats: Counter[str] = Counter()
        self.servers: dict[int, asyncio.AbstractServer] = {}

    def answer(self, transport: asyncio.Transport, head: bytes) -> None:
        loop = asyncio.get_running_loop()
        now = time.time()
        try:
            path = head.split(b" ", 2)[1]
            i = int(path[3:]) if path.startswith(b"/t/") else -1
        except (IndexError, ValueError):
            i = -1
        client = "slamon" if b"slamon/" in head else "blackbox" if b"Blackbox" in head else "other"
        if not 0 <= i < self.n:
            self.stats[f"{client}/404"] += 1
            transport.write(NOT_FOUND)
            transport.close()
            return
        kind = self.sched[i].kind_at(now)
        self.stats[f"{client}/{kind}"] += 1
        if kind == "up" or kind == "refused":  # refused: a request that got in just before close
            transport.write(OK)
            transport.close()
        elif kind == "503":
            transport.write(E503)
            transport.close()
        elif kind == "body":
            transport.write(BODY)
            transport.close()
        elif kind == "slow":
            loop.call_later(self.slow, _write_close, transport, OK)
        elif kind == "hang":
            loop.call_later(self.hang, transport.close)
        elif kind == "reset":
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
            transport.abort()

    async def listen(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.servers[port] = await loop.create_server(
            lambda: Conn(self), "127.0.0.1", port, backlog=4096, reuse_address=True
        )

    def close_port(self, port: int) -> None:
        srv = self.servers.pop(port, None)
        if srv is not None:
            srv.close()

    async def reopen_port(self, port: int) -> None:
        for _ in range(50):  # bounded: the port is ours, but retry a bind race briefly
            try:
                await self.listen(port)
                return
            except OSError:
                await asyncio.sleep(0.01)

    def plan_refusals(self) -> None:
        """Close each own port at its refused outages' start, reopen at their end."""
        loop = asyncio.get_running_loop()
        now_wall, now_loop = time.time(), loop.time()
        for key, port in self.spec["own_ports"].items():
            for o in self.sched[int(key)].segs:
                if o.kind != "refused" or o.end <= now_wall:
                    continue
                start = max(o.start, now_wall)
                loop.call_at(now_loop + (start - now_wall), self.close_port, port)
                loop.call_at(
                    now_loop + (o.end - now_wall),
                    lambda p=port: asyncio.ensure_future(self.reopen_port(p)),
                )


def _write_close(transport: asyncio.Transport, data: bytes) -> None:
    if not transport.is_closing():
        transport.write(data)
        transport.close()


class Conn(asyncio.Protocol):
    __slots__ = ("buf", "done", "farm", "transport")

    def __init__(self, farm: Farm) -> None:
        self.farm = farm
        self.buf = b""
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.done = True
            self.farm.answer(self.transport, self.buf)
        elif len(self.buf) > 65536:
            self.transport.close()


async def serve(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    farm = Farm(spec)
    for port in spec["shared_ports"]:
        await farm.listen(port)
    now = time.time()
    for key, port in spec["own_ports"].items():
        assert has_own_port(int(key))
        if farm.sched[int(key)].kind_at(now) != "refused":
            await farm.listen(port)
    farm.plan_refusals()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    spec_path.with_suffix(".stats.json").write_text(json.dumps(dict(farm.stats), sort_keys=True))


def main() -> None:
    uvloop.run(serve(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
