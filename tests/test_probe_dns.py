"""DNS prober against a real DNS server on 127.0.0.1 (and ::1) that misbehaves on purpose.

The server answers by query name: `ok.test` answers, `hang.test` never does,
`servfail.test`/`nx.test`/`refused.test` carry those rcodes, `big.test` sets TC
over UDP and answers in full over TCP, `cut.test` closes TCP without answering,
`junk.test` sends bytes that are no DNS message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
from pydantic import ValidationError

from slamon.config.loader import ConfigError, parse_config
from slamon.config.targets import Target
from slamon.probers import get_prober
from slamon.probers.base import FailureReason, ProbeResult
from slamon.probers.dns import answer_failure, probe
from tests.loops import both_loops  # noqa: F401  (every test here on both loops)

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')



@dataclass
class Seen:
    """What the server was asked: (transport, name, recursion desired)."""

    queries: list[tuple[str, str, bool]] = field(default_factory=list)


def answer(wire: bytes, transport: str, seen: Seen) -> bytes | None:
    """The reply to one query, by its name; None = stay silent."""
    query = dns.message.from_wire(wire)
    name = query.question[0].name.to_text()
    seen.queries.append((transport, name, bool(query.flags & dns.flags.RD)))
    reply = dns.message.make_response(query)
    if name == "hang.test.":
        return None
    if name == "junk.test.":
        return wire[:2] + b"\x81"  # the query's id, then a cut header
    if name == "servfail.test.":
        reply.set_rcode(dns.rcode.SERVFAIL)
    elif name == "nx.test.":
        reply.set_rcode(dns.rcode.NXDOMAIN)
        reply.authority.append(dns.rrset.from_text(
            "test.", 60, "IN", "SOA", "ns.test. admin.test. 2026120301 3600 600 86400 60"))
    elif name == "refused.test.":
        reply.set_rcode(dns.rcode.REFUSED)
    elif name == "soa.test.":
        reply.answer.append(dns.rrset.from_text(
            "soa.test.", 60, "IN", "SOA", "ns.test. admin.test. 2026120302 3600 600 86400 60"))
    elif name == "big.test.":
        if transport == "udp":
            reply.flags |= dns.flags.TC
        else:
            reply.answer.append(dns.rrset.from_text(
                "big.test.", 60, "IN", "A", *(f"198.51.100.{i}" for i in range(1, 61))))
    elif name == "ok.test.":
        reply.answer.append(
            dns.rrset.from_text("ok.test.", 300, "IN", "A", "192.0.2.1", "192.0.2.2"))
        reply.additional.append(dns.rrset.from_text("ns.test.", 300, "IN", "A", "192.0.2.53"))
    else:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    return reply.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        out = answer(data, "udp", self.seen)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


@dataclass
class DnsServer:
    host: str
    port: int
    seen: Seen

    @property
    def server(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def dns_server(host: str = "127.0.0.1") -> AsyncIterator[DnsServer]:
    """UDP and TCP on one port of `host`; the TCP side frames as RFC 1035 says."""
    loop = asyncio.get_running_loop()
    seen = Seen()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            wire = await reader.readexactly(size)
            if dns.message.from_wire(wire).question[0].name.to_text() == "cut.test.":
                seen.queries.append(("tcp", "cut.test.", True))
                return
            out = answer(wire, "tcp", seen)
            if out is None:
                await reader.read()  # hang until the client gives up
                return
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    # UDP takes a free port, TCP the same one: a few tries in case TCP's is taken
    for _ in range(20):
        udp, _proto = await loop.create_datagram_endpoint(lambda: _Udp(seen), local_addr=(host, 0))
        port = udp.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(handle, host, port)
        except OSError:
            udp.close()
            continue
        break
    else:  # pragma: no cover
        raise RuntimeError("no port free for both UDP and TCP")
    try:
        yield DnsServer(host, port, seen)
    finally:
        udp.close()
        tcp.close()
        for w in writers:
            w.close()
        await tcp.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    async with dns_server() as srv:
        yield srv


def dns_target(server: str, name: str, timeout: float = 2.0, **dns_spec: Any) -> Target:
    return Target.model_validate({
        "id": "t", "kind": "dns", "interval": 10, "timeout": timeout,
        "dns": {"server": server, "query_name": name, **dns_spec},
    })


async def run(srv: DnsServer, name: str, timeout: float = 2.0, **spec: Any) -> ProbeResult:
    return await probe(dns_target(srv.server, name, timeout, **spec), timeout)


def failed(result: ProbeResult, reason: FailureReason) -> None:
    assert not result.ok, result
    assert result.reason is reason, result


# ---------------------------------------------------------------- answers


async def test_answer_counts_and_phases(server: DnsServer) -> None:
    r = await run(server, "ok.test")
    assert r.ok, r
    assert r.facts == {"dns_rcode": 0, "dns_answer_rrs": 2, "dns_authority_rrs": 0,
                       "dns_additional_rrs": 1}
    # an IP literal server: no resolve phase
    assert set(r.phases) == {"connect", "request"}
    assert server.seen.queries == [("udp", "ok.test.", True)]


async def test_registered_under_its_kind(server: DnsServer) -> None:
    target = dns_target(server.server, "ok.test")
    assert (await get_prober("dns")(target, 2.0)).ok


async def test_tcp_transport(server: DnsServer) -> None:
    r = await run(server, "ok.test", transport="tcp")
    assert r.ok, r
    assert r.facts["dns_answer_rrs"] == 2
    assert [q[0] for q in server.seen.queries] == ["tcp"]


async def test_recursion_desired_off(server: DnsServer) -> None:
    assert (await run(server, "ok.test", recursion_desired=False)).ok
    assert server.seen.queries == [("udp", "ok.test.", False)]


async def test_server_by_name(server: DnsServer) -> None:
    target = dns_target(f"localhost:{server.port}", "ok.test", ip_family="ipv4")
    r = await probe(target, 2.0)
    assert r.ok, r
    assert "resolve" in r.phases


async def test_soa_serial(server: DnsServer) -> None:
    r = await run(server, "soa.test", query_type="SOA")
    assert r.ok, r
    assert r.facts["dns_serial"] == 2026120302


# ---------------------------------------------------------------- rcodes


async def test_nxdomain(server: DnsServer) -> None:
    r = await run(server, "nx.test")
    failed(r, FailureReason.NXDOMAIN)
    assert "NXDOMAIN" in r.detail and "nx.test" in r.detail
    assert r.facts["dns_rcode"] == 3 and r.facts["dns_authority_rrs"] == 1


async def test_nxdomain_expected(server: DnsServer) -> None:
    """A probe that a name stays absent: NXDOMAIN listed as valid is success."""
    assert (await run(server, "nx.test", valid_rcodes=["NXDOMAIN"])).ok
    failed(await run(server, "ok.test", valid_rcodes=["NXDOMAIN"]), FailureReason.RCODE)


async def test_servfail(server: DnsServer) -> None:
    r = await run(server, "servfail.test")
    failed(r, FailureReason.SERVFAIL)
    assert r.facts["dns_rcode"] == 2


async def test_other_rcode(server: DnsServer) -> None:
    r = await run(server, "refused.test")
    failed(r, FailureReason.RCODE)
    assert "REFUSED" in r.detail


# ---------------------------------------------------------------- answer assertions


async def test_answer_regexes(server: DnsServer) -> None:
    assert (await run(server, "ok.test", answer_matches=[r"IN A 192\.0\.2\.2$"])).ok
    assert (await run(server, "ok.test", answer_all_match=[r"IN A 192\.0\.2\.\d+$"])).ok
    r = await run(server, "ok.test", answer_matches=[r"IN A 10\."])
    failed(r, FailureReason.ANSWER)
    assert "none of 2 answer records" in r.detail
    r = await run(server, "ok.test", answer_all_match=[r"192\.0\.2\.1$"])
    failed(r, FailureReason.ANSWER)
    assert "192.0.2.2" in r.detail
    r = await run(server, "ok.test", answer_not_matches=[r"192\.0\.2\.2"])
    failed(r, FailureReason.ANSWER)


def test_answer_failure_on_no_records() -> None:
    spec = dns_target("127.0.0.1", "x.test", answer_all_match=["."]).dns
    assert spec is not None
    assert answer_failure(spec, []) == (FailureReason.ANSWER, "no answer records to match '.'")
    spec = dns_target("127.0.0.1", "x.test", answer_not_matches=["."]).dns
    assert spec is not None and answer_failure(spec, []) is None


# ---------------------------------------------------------------- misbehaviour


async def test_never_answers(server: DnsServer) -> None:
    for transport in ("udp", "tcp"):
        r = await run(server, "hang.test", timeout=0.3, transport=transport)
        failed(r, FailureReason.TIMEOUT)
        assert "in phase request" in r.detail
        assert r.duration < 1.5


async def test_truncated_udp_is_retried_over_tcp(server: DnsServer) -> None:
    r = await run(server, "big.test")
    assert r.ok, r
    assert r.facts["dns_truncated"] == 1 and r.facts["dns_answer_rrs"] == 60
    assert [q[0] for q in server.seen.queries] == ["udp", "tcp"]


async def test_tcp_closed_without_answer(server: DnsServer) -> None:
    r = await run(server, "cut.test", transport="tcp")
    failed(r, FailureReason.RESET)


async def test_malformed_answer(server: DnsServer) -> None:
    r = await run(server, "junk.test")
    failed(r, FailureReason.OTHER)
    assert r.detail.startswith("bad DNS response")


async def test_nobody_listening() -> None:
    """A closed UDP port: the ICMP unreachable fails the probe at once, not at the timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = await probe(dns_target(f"127.0.0.1:{port}", "ok.test", timeout=2.0), 2.0)
    failed(r, FailureReason.REFUSED)
    assert r.duration < 1.0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = await probe(dns_target(f"127.0.0.1:{port}", "ok.test", transport="tcp"), 2.0)
    failed(r, FailureReason.REFUSED)


async def test_unresolvable_server() -> None:
    failed(await probe(dns_target("no-such-host.invalid", "ok.test"), 2.0), FailureReason.DNS)


async def test_ipv6_server() -> None:
    try:
        ctx = dns_server("::1")
        srv = await ctx.__aenter__()
    except OSError as exc:  # pragma: no cover - depends on the host
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        r = await run(srv, "ok.test")
        assert r.ok, r
        failed(await run(srv, "ok.test", ip_family="ipv4"), FailureReason.DNS)
    finally:
        await ctx.__aexit__(None, None, None)


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("spec", "where", "words"),
    [
        ({"server": "", "query_name": "a.test"}, "dns.server", "must not be empty"),
        ({"server": "1.2.3.4:99999", "query_name": "a.test"}, "dns.server", "1-65535"),
        ({"server": "[::1", "query_name": "a.test"}, "dns.server", "[v6 address]:port"),
        ({"server": "::1", "query_name": "bad name"}, "dns.query_name", "label"),
        ({"server": "::1", "query_name": "a.test", "query_type": "AX"}, "dns.query_type",
         "unknown query type"),
        ({"server": "::1", "query_name": "a.test", "valid_rcodes": ["NOERROR", "NOPE"]},
         "dns.valid_rcodes[1]", "unknown rcode"),
        ({"server": "::1", "query_name": "a.test", "transport": "quic"}, "dns.transport", "udp"),
        ({"server": "::1", "query_name": "a.test", "answer_matches": ["("]},
         "dns.answer_matches[0]", "regular expression"),
        ({"server": "::1", "query_name": "a.test", "answer_match": ["x"]},
         "dns.answer_match", "did you mean 'answer_matches'"),
    ],
)
def test_config_errors_name_the_key(spec: dict[str, Any], where: str, words: str) -> None:
    """Through the loader, as a user sees them: one line naming the key."""
    text = json.dumps({"targets": [{"id": "t", "kind": "dns", "dns": spec}]})
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert any(e.startswith(f"targets[0].{where}: ") and words in e
               for e in info.value.errors), info.value.errors


def test_config_defaults_and_normalising() -> None:
    t = Target.model_validate({"id": "t", "kind": "dns", "dns": {
        "server": "[::1]", "query_name": "example.com.", "query_type": "aaaa",
        "valid_rcodes": "nxdomain"}})
    assert t.dns is not None
    assert t.dns.address() == ("::1", 53)
    assert t.dns.query_type == "AAAA" and t.dns.valid_rcodes == ["NXDOMAIN"]
    assert t.dns.transport == "udp" and t.dns.recursion_desired
    with pytest.raises(ValidationError, match="section required for kind 'dns'"):
        Target.model_validate({"id": "t", "kind": "dns"})
    with pytest.raises(ValidationError, match="not allowed for kind 'tcp'"):
        Target.model_validate({"id": "t", "kind": "tcp", "tcp": {"host": "a", "port": 1},
                               "dns": {"server": "::1", "query_name": "a"}})


# ---------------------------------------------------------------- slamon probe


async def slamon(*argv: str, hide_dnspython: bool = False) -> tuple[int, str, str]:
    """`slamon ARGV` in a subprocess while this loop keeps serving DNS."""
    code = "import sys\n"
    if hide_dnspython:
        code += "sys.modules['dns'] = None  # as in an install without the dns extra\n"
    code += "from slamon.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *argv, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_slamon_probe_dns_url(server: DnsServer) -> None:
    base = f"dns://{server.server}"
    rc, out, err = await slamon("probe", f"{base}/ok.test?type=A")
    assert rc == 0 and out.startswith(f"OK {base}/ok.test"), (out, err)
    rc, out, err = await slamon("probe", f"{base}/ok.test?transport=tcp", "--expect",
                                r"192\.0\.2\.2$")
    assert rc == 0, (out, err)
    assert server.seen.queries[-1][0] == "tcp"
    rc, out, err = await slamon("probe", f"{base}/nx.test")
    assert rc == 1 and "reason=nxdomain" in out, (out, err)
    rc, out, err = await slamon("probe", f"{base}/nx.test?rcode=NXDOMAIN&rd=0")
    assert rc == 0, (out, err)
    assert server.seen.queries[-1] == ("udp", "nx.test.", False)
    rc, out, err = await slamon("probe", f"{base}/hang.test", "--timeout", "300ms")
    assert rc == 1 and "reason=timeout" in out, (out, err)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("dns://127.0.0.1", "no name to query"),
        ("dns:///a.test", "no server"),
        ("dns://127.0.0.1/a.test?typ=A", "unknown parameter 'typ'"),
        ("dns://127.0.0.1/a.test?type=AX", "dns.query_type: unknown query type"),
        ("dns://127.0.0.1/a.test?rd=maybe", "rd='maybe'"),
    ],
)
async def test_slamon_probe_bad_dns_url(url: str, words: str) -> None:
    rc, out, err = await slamon("probe", url)
    assert rc == 2 and words in err, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


async def test_without_dnspython_one_line_names_the_extra(tmp_path: Path) -> None:
    rc, out, err = await slamon("probe", "dns://127.0.0.1/a.test", hide_dnspython=True)
    assert rc == 2, (out, err)
    assert err.strip().splitlines() == [
        "slamon: error: kind 'dns' needs dnspython, which is not installed: "
        "pip install 'slamon[dns]'"], err
    config = tmp_path / "c.yaml"
    config.write_text("targets:\n  - {id: ns, kind: dns, dns: {server: 127.0.0.1, "
                      "query_name: a.test}}\n")
    rc, out, err = await slamon("check-config", str(config), hide_dnspython=True)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert lines[0] == ("error: targets[0].kind: kind 'dns' needs dnspython, which is not "
                        "installed: pip install 'slamon[dns]'"), err
    assert lines[1:] == [f"{config}: 1 error"], err


def test_docs_example_is_valid_and_its_regex_matches() -> None:
    doc = (REPO / "docs" / "config.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "kind: dns" in b]
    assert len(blocks) == 1
    config = parse_config(blocks[0])
    specs = {t.id: t.dns for t in config.targets}
    resolver = specs["resolver"]
    assert resolver is not None
    assert answer_failure(resolver, ["www.example.com. 300 IN A 192.0.2.7"]) is None
    assert answer_failure(resolver, ["www.example.com. 300 IN A 10.0.2.7"]) is not None
    assert specs["retired-name-stays-gone"] is not None
    assert specs["retired-name-stays-gone"].valid_rcodes == ["NXDOMAIN"]
