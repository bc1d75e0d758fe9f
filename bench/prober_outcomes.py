"""CPU per probe of slamon's HTTP prober against the bare loop's, by outcome, at saturation.

A loopback server (its own process, uvloop) answers by path: ``/ok`` 200 "OK", ``/503``,
``/body`` 200 "maintenance", ``/reset`` an RST, ``/hang`` nothing for 3 s. For each
outcome, the bare loop's probe (bench/compare/bare_loop.py's protocol, asyncio.timeout)
and `slamon.probers.http.probe` (body marker, 1 s response-time limit) each run
``--probes`` probes back to back from ``--concurrency`` workers, in their own process,
alternated ``--rounds`` times; the lowest CPU per probe of each (the round least disturbed
by the host) is printed, and the difference is slamon's own per-probe cost in the prober,
without a scheduler, state or metrics. The kernel's share (sockets) is in both.

    python bench/prober_outcomes.py --probes 20000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTCOMES = ("/ok", "/503", "/body", "/reset", "/hang")
_ANSWERS = {
    b"/503": b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
             b"Content-Length: 12\r\nConnection: close\r\n\r\nunavailable\n",
    b"/body": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
              b"Connection: close\r\n\r\nmaintenance\n",
}
_OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
       b"Connection: close\r\n\r\nOK\n")


def serve(port: int) -> None:
    import uvloop

    class Answer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t: asyncio.Transport = transport  # type: ignore[assignment]
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            if b"\r\n\r\n" not in self.buf:
                return
            path = self.buf.split(b" ", 2)[1]
            if path == b"/reset":
                sock = self.t.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.t.abort()
            elif path == b"/hang":
                asyncio.get_running_loop().call_later(3, self.t.close)
            else:
                self.t.write(_ANSWERS.get(path, _OK))
                self.t.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(Answer, "127.0.0.1", port, backlog=4096)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def client(kind: str, port: int, path: str, probes: int, concurrency: int,
           timeout: float) -> None:
    import uvloop

    sys.path.insert(0, str(HERE / "compare"))
    from bare_loop import _Probe

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if kind == "slamon":
            from slamon.config.root import Config
            from slamon.probers.http import probe

            target = Config.model_validate({"targets": [{
                "id": "t", "kind": "http", "interval": "10s", "timeout": f"{timeout}s",
                "http": {"url": f"http://127.0.0.1:{port}{path}", "body_contains": ["OK"],
                         "max_response_time": "1s"}}]}).targets[0]

            async def one() -> bool:
                return (await probe(target, timeout)).ok
        else:
            request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       "User-Agent: bare\r\nConnection: close\r\n\r\n").encode()

            async def one() -> bool:
                done: asyncio.Future[bool] = loop.create_future()
                transport = None
                try:
                    async with asyncio.timeout(timeout):
                        transport, _ = await loop.create_connection(
                            lambda: _Probe(done), "127.0.0.1", port)
                        transport.write(request)
                        return await done
                except (OSError, TimeoutError):
                    return False
                finally:
                    if transport is not None:
                        transport.close()

        for _ in range(min(200, probes // 10)):  # warm up
            await one()
        each = probes // concurrency

        async def worker() -> None:
            for _ in range(each):
                await one()

        t = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        print((time.process_time() - t) / (each * concurrency) * 1e6, flush=True)

    uvloop.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probes", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--client", nargs=3, metavar=("KIND", "PORT", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=2.0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve)
        return
    if a.client:
        kind, port, path = a.client
        client(kind, int(port), path, a.probes, a.concurrency, a.timeout)
        return
    sys.path.insert(0, str(HERE))
    from farm import free_ports, stop_group

    port = free_ports(1)[0]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)],
                              stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise SystemExit("the server did not start")
        print(f"{'outcome':8s} {'bare us':>9s} {'slamon us':>10s} {'slamon - bare':>14s}")
        for path in OUTCOMES:
            # a hang costs a timeout each: fewer probes, many at once, a short timeout
            hang = path == "/hang"
            probes = max(a.probes // 5, 500) if hang else a.probes
            extra = ["--concurrency", "500", "--timeout", "0.5"] if hang else [
                "--concurrency", str(a.concurrency)]
            got: dict[str, list[float]] = {"bare": [], "slamon": []}
            for _ in range(a.rounds):
                for kind in ("bare", "slamon"):
                    out = subprocess.run(
                        [sys.executable, __file__, "--client", kind, str(port), path,
                         "--probes", str(probes), *extra],
                        capture_output=True, text=True, check=True, timeout=600)
                    got[kind].append(float(out.stdout.strip().splitlines()[-1]))
            bare, slamon = min(got["bare"]), min(got["slamon"])
            print(f"{path:8s} {bare:9.1f} {slamon:10.1f} {slamon - bare:+14.1f}", flush=True)
    finally:
        stop_group(server, grace=5)


if __name__ == "__main__":
    main()
