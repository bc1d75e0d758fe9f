"""Loopback HTTP target farm: nginx (Debian package) on many ports of 127.0.0.1.

Every target is a distinct URL ``http://127.0.0.1:<port>/t/<i>``, spread
round-robin over ``ports`` listening ports so fresh connections do not pile up
on one 4-tuple space (TIME_WAIT). nginx runs in the foreground (``daemon off``)
with its own config, pid file, error log and temp paths in a temp directory,
in its own process group, and is killed when the context exits.

Standalone use (serves until Ctrl-C or --seconds elapse)::

    python bench/farm.py --ports 20 --seconds 60
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONF = """\
worker_processes {workers};
worker_rlimit_nofile 65536;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
{user}
events {{
    worker_connections 16384;
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_timeout 0;
    default_type text/plain;
    server {{
{listens}
{tls}
        location /t/ {{ return 200 "OK\\n"; }}
        location / {{ return 404; }}
    }}
}}
"""


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (bound then released; tiny race window)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Farm:
    ports: list[int]
    tmp: Path
    proc: subprocess.Popen[bytes]
    scheme: str = "http"

    def url(self, i: int) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports[i % len(self.ports)]}/t/{i}"

    def urls(self, n: int) -> list[str]:
        return [self.url(i) for i in range(n)]

    @property
    def pids(self) -> list[int]:
        """nginx master and workers (for reporting their CPU separately)."""
        out = [self.proc.pid]
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{self.proc.pid}/task").iterdir():
                kids = (child / "children").read_text().split()
                out.extend(int(k) for k in kids)
        return out


def _wait_up(port: int, proc: subprocess.Popen[bytes], deadline: float, tls: bool) -> None:
    url = f"http://127.0.0.1:{port}/t/0"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        if tls:  # listening is enough: the certificate is the caller's
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
        else:
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.05)
    raise RuntimeError("nginx did not answer within the deadline")


@contextlib.contextmanager
def nginx_farm(n_ports: int = 20, workers: int = 1, tls: tuple[str, str] | None = None
               ) -> Iterator[Farm]:
    """`tls`: (certificate, key) PEM files: the ports then speak TLS with HTTP/2 and
    HTTP/1.1 by ALPN (the URLs become https)."""
    tmp = Path(tempfile.mkdtemp(prefix="slamon-farm-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        ports = free_ports(n_ports)
        mode = " ssl http2" if tls else ""
        listens = "\n".join(f"        listen 127.0.0.1:{p}{mode} backlog=4096 reuseport;"
                            for p in ports)
        tls_lines = (f"        ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]};"
                     if tls else "")
        user = "user root;" if os.geteuid() == 0 else ""
        conf = tmp / "nginx.conf"
        conf.write_text(CONF.format(workers=workers, tmp=tmp, user=user, listens=listens,
                                    tls=tls_lines))
        with (tmp / "stderr.log").open("wb") as err:
            proc = subprocess.Popen(
                [NGINX, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        _wait_up(ports[0], proc, time.monotonic() + 10, tls is not None)
        yield Farm(ports, tmp, proc, "https" if tls else "http")
    finally:
        if proc is not None:
            stop_group(proc, grace=5)
        shutil.rmtree(tmp, ignore_errors=True)


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group of `proc` (started with start_new_session), then
    SIGKILL it if `proc` has not exited after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ports", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60.0, help="serve this long, then stop")
    args = ap.parse_args()
    with nginx_farm(args.ports, args.workers) as farm:
        print(f"nginx pid {farm.proc.pid} on ports {farm.ports}; e.g. {farm.url(7)}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(args.seconds)


if __name__ == "__main__":
    main()
