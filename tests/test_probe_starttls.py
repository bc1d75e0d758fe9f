"""TCP STARTTLS for SMTP, IMAP and POP3 and blackbox_exporter's `query_response`
steps with `starttls: true`, against loopback mail servers that upgrade for real
or misbehave on purpose (tests/mail_servers.py), on both event loops."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from slamon.probers import tcp
from slamon.probers.base import FailureReason, ProbeResult
from tests.certchain import Chain, make_chain
from tests.loops import both_loops  # noqa: F401  (every test here on both loops)
from tests.mail_servers import MailMode, MailServer, Protocol
from tests.misbehaving import HOST, free_port, tcp_target

pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')

PROTOCOLS: tuple[Protocol, ...] = ("smtp", "imap", "pop3")



@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return make_chain(tmp_path_factory.mktemp("chain"))


async def probe(chain: Chain, protocol: Protocol, mode: MailMode, **spec: Any
                ) -> tuple[ProbeResult, MailServer]:
    async with MailServer(protocol, chain.server, mode) as server:
        fields: dict[str, Any] = {"starttls": protocol, "ca_file": chain.ca_file, **spec}
        result = await tcp.probe(tcp_target(HOST, server.port, **fields), 2.0)
        if result.ok:  # the goodbye is written after the last answer: await it
            async with asyncio.timeout(2):
                await server.goodbye.wait()
        return result, server


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_upgrades_and_talks_over_tls(chain: Chain, protocol: Protocol) -> None:
    r, server = await probe(chain, protocol, "ok")
    assert r.ok, r
    assert r.reason is None
    assert "tls" in r.phases and r.phases["tls"] > 0
    # the chain facts come from the upgraded connection
    assert r.cert_expiry == chain.intermediate_expiry
    assert r.tls is not None and r.tls.last_chain_expiry == chain.intermediate_expiry
    plain = [c for tls, c in server.commands if not tls]
    secure = [c for tls, c in server.commands if tls]
    assert any(c.split()[-1].upper() in ("STARTTLS", "STLS") for c in plain), plain
    assert secure, "nothing was said over TLS"
    assert secure[-1].split()[-1].upper() in ("QUIT", "LOGOUT"), secure


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("mode", "words"), [
    ("no-starttls", "does not offer STARTTLS"),
    ("refuse", "refused STARTTLS"),
    ("garbage", ""),
])
async def test_starttls_refused_is_its_own_reason(
    chain: Chain, protocol: Protocol, mode: MailMode, words: str
) -> None:
    r, server = await probe(chain, protocol, mode)
    assert not r.ok
    assert r.reason is FailureReason.STARTTLS, r
    assert words in r.detail, r.detail
    assert not any(tls for tls, _ in server.commands)
    assert r.tls is None and r.cert_expiry is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_no_tls_after_starttls_is_a_tls_failure(chain: Chain, protocol: Protocol) -> None:
    r, _ = await probe(chain, protocol, "no-tls")
    assert not r.ok
    assert r.reason is FailureReason.TLS, r
    assert r.detail.startswith("after STARTTLS: "), r.detail


async def test_untrusted_certificate_after_starttls_fails(chain: Chain) -> None:
    async with MailServer("smtp", chain.server, "ok") as server:
        r = await tcp.probe(tcp_target(HOST, server.port, starttls="smtp"), 2.0)
    assert not r.ok and r.reason is FailureReason.TLS, r
    assert r.detail.startswith("after STARTTLS: "), r.detail


async def test_min_cert_validity_is_judged_on_the_upgraded_chain(chain: Chain) -> None:
    r, _ = await probe(chain, "imap", "ok", min_cert_validity="7d")
    assert not r.ok and r.reason is FailureReason.TLS, r
    assert "min_cert_validity 7d" in r.detail


async def test_expect_after_starttls_reads_the_tls_answer(chain: Chain) -> None:
    """`send`/`expect` run after the mail dialogue, over TLS."""
    r, server = await probe(chain, "smtp", "ok", send="NOOP\r\n", expect="^502 ")
    assert r.ok, r
    assert (True, "NOOP") in server.commands
    # a wrong answer over TLS is waited for to the timeout, as for a plain expect
    async with MailServer("smtp", chain.server, "ok") as server:
        r = await tcp.probe(tcp_target(HOST, server.port, starttls="smtp", ca_file=chain.ca_file,
                                       send="NOOP\r\n", expect="^250 "), 0.5)
    assert not r.ok and r.reason is FailureReason.TIMEOUT, r
    assert r.tls is not None and (True, "NOOP") in server.commands


async def test_query_response_steps_with_starttls(chain: Chain) -> None:
    """blackbox_exporter's SMTP example: expect, send, starttls as steps."""
    steps = [
        {"expect": "^220 ", "send": "EHLO prober\r\n"},
        {"expect": "(?m)^250[ -]STARTTLS", "send": "STARTTLS\r\n"},
        {"expect": "(?m)^220 ", "starttls": True},
        {"send": "EHLO prober\r\n"},
        {"expect": "(?m)^250 HELP"},
        {"send": "QUIT\r\n"},
    ]
    async with MailServer("smtp", chain.server, "ok") as server:
        target = tcp_target(HOST, server.port, ca_file=chain.ca_file, query_response=steps)
        r = await tcp.probe(target, 2.0)
        assert r.ok, r
        async with asyncio.timeout(2):
            await server.goodbye.wait()
    assert r.cert_expiry == chain.intermediate_expiry
    assert (False, "STARTTLS") in server.commands and (True, "EHLO prober") in server.commands
    # a server that never offers it: the step's expect fails, as a STARTTLS failure
    # only where the step upgrades; here the offer step is a plain expect
    async with MailServer("smtp", chain.server, "no-starttls") as server:
        target = tcp_target(HOST, server.port, ca_file=chain.ca_file, query_response=steps)
        r = await tcp.probe(target, 1.0)
    assert not r.ok and r.reason in (FailureReason.BODY, FailureReason.TIMEOUT), r


async def test_query_response_expands_groups(chain: Chain) -> None:
    """`${1}` in a send is what the step's expect captured (Go's Regexp.Expand)."""
    steps = [
        {"expect": r"^220 (\S+) ESMTP", "send": "EHLO ${1}\r\n"},
        {"expect": "(?m)^250 HELP"},
    ]
    async with MailServer("smtp", chain.server, "ok") as server:
        r = await tcp.probe(tcp_target(HOST, server.port, query_response=steps), 2.0)
    assert r.ok, r
    assert (False, "EHLO mail.test") in server.commands


class _Accept:
    """An aiosmtpd handler that takes every mail (none is sent: the probe quits)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@pytest.mark.parametrize("offer", [True, False])
async def test_real_smtp_server_aiosmtpd(chain: Chain, offer: bool) -> None:
    """aiosmtpd, a real SMTP server: with a TLS context it offers STARTTLS and the probe
    upgrades; without one it does not, and the probe fails with reason starttls."""
    from aiosmtpd.controller import Controller

    extra: dict[str, Any] = {"tls_context": chain.server} if offer else {}
    controller = Controller(_Accept(), hostname=HOST, port=free_port(), **extra)
    await asyncio.to_thread(controller.start)
    try:
        r = await tcp.probe(tcp_target(HOST, controller.port, starttls="smtp",
                                       ca_file=chain.ca_file), 2.0)
    finally:
        await asyncio.to_thread(controller.stop)
    if offer:
        assert r.ok, r
        assert r.cert_expiry == chain.intermediate_expiry
        assert r.tls is not None and r.tls.version.startswith("TLS")
    else:
        assert not r.ok and r.reason is FailureReason.STARTTLS, r
        assert "does not offer STARTTLS" in r.detail, r.detail
