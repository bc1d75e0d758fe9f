"""HTTP/2 where a target asks for it (`http2: true`), on both event loops: against
nginx (an independent HTTP/2 server) and against an `h2` server that resets,
sends GOAWAY, garbage, stops mid-body or hangs; through a CONNECT proxy; and
`valid_http_versions`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest
import trustme
from pydantic import ValidationError

from slamon.config.targets import missing_library
from slamon.probers import http
from slamon.probers._h2 import Pending, h2_request
from slamon.probers.base import FailureReason, ProbeResult
from tests.h2_servers import BIG, MARKER, MisbehavingH2Server, Nginx, nginx_h2
from tests.loops import both_loops  # noqa: F401  (every test here on both loops)
from tests.misbehaving import MisbehavingHttpServer, http_target
from tests.proxy_server import ProxyServer
from tests.test_reload import slamon_env

pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')


@pytest.fixture(scope="module")
def nginx(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx_h2(tls_ca, tmp_path_factory.mktemp("nginx")) as server:
        yield server


def failed(r: ProbeResult, reason: FailureReason, detail: str | None = None) -> None:
    assert not r.ok, r
    assert r.reason is reason, r
    if detail is not None:
        assert detail in r.detail, r


async def test_h2_against_nginx(nginx: Nginx, ca_file: str) -> None:
    marker = MARKER.decode()
    r = await http.probe(http_target(nginx.url("/ok"), ca_file=ca_file, http2=True,
                                     body_contains=[marker]), 2.0)
    assert r.ok, r
    assert r.http_version == "2.0" and r.status_code == 200
    assert set(r.phases) >= {"connect", "tls", "processing", "transfer"}
    assert r.tls is not None and r.tls.version.startswith("TLS")
    # the same server without http2 is probed with HTTP/1.1: the switch decides
    r = await http.probe(http_target(nginx.url("/ok"), ca_file=ca_file,
                                     body_contains=[marker]), 2.0)
    assert r.ok and r.http_version == "1.1", r


async def test_h2_status_redirect_head_and_post(nginx: Nginx, ca_file: str) -> None:
    r = await http.probe(http_target(nginx.url("/down"), ca_file=ca_file, http2=True), 2.0)
    failed(r, FailureReason.STATUS, "status 503")
    assert r.http_version == "2.0"
    r = await http.probe(http_target(nginx.url("/moved"), ca_file=ca_file, http2=True,
                                     body_contains=[MARKER.decode()]), 2.0)
    assert r.ok and r.redirects == 1, r
    r = await http.probe(http_target(nginx.url("/ok"), ca_file=ca_file, http2=True,
                                     method="HEAD"), 2.0)
    assert r.ok and r.http_version == "2.0" and r.body_bytes == 0, r
    r = await http.probe(http_target(nginx.url("/post"), ca_file=ca_file, http2=True,
                                     method="POST", body="y" * 200_000,
                                     body_contains=["posted"]), 3.0)
    assert r.ok, r


async def test_h2_large_body_is_read_to_the_end(nginx: Nginx, ca_file: str) -> None:
    """5 MiB over HTTP/2: flow control acknowledged as it arrives, the assertions see
    the first body_limit bytes, the page is up; max_body_size still fails it."""
    url = nginx.url("/static/big.txt")
    r = await http.probe(http_target(url, ca_file=ca_file, http2=True,
                                     body_contains=[MARKER.decode()]), 5.0)
    assert r.ok, r
    assert r.body_bytes == BIG and r.http_version == "2.0"
    r = await http.probe(http_target(url, ca_file=ca_file, http2=True,
                                     max_body_size="1MiB"), 5.0)
    failed(r, FailureReason.TOO_LARGE, "Content-Length 5242880 larger than max_body_size 1MiB")


async def test_valid_http_versions(nginx: Nginx, ca_file: str) -> None:
    url = nginx.url("/ok")
    r = await http.probe(http_target(url, ca_file=ca_file,
                                     valid_http_versions=["HTTP/2.0"]), 2.0)
    failed(r, FailureReason.HTTP_VERSION, "HTTP/1.1 not in HTTP/2.0")
    r = await http.probe(http_target(url, ca_file=ca_file, http2=True,
                                     valid_http_versions=["HTTP/2.0"]), 2.0)
    assert r.ok, r
    r = await http.probe(http_target(url, ca_file=ca_file, http2=True,
                                     valid_http_versions=["HTTP/1.1"]), 2.0)
    failed(r, FailureReason.HTTP_VERSION, "HTTP/2.0 not in HTTP/1.1")


async def test_h2_through_connect_proxy(nginx: Nginx, ca_file: str) -> None:
    async with ProxyServer() as proxy:
        r = await http.probe(http_target(nginx.url("/ok"), ca_file=ca_file, http2=True,
                                         proxy=proxy.url), 2.0)
        assert r.ok and r.http_version == "2.0", r
        assert proxy.requests == [f"CONNECT 127.0.0.1:{nginx.port} HTTP/1.1"]


async def test_server_without_h2_gets_http11(misbehaving_https: MisbehavingHttpServer,
                                            ca_file: str) -> None:
    """ALPN offers h2 and http/1.1; a server that picks http/1.1 is spoken to in it."""
    r = await http.probe(http_target(misbehaving_https.url("/ok"), ca_file=ca_file,
                                     http2=True, body_contains=["OK"]), 2.0)
    assert r.ok and r.http_version == "1.1", r


async def test_request_fields(tls_ca: trustme.CA, ca_file: str) -> None:
    async with MisbehavingH2Server(tls_ca) as server:
        r = await http.probe(http_target(server.url("/p?q=1"), ca_file=ca_file, http2=True,
                                         headers={"X-Team": "sre", "Connection": "x"},
                                         body_contains=["h2 ok"]), 2.0)
        assert r.ok and r.http_version == "2.0", r
        fields, size = server.requests[0]
        assert fields[":method"] == "GET" and fields[":path"] == "/p?q=1"
        assert fields[":scheme"] == "https"
        assert fields[":authority"] == f"127.0.0.1:{server.port}"
        assert fields["x-team"] == "sre" and fields["user-agent"].startswith("slamon/")
        assert "connection" not in fields and "host" not in fields and size == 0
        # a request body larger than the initial flow-control window (64 KiB) goes out
        # as the server's WINDOW_UPDATEs allow; the server answers once it has it all
        r = await http.probe(http_target(server.url("/p"), ca_file=ca_file, http2=True,
                                         method="POST", body="y" * 200_000), 2.0)
        assert r.ok, r
        fields, size = server.requests[1]
        assert fields[":method"] == "POST" and fields["content-length"] == "200000"
        assert size == 200_000


async def test_an_answer_before_the_whole_request_body_ends_the_probe(
    tls_ca: trustme.CA, ca_file: str
) -> None:
    """RFC 9113 8.1: a server may answer before it has read the request body, then reset
    the stream with NO_ERROR (nginx does, on a `return`). The probe takes the answer: the
    client stops sending, and a window update that arrives with the reset does not make
    it write on the closed stream."""
    async with MisbehavingH2Server(tls_ca, "answer_early") as server:
        r = await http.probe(http_target(server.url("/post"), ca_file=ca_file, http2=True,
                                         method="POST", body="y" * 200_000,
                                         body_contains=["posted"]), 2.0)
        assert r.ok and r.http_version == "2.0", r
        [(fields, size)] = server.requests
        assert fields[":method"] == "POST" and 0 < size < 200_000


async def test_graceful_goaway_lets_the_stream_finish(tls_ca: trustme.CA, ca_file: str) -> None:
    """RFC 9113 6.8: streams up to the GOAWAY's last stream id may still complete."""
    async with MisbehavingH2Server(tls_ca, "goaway_graceful") as server:
        r = await http.probe(http_target(server.url("/"), ca_file=ca_file, http2=True,
                                         body_contains=["h2 ok"]), 1.0)
        assert r.ok and r.http_version == "2.0", r


@pytest.mark.parametrize(("mode", "reason", "detail"), [
    ("reset", FailureReason.RESET, "server reset the HTTP/2 stream (INTERNAL_ERROR)"),
    ("goaway", FailureReason.RESET, "GOAWAY ENHANCE_YOUR_CALM"),
    ("garbage", FailureReason.OTHER, "malformed HTTP/2 response"),
    ("close_mid_body", FailureReason.RESET, "connection closed before end of response"),
    ("hang_body", FailureReason.TIMEOUT, "transfer"),
])
async def test_misbehaving_h2_server(tls_ca: trustme.CA, ca_file: str, mode: str,
                                     reason: FailureReason, detail: str) -> None:
    async with MisbehavingH2Server(tls_ca, mode) as server:  # type: ignore[arg-type]
        r = await http.probe(http_target(server.url("/"), ca_file=ca_file, http2=True), 1.0)
        failed(r, reason, detail)


def test_h2_request_translation() -> None:
    raw = (b"POST /a?b HTTP/1.1\r\nHost: example.test:8443\r\nUser-Agent: u\r\n"
           b"Connection: close\r\nTransfer-Encoding: x\r\nX-Odd: a: b\r\n"
           b"Content-Length: 2\r\n\r\nhi")
    fields, body = h2_request(raw, https=True)
    assert fields == [(b":method", b"POST"), (b":scheme", b"https"),
                      (b":authority", b"example.test:8443"), (b":path", b"/a?b"),
                      (b"user-agent", b"u"), (b"x-odd", b"a: b"), (b"content-length", b"2")]
    assert body == b"hi"


def test_config_keys() -> None:
    with pytest.raises(ValidationError, match="valid_http_versions"):
        http_target("https://127.0.0.1/", valid_http_versions=["HTTP/3"])
    assert http_target("https://127.0.0.1/").http.http2 is False  # type: ignore[union-attr]
    # the message a core install (no h2) gets for http2: true
    assert missing_library("no_such_module_h9", "h2", "http2", "http2: true") == (
        "http2: true needs h2, which is not installed: pip install 'slamon[http2]'")


def test_cli_probe_http2(nginx: Nginx, ca_file: str) -> None:
    out = {}
    for flags in ((), ("--http2",)):
        res = subprocess.run([sys.executable, "-m", "slamon", "probe", nginx.url("/ok"),
                              "--ca-file", ca_file, *flags], capture_output=True, text=True,
                             env=slamon_env(None), timeout=60, check=False)
        assert res.returncode == 0, (res.stdout, res.stderr)
        out[flags] = res.stdout
    assert out[()].startswith(f"OK {nginx.url('/ok')} 200 HTTP/1.1 in ")
    assert out[("--http2",)].startswith(f"OK {nginx.url('/ok')} 200 HTTP/2.0 in ")
    res = subprocess.run([sys.executable, "-m", "slamon", "probe", nginx.url("/down"),
                          "--ca-file", ca_file, "--http2"], capture_output=True, text=True,
                         env=slamon_env(None), timeout=60, check=False)
    assert res.returncode == 1 and "503 HTTP/2.0 reason=status" in res.stdout, res.stdout


def test_bytes_before_the_protocol_is_chosen_are_replayed_in_order() -> None:
    """What arrives between the TLS handshake and the ALPN decision (a server's SETTINGS,
    even its EOF) reaches the protocol chosen, in order, after its request is sent."""
    seen: list[object] = []

    class Recorder(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            seen.append("made")

        def data_received(self, data: bytes) -> None:
            seen.append(data)

        def eof_received(self) -> bool | None:
            seen.append("eof")
            return None

        def connection_lost(self, exc: Exception | None) -> None:
            seen.append(("lost", exc))

    class Transport(asyncio.Transport):
        def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
            seen.append("set")

    pending = Pending()
    pending.data_received(b"\x00\x00\x06\x04")
    pending.data_received(b"rest")
    pending.eof_received()
    pending.connection_lost(None)
    proto = Recorder()
    pending.hand_over(Transport(), proto)
    assert seen == ["set", "made"]  # nothing replayed before the caller sends its request
    pending.replay(proto)
    assert seen == ["set", "made", b"\x00\x00\x06\x04", b"rest", "eof", ("lost", None)]
