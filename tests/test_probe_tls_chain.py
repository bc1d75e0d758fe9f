"""The earliest certificate expiry is over the verified chain: an intermediate that
expires before the leaf is what breaks first, for the HTTP and the TCP prober,
against real loopback TLS servers, on both event loops."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from slamon.probers import http, tcp
from slamon.probers._tls import chain_facts
from slamon.probers.base import FailureReason, ProbeResult
from tests.certchain import Chain, make_chain
from tests.loops import both_loops  # noqa: F401  (every test here on both loops)
from tests.misbehaving import HOST, MisbehavingHttpServer, RawTcpServer, http_target, tcp_target

pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')



@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return make_chain(tmp_path_factory.mktemp("chain"))


def failed(result: ProbeResult, reason: FailureReason) -> None:
    assert not result.ok, result
    assert result.reason is reason, result


async def test_http_earliest_expiry_is_the_intermediate(chain: Chain) -> None:
    async with MisbehavingHttpServer(chain.server) as server:
        url = server.url("/ok")
        r = await http.probe(http_target(url, ca_file=chain.ca_file), 2.0)
        assert r.ok, r
        assert r.cert_expiry == chain.intermediate_expiry < chain.leaf_expiry
        r = await http.probe(http_target(url, ca_file=chain.ca_file, min_cert_validity="7d"), 2.0)
        failed(r, FailureReason.TLS)
        assert r.detail == "certificate expires in 5d (min_cert_validity 7d)"
        assert r.cert_expiry == chain.intermediate_expiry
        r = await http.probe(http_target(url, ca_file=chain.ca_file, min_cert_validity="4d"), 2.0)
        assert r.ok, r


async def test_tcp_earliest_expiry_is_the_intermediate(chain: Chain) -> None:
    async with RawTcpServer(ssl_context=chain.server) as server:
        r = await tcp.probe(tcp_target(HOST, server.port, tls=True, ca_file=chain.ca_file,
                                       expect="^220 "), 2.0)
        assert r.ok, r
        assert r.cert_expiry == chain.intermediate_expiry < chain.leaf_expiry
        tls = r.tls
        assert tls is not None
        assert tls.earliest_expiry == tls.last_chain_expiry == chain.intermediate_expiry
        assert tls.version == "TLS 1.3"
        assert tls.subject == "CN=leaf.test"
        assert tls.issuer == r"CN=slamon test intermediate\, G2,O=slamon tests,C=DE"
        assert tls.subjectalternative == "localhost,leaf.test"  # DNS names only, as blackbox
        assert tls.serialnumber == format(chain.leaf.serial_number, "x")
        leaf_der = chain.leaf.public_bytes(Encoding.DER)
        assert tls.fingerprint_sha256 == hashlib.sha256(leaf_der).hexdigest()
        r = await tcp.probe(tcp_target(HOST, server.port, tls=True, ca_file=chain.ca_file,
                                       min_cert_validity="7d"), 2.0)
        failed(r, FailureReason.TLS)
        assert r.detail == "certificate expires in 5d (min_cert_validity 7d)"
        assert r.tls is not None  # the facts are reported on a failed probe too


async def test_unverified_chain_is_what_the_server_sent(chain: Chain) -> None:
    """tls_verify: false: no verified chain, so the presented one (leaf + intermediate)."""
    async with RawTcpServer(ssl_context=chain.server) as server:
        r = await tcp.probe(tcp_target(HOST, server.port, tls=True, tls_verify=False), 2.0)
        assert r.ok, r
        assert r.cert_expiry == chain.intermediate_expiry
        assert r.tls is not None and r.tls.last_chain_expiry is None


def test_facts_are_shared_and_the_leaf_alone_still_counts(chain: Chain) -> None:
    leaf = chain.leaf.public_bytes(Encoding.DER)
    inter = chain.intermediate.public_bytes(Encoding.DER)
    facts = chain_facts("TLSv1.2", (leaf, inter), ())
    assert facts is chain_facts("TLSv1.2", (leaf, inter), ())  # by identity: see collector
    assert facts is not None and facts.version == "TLS 1.2"
    only_leaf = chain_facts("TLSv1.3", (), (leaf,))
    assert only_leaf is not None and only_leaf.earliest_expiry == chain.leaf_expiry
    assert only_leaf.last_chain_expiry is None
    assert chain_facts(None, (), ()) is None
    broken = chain_facts("SSLv3", (), (b"\x30\x03\x02\x01\x01",))
    assert broken is not None and broken.version == "unknown"
    assert broken.earliest_expiry is None and broken.subject == ""


class _Cert:
    """Stands in for `_ssl.Certificate`, which Python < 3.13's private API returns."""

    def __init__(self, der: bytes) -> None:
        self.der = der

    def public_bytes(self, encoding: int) -> bytes:
        assert encoding == 2  # _ssl.ENCODING_DER
        return self.der


def test_chain_api_public_then_private_then_none() -> None:
    from types import SimpleNamespace

    from slamon.probers._tls import _chain

    public = SimpleNamespace(get_verified_chain=lambda: [b"a", b"b"])  # Python >= 3.13
    assert _chain(public, "get_verified_chain") == (b"a", b"b")
    private = SimpleNamespace(_sslobj=SimpleNamespace(get_verified_chain=lambda: [_Cert(b"c")]))
    assert _chain(private, "get_verified_chain") == (b"c",)  # 3.11, 3.12
    assert _chain(SimpleNamespace(), "get_verified_chain") == ()
    assert _chain(SimpleNamespace(get_verified_chain=lambda: None), "get_verified_chain") == ()
