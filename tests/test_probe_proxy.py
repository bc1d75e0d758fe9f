"""HTTP(S) through a proxy: CONNECT for https, the absolute URL for http, Basic
credentials, a proxy that refuses, on both event loops; `slamon probe --proxy`."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from pydantic import ValidationError

from slamon.probers import http
from slamon.probers.base import FailureReason
from tests.loops import both_loops  # noqa: F401  (every test here on both loops)
from tests.misbehaving import MisbehavingHttpServer, http_target
from tests.proxy_server import ProxyServer
from tests.test_reload import slamon_env

pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')



async def test_https_through_connect(misbehaving_https: MisbehavingHttpServer,
                                     ca_file: str) -> None:
    async with ProxyServer() as proxy:
        url = misbehaving_https.url("/ok")
        r = await http.probe(http_target(url, ca_file=ca_file, proxy=proxy.url,
                                         body_contains=["OK"]), 2.0)
        assert r.ok, r
        assert r.cert_expiry is not None  # TLS end to end, with the origin's certificate
        assert proxy.requests == [f"CONNECT 127.0.0.1:{misbehaving_https.port} HTTP/1.1"]


async def test_http_through_absolute_form(misbehaving_http: MisbehavingHttpServer) -> None:
    async with ProxyServer() as proxy:
        url = misbehaving_http.url("/ok?x=1")
        r = await http.probe(http_target(url, proxy=proxy.url, body_contains=["OK"]), 2.0)
        assert r.ok, r
        assert proxy.requests == [f"GET http://127.0.0.1:{misbehaving_http.port}/ok?x=1 HTTP/1.1"]


async def test_proxy_credentials(misbehaving_http: MisbehavingHttpServer,
                                 misbehaving_https: MisbehavingHttpServer, ca_file: str) -> None:
    async with ProxyServer(user="probe", password="s3cret") as proxy:
        good = proxy.url.replace("http://", "http://probe:s3cret@")
        bad = proxy.url.replace("http://", "http://probe:wrong@")
        r = await http.probe(http_target(misbehaving_https.url("/ok"), ca_file=ca_file,
                                         proxy=good), 2.0)
        assert r.ok, r
        r = await http.probe(http_target(misbehaving_http.url("/ok"), proxy=good), 2.0)
        assert r.ok, r
        r = await http.probe(http_target(misbehaving_https.url("/ok"), ca_file=ca_file,
                                         proxy=bad), 2.0)
        assert not r.ok and r.reason is FailureReason.PROXY, r
        assert "407" in r.detail and "s3cret" not in r.detail and "wrong" not in r.detail


async def test_refused_and_dead_proxy(misbehaving_https: MisbehavingHttpServer,
                                      ca_file: str) -> None:
    async with ProxyServer(refuse_connect=True) as proxy:
        r = await http.probe(http_target(misbehaving_https.url("/ok"), ca_file=ca_file,
                                         proxy=proxy.url), 2.0)
    assert not r.ok and r.reason is FailureReason.PROXY, r
    assert "403" in r.detail
    from tests.misbehaving import free_port

    r = await http.probe(http_target(misbehaving_https.url("/ok"), ca_file=ca_file,
                                     proxy=f"http://127.0.0.1:{free_port()}"), 2.0)
    assert not r.ok and r.reason is FailureReason.REFUSED, r


@pytest.mark.parametrize("value", ["https://127.0.0.1:3128", "http://127.0.0.1",
                                   "http://127.0.0.1:3128/path", "socks5://h:1"])
def test_bad_proxy_url_is_refused_without_quoting_it(value: str) -> None:
    with pytest.raises(ValidationError) as err:
        http_target("http://127.0.0.1/", proxy=value.replace("//", "//u:pw@"))
    # what the loader shows is the message and the key, never the value
    messages = " ".join(e["msg"] for e in err.value.errors())
    assert "proxy" in messages and "pw" not in messages


def test_cli_probe_proxy() -> None:
    async def run() -> tuple[subprocess.CompletedProcess[str], list[str]]:
        async with ProxyServer() as proxy, MisbehavingHttpServer() as origin:
            res = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "slamon", "probe", origin.url("/ok"),
                 "--proxy", proxy.url],
                capture_output=True, text=True, env=slamon_env(None), timeout=60, check=False)
            return res, proxy.requests

    res, requests = asyncio.run(run())
    assert res.returncode == 0 and res.stdout.startswith("OK "), (res.stdout, res.stderr)
    assert len(requests) == 1 and requests[0].startswith("GET http://")
