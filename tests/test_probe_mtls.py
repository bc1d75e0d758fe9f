"""Client certificates (mTLS): a loopback TLS server that requires one, for the HTTP
and the TCP prober on both event loops, and `slamon probe --cert/--key`."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from slamon.probers import http, tcp
from slamon.probers.base import FailureReason
from tests.loops import both_loops  # noqa: F401  (every test here on both loops)
from tests.misbehaving import (
    HOST,
    MisbehavingHttpServer,
    RawTcpServer,
    http_target,
    server_ssl_context,
    tcp_target,
)
from tests.test_reload import slamon_env

pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')



class Pki:
    def __init__(self, tmp: Path) -> None:
        self.server_ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.ca_file = str(tmp / "server-ca.pem")
        self.server_ca.cert_pem.write_to_path(self.ca_file)
        client = self.client_ca.issue_cert("probe@slamon.test")
        self.cert_file = str(tmp / "client.pem")
        self.key_file = str(tmp / "client.key")
        self.both_file = str(tmp / "client-with-key.pem")
        client.cert_chain_pems[0].write_to_path(self.cert_file)
        client.private_key_pem.write_to_path(self.key_file)
        client.private_key_and_cert_chain_pem.write_to_path(self.both_file)
        stranger = trustme.CA().issue_cert("someone@else.test")
        self.stranger_file = str(tmp / "stranger.pem")
        stranger.private_key_and_cert_chain_pem.write_to_path(self.stranger_file)

    def server_context(self) -> ssl.SSLContext:
        ctx = server_ssl_context(self.server_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.client_ca.configure_trust(ctx)
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def mtls_http(pki: Pki) -> AsyncIterator[MisbehavingHttpServer]:
    async with MisbehavingHttpServer(pki.server_context()) as server:
        yield server


async def test_http_presents_the_client_certificate(
    pki: Pki, mtls_http: MisbehavingHttpServer
) -> None:
    url = mtls_http.url("/ok")
    r = await http.probe(http_target(url, ca_file=pki.ca_file, cert_file=pki.cert_file,
                                     key_file=pki.key_file), 2.0)
    assert r.ok, r
    r = await http.probe(http_target(url, ca_file=pki.ca_file, cert_file=pki.both_file), 2.0)
    assert r.ok, r
    # no certificate, or one the server does not trust: the server refuses the handshake
    for extra in ({}, {"cert_file": pki.stranger_file}):
        r = await http.probe(http_target(url, ca_file=pki.ca_file, **extra), 2.0)
        assert not r.ok, (extra, r)
        assert r.reason in (FailureReason.TLS, FailureReason.RESET), r


async def test_tcp_presents_the_client_certificate(pki: Pki) -> None:
    async with RawTcpServer(ssl_context=pki.server_context()) as server:
        r = await tcp.probe(tcp_target(HOST, server.port, tls=True, ca_file=pki.ca_file,
                                       cert_file=pki.cert_file, key_file=pki.key_file,
                                       expect="^220 "), 2.0)
        assert r.ok, r
        r = await tcp.probe(tcp_target(HOST, server.port, tls=True, ca_file=pki.ca_file,
                                       expect="^220 "), 2.0)
        assert not r.ok, r


async def test_unreadable_client_certificate_is_a_clear_tls_failure(
    pki: Pki, mtls_http: MisbehavingHttpServer, tmp_path: Path
) -> None:
    url = mtls_http.url("/ok")
    missing = str(tmp_path / "nope.pem")
    r = await http.probe(http_target(url, ca_file=pki.ca_file, cert_file=missing), 2.0)
    assert not r.ok and r.reason is FailureReason.TLS, r
    assert "nope.pem" in r.detail
    # a key that does not belong to the certificate: named, its content never shown
    r = await http.probe(http_target(url, ca_file=pki.ca_file, cert_file=pki.cert_file,
                                     key_file=pki.stranger_file), 2.0)
    assert not r.ok and r.reason is FailureReason.TLS, r
    assert "client certificate" in r.detail and "PRIVATE KEY" not in r.detail


def test_key_file_needs_cert_file() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="key_file"):
        http_target("https://127.0.0.1/", key_file="/k.pem")


def test_cli_probe_cert_and_key(pki: Pki) -> None:
    async def serve_and_probe() -> list[subprocess.CompletedProcess[str]]:
        async with MisbehavingHttpServer(pki.server_context()) as server:
            out = []
            for extra in (["--cert", pki.cert_file, "--key", pki.key_file], []):
                out.append(await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "slamon", "probe", server.url("/ok"),
                     "--ca-file", pki.ca_file, *extra],
                    capture_output=True, text=True, env=slamon_env(None), timeout=60,
                    check=False))
            return out

    ok, refused = asyncio.run(serve_and_probe())
    assert ok.returncode == 0 and ok.stdout.startswith("OK "), (ok.stdout, ok.stderr)
    assert refused.returncode == 1 and refused.stdout.startswith("FAIL "), refused.stdout
    assert "Traceback" not in ok.stderr + refused.stderr
