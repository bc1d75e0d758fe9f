"""TCP prober against real loopback servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
import trustme

from slamon.probers import get_prober
from slamon.probers.base import FailureReason, ProbeResult
from slamon.probers.tcp import probe
from tests.loops import both_loops  # noqa: F401  (every test here on both loops)
from tests.misbehaving import HOST, RawTcpServer, http_target, server_ssl_context, tcp_target

EPS = 0.15


# Deprecated in pytest-asyncio 1.5 in favour of the pytest_asyncio_loop_factories hook,
# which only a conftest can provide and which would apply to every test module.
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')



async def run(port: int, host: str = HOST, timeout: float = 2.0, **tcp: object) -> ProbeResult:
    return await probe(tcp_target(host, port, timeout=timeout, **tcp), timeout)


def failed(result: ProbeResult, reason: FailureReason) -> None:
    assert not result.ok, result
    assert result.reason is reason, result


async def test_connect_only(raw_tcp: RawTcpServer) -> None:
    r = await run(raw_tcp.port)
    assert r.ok, r
    assert "connect" in r.phases and "dns" not in r.phases


async def test_banner_expect(raw_tcp: RawTcpServer) -> None:
    r = await run(raw_tcp.port, expect="^220 ")
    assert r.ok, r
    assert {"connect", "processing"} <= r.phases.keys()
    assert r.body_bytes > 0


async def test_send_and_expect(raw_tcp: RawTcpServer) -> None:
    r = await run(raw_tcp.port, send="PING\r\n", expect="PONG")
    assert r.ok, r


async def test_send_without_expect_is_delivered(raw_tcp: RawTcpServer) -> None:
    r = await run(raw_tcp.port, send="QUIT\r\n")
    assert r.ok, r
    await asyncio.wait_for(raw_tcp.got_line.wait(), 2)
    assert raw_tcp.lines == [b"QUIT\r\n"]


async def test_dns_phase_and_failure(raw_tcp: RawTcpServer) -> None:
    r = await run(raw_tcp.port, host="localhost", ip_family="ipv4", expect="^220")
    assert r.ok, r
    assert "dns" in r.phases
    failed(await run(raw_tcp.port, host="no-such-host.invalid"), FailureReason.DNS)


async def test_refused(refused_port: int) -> None:
    failed(await run(refused_port), FailureReason.REFUSED)


async def test_reset(raw_tcp: RawTcpServer) -> None:
    raw_tcp.set_mode("reset")
    failed(await run(raw_tcp.port, expect="^220"), FailureReason.RESET)


async def test_expect_mismatch_at_eof(raw_tcp: RawTcpServer) -> None:
    raw_tcp.set_mode("close")
    r = await run(raw_tcp.port, expect="^220")
    failed(r, FailureReason.BODY)
    assert "connection closed" in r.detail


async def test_expect_mismatch_read_limit(raw_tcp: RawTcpServer) -> None:
    raw_tcp.set_mode("flood")
    r = await run(raw_tcp.port, expect="^220", read_limit=10_000)
    failed(r, FailureReason.BODY)
    assert "read_limit" in r.detail
    assert r.body_bytes == 10_000


async def test_silent_server_times_out_in_budget(raw_tcp: RawTcpServer) -> None:
    raw_tcp.set_mode("silent")
    t0 = time.perf_counter()
    r = await run(raw_tcp.port, timeout=0.3, expect="^220")
    failed(r, FailureReason.TIMEOUT)
    assert r.detail == "timeout after 300ms in phase processing"
    assert r.duration <= 0.3 + EPS
    assert time.perf_counter() - t0 <= 0.3 + EPS


async def test_tls_handshake_stall(raw_tcp: RawTcpServer) -> None:
    raw_tcp.set_mode("silent")
    r = await run(raw_tcp.port, timeout=0.3, tls=True)
    failed(r, FailureReason.TIMEOUT)
    assert r.detail == "timeout after 300ms in phase tls"
    assert r.duration <= 0.3 + EPS


async def test_tls_verify(raw_tcp_tls: RawTcpServer, ca_file: str) -> None:
    failed(await run(raw_tcp_tls.port, tls=True, expect="^220"), FailureReason.TLS)
    r = await run(raw_tcp_tls.port, tls=True, ca_file=ca_file, expect="^220")
    assert r.ok, r
    assert {"connect", "tls", "processing"} <= r.phases.keys()
    assert r.cert_expiry is not None and r.cert_expiry > time.time()
    r = await run(raw_tcp_tls.port, tls=True, ca_file=ca_file, server_name="wrong.example")
    failed(r, FailureReason.TLS)
    r = await run(raw_tcp_tls.port, tls=True, tls_verify=False)
    assert r.ok, r
    assert r.cert_expiry is not None


async def test_tls_min_validity(tls_ca: trustme.CA, ca_file: str) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    async with RawTcpServer(ssl_context=server_ssl_context(tls_ca, soon)) as server:
        r = await run(server.port, tls=True, ca_file=ca_file, min_cert_validity="7d")
        failed(r, FailureReason.TLS)
        assert r.detail == "certificate expires in 2d (min_cert_validity 7d)"
        assert (await run(server.port, tls=True, ca_file=ca_file, min_cert_validity="1d")).ok


async def test_missing_ca_file_is_tls(raw_tcp_tls: RawTcpServer) -> None:
    r = await run(raw_tcp_tls.port, tls=True, ca_file="/nonexistent/ca.pem")
    failed(r, FailureReason.TLS)


async def test_never_raises_on_wrong_kind() -> None:
    failed(await probe(http_target("http://127.0.0.1:1/"), 1.0), FailureReason.OTHER)


def test_registry() -> None:
    assert get_prober("tcp") is probe
