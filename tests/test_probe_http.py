"""HTTP prober against real loopback servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from slamon.probers import PROBERS, get_prober
from slamon.probers.base import FailureReason, ProbeResult
from slamon.probers.http import probe
from tests.loops import both_loops  # noqa: F401  (every test here on both loops)
from tests.misbehaving import JSON_DOC, MisbehavingHttpServer, RawTcpServer, http_target, tcp_target

EPS = 0.15  # scheduling noise allowed beyond the timeout budget


# Deprecated in pytest-asyncio 1.5 in favour of the pytest_asyncio_loop_factories hook,
# which only a conftest can provide and which would apply to every test module.
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')



async def run(url: str, timeout: float = 2.0, **http: object) -> ProbeResult:
    return await probe(http_target(url, timeout=timeout, **http), timeout)


def failed(result: ProbeResult, reason: FailureReason) -> None:
    assert not result.ok, result
    assert result.reason is reason, result


# ---------------------------------------------------------------- success and phases


async def test_ok_has_phases_and_metadata(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(misbehaving_http.url("/ok"))
    assert r.ok, r
    assert r.reason is None and r.detail == ""
    assert r.status_code == 200
    assert r.http_version == "1.1"
    assert r.body_bytes == 2
    assert {"connect", "processing", "transfer"} <= r.phases.keys()
    assert "dns" not in r.phases  # IP literal: no resolution
    assert "tls" not in r.phases
    assert all(v >= 0 for v in r.phases.values())
    assert r.duration >= sum(r.phases.values()) * 0.99


async def test_dns_phase_for_a_name(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(f"http://localhost:{misbehaving_http.port}/ok", ip_family="ipv4")
    assert r.ok, r
    assert r.phases["dns"] >= 0


async def test_request_carries_spec_and_defaults(misbehaving_http: MisbehavingHttpServer) -> None:
    port = misbehaving_http.port
    r = await run(
        f"http://bob:pa%20ss@127.0.0.1:{port}/echo?q=a%2Fb&x=[1]",
        method="POST",
        headers={"X-Custom": "yes"},
        body="hello",
        json_equals=[
            {"path": "method", "equals": "POST"},
            {"path": "body", "equals": "hello"},
            {"path": "path", "equals": "/echo?q=a%2Fb&x=%5B1%5D"},
            {"path": "headers.X-Custom", "equals": "yes"},
            {"path": "headers.Content-Length", "equals": "5"},
            {"path": "headers.Host", "equals": f"127.0.0.1:{port}"},
            {"path": "headers.User-Agent", "equals": "slamon/0.1.0"},
            {"path": "headers.Accept-Encoding", "equals": "identity"},
            {"path": "headers.Connection", "equals": "close"},
            {"path": "headers.Authorization", "equals": "Basic Ym9iOnBhIHNz"},
        ],
    )
    assert r.ok, r


async def test_user_headers_replace_defaults(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(
        misbehaving_http.url("/echo"),
        headers={"User-Agent": "custom", "Accept-Encoding": "gzip"},
        json_equals=[
            {"path": "headers.User-Agent", "equals": "custom"},
            {"path": "headers.Accept-Encoding", "equals": "gzip"},
        ],
    )
    assert r.ok, r


async def test_head_reads_no_body(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(misbehaving_http.url("/ok"), method="HEAD")
    assert r.ok, r
    assert r.body_bytes == 0


async def test_body_until_eof(raw_tcp: RawTcpServer) -> None:
    raw_tcp.set_mode("http-eof")
    r = await run(f"http://127.0.0.1:{raw_tcp.port}/", body_contains=["until EOF"])
    assert r.ok, r
    assert r.http_version == "1.0"


@pytest.mark.parametrize("path", ["/gzip", "/deflate"])
async def test_compressed_body_is_decoded(
    misbehaving_http: MisbehavingHttpServer, path: str
) -> None:
    r = await run(misbehaving_http.url(path), body_matches=["^OK (compressed|deflated) body$"])
    assert r.ok, r


async def test_mode_switch(misbehaving_http: MisbehavingHttpServer) -> None:
    url = misbehaving_http.url("/")
    assert (await run(url)).ok
    misbehaving_http.set_mode("down")
    failed(await run(url), FailureReason.STATUS)
    misbehaving_http.set_mode("up")
    assert (await run(url)).ok
    assert misbehaving_http.hits["/"] == 3


# ---------------------------------------------------------------- network failures


async def test_dns_failure() -> None:
    r = await run("http://no-such-host.invalid/")
    failed(r, FailureReason.DNS)
    assert "no-such-host.invalid" in r.detail


async def test_ip_family_mismatch_is_dns(misbehaving_http: MisbehavingHttpServer) -> None:
    failed(await run(misbehaving_http.url("/ok"), ip_family="ipv6"), FailureReason.DNS)


async def test_refused(refused_port: int) -> None:
    r = await run(f"http://127.0.0.1:{refused_port}/")
    failed(r, FailureReason.REFUSED)


@pytest.mark.parametrize("path", ["/reset", "/close-early"])
async def test_reset(misbehaving_http: MisbehavingHttpServer, path: str) -> None:
    failed(await run(misbehaving_http.url(path)), FailureReason.RESET)


@pytest.mark.parametrize(("reply", "header"), [
    # bare LF line endings, as some embedded servers and CGI scripts send
    (b"HTTP/1.1 200 OK\nContent-Length: 9\nX-App: shop\n\nHEALTHY\r\n", b"shop"),
    # CRLF and bare LF mixed
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\nX-App: shop\r\n\r\nHEALTHY\r\n", b"shop"),
    # obsolete header folding (RFC 9112 5.2): the value continues on the next line
    (b"HTTP/1.1 200 OK\r\nX-App: shop\r\n  front\r\nContent-Length: 9\r\n\r\nHEALTHY\r\n",
     b"shop  front"),
])
async def test_lenient_where_browsers_are(raw_tcp: RawTcpServer, reply: bytes,
                                          header: bytes) -> None:
    """Bare LF and obs-fold responses are up for browsers, curl and blackbox_exporter:
    up here too, and the headers read as they meant."""
    raw_tcp.set_mode("reply")
    raw_tcp.reply = reply
    url = f"http://127.0.0.1:{raw_tcp.port}/"
    r = await run(url, body_contains=["HEALTHY"])
    assert r.ok, r
    r = await run(url, header_matches=[{"name": "X-App", "regex": f"^{header.decode()}$"}])
    assert r.ok, r


@pytest.mark.parametrize(("reply", "why"), [
    # two different lengths: which body is it? (response splitting / smuggling)
    (b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 9\r\n\r\nHEALTHY\r\n",
     "Content-Length"),
    # a length and chunked at once
    (b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"7\r\nHEALTHY\r\n0\r\n\r\n", "Transfer-Encoding"),
    # an invalid chunk size
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nHEALTHY\r\n0\r\n\r\n",
     "chunk size"),
])
async def test_strict_where_ambiguity_is_dangerous(raw_tcp: RawTcpServer, reply: bytes,
                                                   why: str) -> None:
    raw_tcp.set_mode("reply")
    raw_tcp.reply = reply
    r = await run(f"http://127.0.0.1:{raw_tcp.port}/", body_contains=["HEALTHY"])
    failed(r, FailureReason.OTHER)
    assert "malformed" in r.detail and why in r.detail, r.detail


async def test_malformed_http_is_other(raw_tcp: RawTcpServer) -> None:
    raw_tcp.set_mode("garbage")
    r = await run(f"http://127.0.0.1:{raw_tcp.port}/")
    failed(r, FailureReason.OTHER)
    assert "malformed" in r.detail


@pytest.mark.parametrize(
    ("path", "phase"), [("/hang", "processing"), ("/hang-body", "transfer"), ("/drip", "transfer")]
)
async def test_timeout_within_budget(
    misbehaving_http: MisbehavingHttpServer, path: str, phase: str
) -> None:
    timeout = 0.4
    t0 = time.perf_counter()
    r = await run(misbehaving_http.url(path), timeout=timeout)
    wall = time.perf_counter() - t0
    failed(r, FailureReason.TIMEOUT)
    assert r.detail == f"timeout after 400ms in phase {phase}"
    assert r.duration <= timeout + EPS
    assert wall <= timeout + EPS
    assert "connect" in r.phases


@pytest.mark.parametrize("path", ["/big", "/big-cl"])
async def test_page_larger_than_body_limit_is_up(
    misbehaving_http: MisbehavingHttpServer, path: str
) -> None:
    """A 5 MB page whose first bytes hold the marker is up, as for a browser, curl and
    blackbox_exporter: the assertions see the first body_limit bytes, the rest is read
    to the end of the response and dropped."""
    size = 5_000_000
    url = misbehaving_http.url(f"{path}?size={size}&first=MARKER&last=TAIL")
    r = await run(url, timeout=5, body_contains=["MARKER"])
    assert r.ok, r
    assert r.body_bytes == size  # read to the end: the response completed
    # the tail lies past body_limit (1 MiB): not what the assertions see
    r = await run(url, timeout=5, body_contains=["TAIL"])
    failed(r, FailureReason.BODY)
    r = await run(url, timeout=5, body_contains=["TAIL"], body_limit="5MB")
    assert r.ok, r


async def test_huge_body_chunked_is_too_large(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(misbehaving_http.url("/big"), timeout=5, max_body_size="1MiB")
    failed(r, FailureReason.TOO_LARGE)
    assert r.detail == "body larger than max_body_size 1MiB"
    assert r.duration < 2
    assert 1024 * 1024 < r.body_bytes <= 1024 * 1024 + 65536


async def test_huge_content_length_is_too_large(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(misbehaving_http.url("/big-cl"), timeout=5, max_body_size="1MiB")
    failed(r, FailureReason.TOO_LARGE)
    assert "Content-Length 50000000" in r.detail and "max_body_size" in r.detail
    assert r.duration < 1


# ---------------------------------------------------------------- assertions


async def test_status(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(misbehaving_http.url("/status/503"))
    failed(r, FailureReason.STATUS)
    assert r.detail == "status 503 not in 200-299"
    assert r.status_code == 503
    ok = await run(misbehaving_http.url("/status/503"), valid_status_codes=[200, "5xx"])
    assert ok.ok, ok


async def test_header_assertions(misbehaving_http: MisbehavingHttpServer) -> None:
    url = misbehaving_http.url("/headers")
    assert (await run(url, header_matches=[{"name": "x-slamon", "regex": "^present"}])).ok
    r = await run(url, header_matches=[{"name": "X-Version", "regex": r"^3\."}])
    failed(r, FailureReason.HEADER)
    assert r.detail == "header X-Version does not match '^3\\\\.'"
    r = await run(url, header_matches=[{"name": "X-Absent", "regex": "."}])
    failed(r, FailureReason.HEADER)
    assert r.detail == "header X-Absent missing"
    spec = [{"name": "X-Absent", "regex": ".", "allow_missing": True}]
    assert (await run(url, header_matches=spec)).ok


async def test_body_assertions(misbehaving_http: MisbehavingHttpServer) -> None:
    url = misbehaving_http.url("/wrong-body")
    r = await run(url, body_contains=["OK"])
    failed(r, FailureReason.BODY)
    assert r.detail == "body does not contain 'OK'"
    r = await run(url, body_matches=["^All good"])
    failed(r, FailureReason.BODY)
    r = await run(url, body_not_matches=["(?i)maintenance"])
    failed(r, FailureReason.BODY)
    assert r.detail == "body matches '(?i)maintenance'"
    assert (await run(misbehaving_http.url("/ok"), body_contains=["OK"])).ok


async def test_json_assertions(misbehaving_http: MisbehavingHttpServer) -> None:
    url = misbehaving_http.url("/json")
    good = [
        {"path": "status", "equals": "up"},
        {"path": "data.items.0.state", "equals": "up"},
        {"path": "count", "equals": 2},
        {"path": "healthy", "equals": True},
    ]
    assert (await run(url, json_equals=good)).ok
    r = await run(url, json_equals=[{"path": "data.items.1.state", "equals": "up"}])
    failed(r, FailureReason.JSON)
    assert r.detail == "json data.items.1.state is 'down', expected 'up'"
    failed(await run(url, json_equals=[{"path": "data.nope", "equals": 1}]), FailureReason.JSON)
    failed(await run(url, json_equals=[{"path": "healthy", "equals": 1}]), FailureReason.JSON)
    r = await run(misbehaving_http.url("/json-invalid"), json_equals=good)
    failed(r, FailureReason.JSON)
    assert r.detail.startswith("invalid JSON")


async def test_too_slow(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(misbehaving_http.url("/delay/150"), max_response_time="100ms")
    failed(r, FailureReason.TOO_SLOW)
    assert r.status_code == 200
    assert (await run(misbehaving_http.url("/delay/10"), max_response_time="1s")).ok


async def test_assertion_order_status_first(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(
        misbehaving_http.url("/status/500"),
        body_contains=["nope"],
        header_matches=[{"name": "X-Absent", "regex": "."}],
    )
    failed(r, FailureReason.STATUS)


# ---------------------------------------------------------------- redirects


async def test_redirect_chain(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(misbehaving_http.url("/redirect/3"), body_contains=["OK"])
    assert r.ok, r
    assert r.redirects == 4  # 3 relative hops + the absolute one to /ok
    assert misbehaving_http.hits["/ok"] == 1


async def test_too_many_redirects(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(misbehaving_http.url("/redirect/3"), max_redirects=2)
    failed(r, FailureReason.REDIRECTS)
    assert r.detail == "more than 2 redirects"


async def test_redirect_loop(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(misbehaving_http.url("/loop"))
    failed(r, FailureReason.REDIRECTS)
    assert "loop" in r.detail


async def test_redirect_not_followed(misbehaving_http: MisbehavingHttpServer) -> None:
    url = misbehaving_http.url("/redirect/1")
    r = await run(url, follow_redirects=False)
    failed(r, FailureReason.STATUS)
    assert r.status_code == 302
    assert (await run(url, follow_redirects=False, valid_status_codes=["3xx"])).ok


async def test_303_turns_post_into_get(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(
        misbehaving_http.url("/see-other"),
        method="POST",
        body="payload",
        json_equals=[{"path": "method", "equals": "GET"}, {"path": "body", "equals": ""}],
    )
    assert r.ok, r
    assert r.redirects == 1


# ---------------------------------------------------------------- TLS


async def test_tls_verify_fails_without_ca(misbehaving_https: MisbehavingHttpServer) -> None:
    r = await run(misbehaving_https.url("/ok"))
    failed(r, FailureReason.TLS)
    assert "certificate" in r.detail
    assert "tls" in r.phases


async def test_tls_ok_with_ca_file(misbehaving_https: MisbehavingHttpServer, ca_file: str) -> None:
    r = await run(misbehaving_https.url("/ok"), ca_file=ca_file)
    assert r.ok, r
    assert {"connect", "tls", "processing", "transfer"} <= r.phases.keys()
    assert r.cert_expiry is not None and r.cert_expiry > time.time() + 30 * 86400
    r = await run(f"https://localhost:{misbehaving_https.port}/ok", ca_file=ca_file)
    assert r.ok, r


async def test_tls_no_verify_still_reports_expiry(
    misbehaving_https: MisbehavingHttpServer,
) -> None:
    r = await run(misbehaving_https.url("/ok"), tls_verify=False)
    assert r.ok, r
    assert r.cert_expiry is not None and r.cert_expiry > time.time()


async def test_cert_expiring_soon(expiring_https: MisbehavingHttpServer, ca_file: str) -> None:
    url = expiring_https.url("/ok")
    r = await run(url, ca_file=ca_file, min_cert_validity="7d")
    failed(r, FailureReason.TLS)
    assert r.detail == "certificate expires in 2d (min_cert_validity 7d)"
    assert r.cert_expiry is not None
    assert abs(r.cert_expiry - (time.time() + 2 * 86400)) < 120
    assert (await run(url, ca_file=ca_file, min_cert_validity="1d")).ok


async def test_tls_handshake_stall_times_out(raw_tcp: RawTcpServer) -> None:
    raw_tcp.set_mode("silent")
    r = await run(f"https://127.0.0.1:{raw_tcp.port}/", timeout=0.3)
    failed(r, FailureReason.TIMEOUT)
    assert r.detail == "timeout after 300ms in phase tls"
    assert r.duration <= 0.3 + EPS


async def test_tls_to_plain_http_server(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(f"https://127.0.0.1:{misbehaving_http.port}/ok")
    failed(r, FailureReason.TLS)


# ---------------------------------------------------------------- redaction and robustness


async def test_secrets_never_in_detail(
    misbehaving_http: MisbehavingHttpServer, refused_port: int
) -> None:
    port = misbehaving_http.port
    urls = [
        f"http://user:secret@127.0.0.1:{port}/status/503?token=abc",
        f"http://user:secret@127.0.0.1:{port}/loop?token=abc",
        f"http://user:secret@127.0.0.1:{port}/hang?token=abc",
        f"http://user:secret@127.0.0.1:{refused_port}/?token=abc",
        "http://user:secret@no-such-host.invalid/?token=abc",
    ]
    for url in urls:
        r = await run(url, timeout=0.3)
        assert not r.ok
        assert "secret" not in r.detail and "abc" not in r.detail, r.detail


async def test_redirect_loop_detail_is_redacted(misbehaving_http: MisbehavingHttpServer) -> None:
    r = await run(f"http://u:secret@127.0.0.1:{misbehaving_http.port}/loop?token=abc")
    failed(r, FailureReason.REDIRECTS)
    assert "secret" not in r.detail and "abc" not in r.detail


async def test_never_raises_on_wrong_kind() -> None:
    r = await probe(tcp_target("127.0.0.1", 1), 1.0)
    failed(r, FailureReason.OTHER)


def test_registry() -> None:
    assert PROBERS["http"] is probe
    assert get_prober("http") is probe
    with pytest.raises(KeyError, match="unknown prober kind"):
        get_prober("ftp")


def test_json_fixture_is_what_the_json_route_serves() -> None:
    assert json.loads(json.dumps(JSON_DOC))["data"]["items"][0]["state"] == "up"


# ---------------------------------------------------------------- no reference cycles


def _probe_cycles(garbage: list[object]) -> list[str]:
    """Objects of the probe path among what only the cyclic GC could free."""
    import types

    from slamon.probers import _net
    from slamon.probers import http as http_mod

    ours = (http_mod._HttpProtocol, http_mod._State, _net.ProbeError, _net.PhaseClock)
    out = [type(o).__qualname__ for o in garbage if isinstance(o, ours)]
    out += [
        f"frame {o.f_code.co_name}"
        for o in garbage
        if isinstance(o, types.FrameType) and "slamon/probers" in o.f_code.co_filename
    ]
    parser = "httptools.parser.parser"
    out += [type(o).__qualname__ for o in garbage if type(o).__module__ == parser]
    return out


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/ok", {}),
        ("/status/503", {}),
        ("/ok", {"body_contains": ["NOPE"]}),
        ("/reset", {}),
        ("/hang", {}),
        ("/redirect/2", {}),
        ("/big", {"max_body_size": 1000}),
        ("/big?size=200000", {"body_limit": 1000}),
        ("refused", {}),
    ],
)
async def test_probes_leave_no_reference_cycles(
    misbehaving_http: MisbehavingHttpServer, path: str, extra: dict[str, object]
) -> None:
    """Every probe's objects die by reference counting. A cycle per probe made
    ~17k objects/s for the cyclic GC at 10,000 targets and 60-160 ms full
    collections that delayed probes (docs/benchmarks.md)."""
    import gc

    from tests.misbehaving import free_port

    url = f"http://127.0.0.1:{free_port()}/" if path == "refused" else misbehaving_http.url(path)
    await run(url, timeout=0.3, **extra)  # warm caches
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        results = [await run(url, timeout=0.3, **extra) for _ in range(5)]
        await asyncio.sleep(0.05)  # let connection_lost callbacks run
        gc.collect()
        leaked = _probe_cycles(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    up = (path in ("/ok", "/redirect/2") and not extra) or path == "/big?size=200000"
    assert results[0].ok == up, results[0]
    assert leaked == [], leaked
