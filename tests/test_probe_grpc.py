"""gRPC prober against a real grpc.aio health server on loopback, plaintext and TLS.

The server's health status is switched between SERVING and NOT_SERVING (and
the other statuses) while it runs; other servers have no health service, never
speak HTTP/2, or present a certificate for another name.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from slamon.config.loader import ConfigError, parse_config
from slamon.config.targets import Target
from slamon.probers import get_prober
from slamon.probers.base import FailureReason, ProbeResult
from slamon.probers.grpc import probe, rpc_failure

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')

Status = health_pb2.HealthCheckResponse


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every probe test on both loops: the daemon uses uvloop, tests default to asyncio."""
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()  # type: ignore[no-any-return]
    return asyncio.DefaultEventLoopPolicy()


@dataclass
class HealthServer:
    port: int
    health: health.aio.HealthServicer

    async def set(self, service: str, status: int) -> None:
        await self.health.set(service, status)


async def start_server(host: str = "127.0.0.1", tls: trustme.CA | None = None,
                       with_health: bool = True) -> tuple[grpc.aio.Server, HealthServer]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    if with_health:
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = f"[{host}]:0" if ":" in host else f"{host}:0"
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        cert = tls.issue_cert("127.0.0.1", "localhost", "::1")
        creds = grpc.ssl_server_credentials(
            [(cert.private_key_pem.bytes(), b"".join(p.bytes() for p in cert.cert_chain_pems))])
        port = server.add_secure_port(address, creds)
    await server.start()
    hs = HealthServer(port, servicer)
    await hs.set("", Status.SERVING)
    await hs.set("pay.v1.Payments", Status.SERVING)
    return server, hs


@pytest.fixture
async def plain() -> AsyncIterator[HealthServer]:
    server, hs = await start_server()
    yield hs
    await server.stop(None)


@pytest.fixture
async def secure(tls_ca: trustme.CA) -> AsyncIterator[HealthServer]:
    server, hs = await start_server(tls=tls_ca)
    yield hs
    await server.stop(None)


def grpc_target(port: int, host: str = "127.0.0.1", timeout: float = 2.0, **grpc_spec: Any
                ) -> Target:
    return Target.model_validate({"id": "t", "kind": "grpc", "interval": 10, "timeout": timeout,
                                  "grpc": {"host": host, "port": port, **grpc_spec}})


async def run(port: int, timeout: float = 2.0, **spec: Any) -> ProbeResult:
    return await probe(grpc_target(port, timeout=timeout, **spec), timeout)


def failed(result: ProbeResult, reason: FailureReason) -> None:
    assert not result.ok, result
    assert result.reason is reason, result


# ---------------------------------------------------------------- plaintext


async def test_serving(plain: HealthServer) -> None:
    r = await run(plain.port, service="pay.v1.Payments")
    assert r.ok, r
    assert set(r.phases) == {"check"}  # an IP: no resolve phase
    assert r.facts == {"grpc_ssl": 0, "grpc_status_code": 0, "grpc_serving_status": 1}
    assert (await get_prober("grpc")(grpc_target(plain.port), 2.0)).ok  # the server as a whole


async def test_switching_serving_and_not_serving(plain: HealthServer) -> None:
    service = "pay.v1.Payments"
    for status, name in ((Status.NOT_SERVING, "NOT_SERVING"), (Status.UNKNOWN, "UNKNOWN"),
                         (Status.SERVICE_UNKNOWN, "SERVICE_UNKNOWN")):
        await plain.set(service, status)
        r = await run(plain.port, service=service)
        failed(r, FailureReason.NOT_SERVING)
        assert r.detail == f"health of service 'pay.v1.Payments': {name}"
        assert r.facts["grpc_serving_status"] == status and r.facts["grpc_status_code"] == 0
        await plain.set(service, Status.SERVING)
        assert (await run(plain.port, service=service)).ok
    await plain.set("", Status.NOT_SERVING)
    r = await run(plain.port)
    failed(r, FailureReason.NOT_SERVING)
    assert r.detail == "health of the server: NOT_SERVING"


async def test_unknown_service_is_not_found(plain: HealthServer) -> None:
    r = await run(plain.port, service="nope.v1.Nope")
    failed(r, FailureReason.GRPC_STATUS)
    assert r.detail.startswith("rpc NOT_FOUND")
    assert r.facts["grpc_status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert "grpc_serving_status" not in r.facts


async def test_server_without_health_service() -> None:
    server, hs = await start_server(with_health=False)
    try:
        r = await run(hs.port)
        failed(r, FailureReason.GRPC_STATUS)
        assert r.detail.startswith("rpc UNIMPLEMENTED"), r
        assert r.facts["grpc_status_code"] == grpc.StatusCode.UNIMPLEMENTED.value[0]
    finally:
        await server.stop(None)


async def test_refused(refused_port: int) -> None:
    r = await run(refused_port)
    failed(r, FailureReason.REFUSED)
    assert r.facts["grpc_status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]


async def test_silent_server_times_out(silent_port: int) -> None:
    """A listener that never speaks HTTP/2: the call's deadline ends the probe."""
    r = await run(silent_port, timeout=0.5)
    failed(r, FailureReason.TIMEOUT)
    assert r.duration < 1.5


async def test_by_name_and_ipv6(plain: HealthServer) -> None:
    r = await probe(grpc_target(plain.port, host="localhost", ip_family="ipv4"), 2.0)
    assert r.ok, r
    assert "resolve" in r.phases
    r = await probe(grpc_target(plain.port, host="127.0.0.1", ip_family="ipv6"), 2.0)
    failed(r, FailureReason.DNS)
    try:
        server, hs = await start_server(host="::1")
    except RuntimeError as exc:  # pragma: no cover - depends on the host
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        r = await probe(grpc_target(hs.port, host="::1"), 2.0)
        assert r.ok, r
    finally:
        await server.stop(None)


# ---------------------------------------------------------------- TLS


async def test_tls(secure: HealthServer, ca_file: str) -> None:
    r = await run(secure.port, tls=True, ca_file=ca_file, service="pay.v1.Payments")
    assert r.ok, r
    assert r.facts["grpc_ssl"] == 1
    await secure.set("pay.v1.Payments", Status.NOT_SERVING)
    failed(await run(secure.port, tls=True, ca_file=ca_file, service="pay.v1.Payments"),
           FailureReason.NOT_SERVING)
    r = await probe(grpc_target(secure.port, host="localhost", ip_family="ipv4", tls=True,
                                ca_file=ca_file), 2.0)
    assert r.ok, r


async def test_tls_failures(secure: HealthServer, plain: HealthServer, ca_file: str) -> None:
    # not our CA: the system's do not know the test CA
    failed(await run(secure.port, tls=True), FailureReason.TLS)
    # a name the certificate does not carry
    failed(await run(secure.port, tls=True, ca_file=ca_file, server_name="other.example"),
           FailureReason.TLS)
    # TLS to a plaintext server
    failed(await run(plain.port, tls=True, ca_file=ca_file), FailureReason.TLS)
    # plaintext to a TLS server: it hangs up on the bytes it cannot read
    r = await run(secure.port, timeout=1.0)
    assert not r.ok and r.reason in (FailureReason.RESET, FailureReason.GRPC_STATUS,
                                     FailureReason.TIMEOUT), r
    r = await run(secure.port, tls=True, ca_file="/nonexistent/ca.pem")
    failed(r, FailureReason.TLS)
    assert "cannot read ca_file" in r.detail


def test_rpc_failure_words() -> None:
    assert rpc_failure("DEADLINE_EXCEEDED", "Deadline Exceeded")[0] is FailureReason.TIMEOUT
    assert rpc_failure("UNAVAILABLE", "Socket closed")[0] is FailureReason.RESET
    assert rpc_failure("PERMISSION_DENIED", "") == (FailureReason.GRPC_STATUS,
                                                    "rpc PERMISSION_DENIED")


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("spec", "where", "words"),
    [
        ({"host": "a", "port": 0}, "grpc.port", "greater than or equal to 1"),
        ({"host": "[::1]", "port": 1}, "grpc.host", "without brackets"),
        ({"host": "a", "port": 1, "ca_file": "x.pem"}, "grpc.ca_file", "only used with tls"),
        ({"host": "a", "port": 1, "tls_verify": False}, "grpc.tls_verify", "unknown key"),
    ],
)
def test_config_errors_name_the_key(spec: dict[str, Any], where: str, words: str) -> None:
    text = json.dumps({"targets": [{"id": "t", "kind": "grpc", "grpc": spec}]})
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert any(e.startswith(f"targets[0].{where}: ") and words in e
               for e in info.value.errors), info.value.errors


def test_docs_example_is_valid() -> None:
    import re

    doc = (REPO / "docs" / "config.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "kind: grpc" in b]
    assert len(blocks) == 1
    config = parse_config(blocks[0])
    assert {t.kind for t in config.targets} == {"grpc"}


# ---------------------------------------------------------------- slamon probe


async def slamon(*argv: str, hide: str | None = None) -> tuple[int, str, str]:
    """`slamon ARGV` in a subprocess while this loop keeps serving."""
    code = "import sys\n"
    if hide:
        code += f"sys.modules[{hide!r}] = None  # as in an install without the extra\n"
    code += "from slamon.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *argv, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_slamon_probe_grpc_url(plain: HealthServer, secure: HealthServer,
                                     ca_file: str) -> None:
    url = f"grpc://127.0.0.1:{plain.port}/pay.v1.Payments"
    rc, out, err = await slamon("probe", url)
    assert rc == 0 and out.startswith(f"OK {url}"), (out, err)
    await plain.set("pay.v1.Payments", Status.NOT_SERVING)
    rc, out, err = await slamon("probe", url)
    assert rc == 1 and "reason=not_serving" in out and "NOT_SERVING" in out, (out, err)
    rc, out, err = await slamon("probe", f"grpc://127.0.0.1:{secure.port}?tls=1",
                                "--ca-file", ca_file)
    assert rc == 0, (out, err)
    for bad, words in ((f"grpc://127.0.0.1/{plain.port}", "no port"),
                       (f"grpc://127.0.0.1:{plain.port}/?tls=maybe", "tls='maybe'")):
        rc, out, err = await slamon("probe", bad)
        assert rc == 2 and words in err, (bad, out, err)
        assert len(err.strip().splitlines()) == 1


async def test_without_grpc_one_line_names_the_extra() -> None:
    rc, out, err = await slamon("probe", "grpc://127.0.0.1:1", hide="grpc_health")
    assert rc == 2, (out, err)
    assert err.strip().splitlines() == [
        "slamon: error: kind 'grpc' needs grpcio-health-checking, which is not installed: "
        "pip install 'slamon[grpc]'"], err
