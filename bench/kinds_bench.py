"""CPU per 1,000 probes for each target kind, one slamon run per kind.

For every kind, N targets on loopback (or 127.0.0.0/8) at one interval, one
availability SLO per target, and slamon's CPU (utime + stime of its process,
from /proc) over a span after a warm-up, divided by the probes it completed in
that span (`slamon_probes_total`, success + failure). The servers run in
processes of their own and their CPU is not counted:

- http:  nginx (bench/farm.py), a fresh connection per probe
- https, h2: the same over TLS (a trustme certificate), HTTP/1.1 and `http2: true`
- tcp:   the same nginx ports, connect only
- dns:   a dnspython UDP responder (one process) answering every A query
- icmp:  echo to 127.0.0.x (the kernel answers)
- grpc:  a grpc.aio health server answering SERVING
- heartbeat: a pusher process that POSTs each target's beat once per interval
  to slamon's /api/v1/push (slamon's cost of taking the beats is counted)

    python bench/kinds_bench.py --targets 1000 --duration 60
    python bench/kinds_bench.py --kinds http,dns --targets 200 --duration 15   # quick

Needs: Linux, nginx, the dns/icmp/grpc extras installed. Traffic stays on
127.0.0.0/8. Prints one row per kind and writes bench/results/kinds-*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from farm import nginx_farm

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("http", "https", "h2", "tcp", "dns", "icmp", "grpc", "heartbeat")
TOKEN_PREFIX = "bench-heartbeat-token-"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def probes_done(base: str) -> tuple[float, float]:
    """(probes completed, of which failed) so far, from slamon_probes_total."""
    with urllib.request.urlopen(base + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    done = failed = 0.0
    for line in text.splitlines():
        if line.startswith("slamon_probes_total{") and 'result="missed"' not in line:
            value = float(line.rsplit(" ", 1)[1])
            done += value
            failed += value if 'result="failure"' in line else 0.0
    return done, failed


@contextlib.contextmanager
def child(argv: list[str], log: Path, env: dict[str, str] | None = None
          ) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


# --------------------------------------------------------------- servers

def dns_server(port: int) -> None:
    """Answers every query with one A record (runs as a child process)."""
    import asyncio

    import dns.message
    import dns.rrset

    class Answer(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            name = query.question[0].name
            reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "127.0.0.1"))
            self.transport.sendto(reply.to_wire(), addr)  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(Answer, local_addr=("127.0.0.1", port))
        await asyncio.Event().wait()

    asyncio.run(main())


def grpc_server(port: int) -> None:
    import asyncio

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    async def main() -> None:
        server = grpc.aio.server()
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def pusher(spec: str) -> None:
    """POSTs every target's beat once per interval, spread evenly (a child process)."""
    import asyncio

    import aiohttp

    cfg = json.loads(Path(spec).read_text())
    urls, interval = cfg["urls"], cfg["interval"]

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            start = time.monotonic()
            k = 0
            while True:
                for i, url in enumerate(urls):
                    due = start + (k + i / len(urls)) * interval
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.post(url) as resp:
                            await resp.read()
                k += 1

    asyncio.run(main())


# --------------------------------------------------------------- one kind

def target(kind: str, i: int, ports: dict[str, object]) -> str:
    if kind in ("https", "h2"):
        urls, ca = ports["tls_urls"], ports["ca_file"]
        assert isinstance(urls, list)
        h2 = ", http2: true" if kind == "h2" else ""
        return (f"  - {{id: t{i}, kind: http, interval: {{iv}}, timeout: {{to}}, "
                f'http: {{url: "{urls[i]}", ca_file: "{ca}"{h2}}}}}')
    head = f"  - {{id: t{i}, kind: {kind}, interval: {{iv}}, timeout: {{to}}, "
    if kind == "http":
        urls = ports["urls"]
        assert isinstance(urls, list)
        return head + f'http: {{url: "{urls[i]}"}}}}'
    if kind == "tcp":
        p = ports["tcp"]
        assert isinstance(p, list)
        return head + f"tcp: {{host: 127.0.0.1, port: {p[i % len(p)]}}}}}"
    if kind == "dns":
        return head + f'dns: {{server: "127.0.0.1:{ports["dns"]}", query_name: t{i}.bench.}}}}'
    if kind == "icmp":
        return head + f"icmp: {{host: 127.0.{(i // 250) % 250}.{i % 250 + 1}}}}}"
    if kind == "grpc":
        return head + f"grpc: {{host: 127.0.0.1, port: {ports['grpc']}}}}}"
    return head + f'heartbeat: {{token: "{TOKEN_PREFIX}{i:06d}", grace: 2s}}}}'


def run_kind(kind: str, args: argparse.Namespace, work: Path,
             ports: dict[str, object]) -> dict[str, object]:
    n, interval = args.targets, args.interval
    port = free_port()
    ports = dict(ports)
    servers: list[list[str]] = []
    if kind == "dns":
        ports["dns"] = free_port()
        servers.append([sys.executable, __file__, "--dns-server", str(ports["dns"])])
    if kind == "grpc":
        ports["grpc"] = free_port()
        servers.append([sys.executable, __file__, "--grpc-server", str(ports["grpc"])])
    lines = [f'server: {{listen: "127.0.0.1:{port}"}}', "logging: {level: warning}",
             f'state: {{path: "{work}/{kind}.sqlite3"}}', "targets:"]
    timeout = f"{min(5.0, interval / 2):g}s"
    lines += [target(kind, i, ports).replace("{iv}", f"{interval:g}s").replace("{to}", timeout)
              for i in range(n)]
    lines.append("slos:")
    lines += [f"  - {{id: s{i}, targets: [t{i}], objective: 0.99}}" for i in range(n)]
    cfg = work / f"{kind}.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    base = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        for argv in servers:
            stack.enter_context(child(argv, work / f"{kind}-server.log"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLAMON_")}
        proc = stack.enter_context(child(
            [sys.executable, "-m", "slamon", "run", "-c", str(cfg)], work / f"{kind}.log",
            env=env))
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                return {"kind": kind, "error": f"not ready, see {work}/{kind}.log"}
            time.sleep(0.2)
        if kind == "heartbeat":
            spec = work / "push.json"
            spec.write_text(json.dumps({
                "urls": [f"{base}/api/v1/push/{TOKEN_PREFIX}{i:06d}" for i in range(n)],
                "interval": interval}))
            stack.enter_context(child([sys.executable, __file__, "--pusher", str(spec)],
                                      work / "pusher.log"))
        time.sleep(args.warmup)
        cpu0, (done0, fail0), t0 = cpu_seconds(proc.pid), probes_done(base), time.monotonic()
        time.sleep(args.duration)
        cpu1, (done1, fail1), t1 = cpu_seconds(proc.pid), probes_done(base), time.monotonic()
        rss = rss_mb(proc.pid)
    probes = done1 - done0
    return {"kind": kind, "targets": n, "interval": interval, "seconds": round(t1 - t0, 1),
            "probes": probes, "failed": fail1 - fail0, "cpu_seconds": round(cpu1 - cpu0, 3),
            "cpu_per_1k_probes": round((cpu1 - cpu0) / probes * 1000, 3) if probes else None,
            "rss_mb": round(rss, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--dns-server", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--grpc-server", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--pusher", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dns_server:
        return dns_server(args.dns_server)
    if args.grpc_server:
        return grpc_server(args.grpc_server)
    if args.pusher:
        return pusher(args.pusher)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="kinds-", dir=results_dir))
    rows = []
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(work / "cert.pem"))
    cert.private_key_pem.write_to_path(str(work / "key.pem"))
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    with nginx_farm(20) as farm, nginx_farm(
            20, tls=(str(work / "cert.pem"), str(work / "key.pem"))) as tls_farm:
        urls = farm.urls(args.targets)
        ports: dict[str, object] = {
            "urls": urls, "tcp": sorted({int(u.split(":")[2].split("/")[0]) for u in urls}),
            "tls_urls": tls_farm.urls(args.targets), "ca_file": str(work / "ca.pem")}
        for kind in kinds:
            row = run_kind(kind, args, work, ports)
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = work.with_suffix(".json")
    out.write_text(json.dumps({"argv": sys.argv[1:], "rows": rows}, indent=2))
    print(f"\n{'kind':<10} {'targets':>7} {'probes':>8} {'failed':>7} {'CPU s':>7} "
          f"{'CPU s/1k':>9} {'RSS MB':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['kind']:<10} error: {r['error']}")
            continue
        print(f"{r['kind']:<10} {r['targets']:>7} {r['probes']:>8.0f} {r['failed']:>7.0f} "
              f"{r['cpu_seconds']:>7} {r['cpu_per_1k_probes']!s:>9} {r['rss_mb']:>7}")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
