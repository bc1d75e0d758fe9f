"""The TCP prober's dialogue: steps of expect / send / STARTTLS, and the standard
STARTTLS dialogues of SMTP (RFC 3207), IMAP (RFC 3501) and POP3 (RFC 2595).

A step is blackbox_exporter's `query_response` entry: wait until `expect`
matches what the server sent since the previous match, write `send`, then
upgrade to TLS if `starttls`. The mail dialogues are steps too, with a `check`
on the reply so that a server that does not offer STARTTLS or refuses it fails
with reason `starttls` and its own words, not with "expect not matched".
Pure: no sockets here; `tcp.py` runs the steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slamon.config.targets import TcpSpec
from slamon.probers.base import FailureReason, PerSpec
from slamon.probers.checks import pattern


@dataclass(frozen=True, slots=True)
class Step:
    expect: re.Pattern[str] | None = None
    send: str | None = None
    starttls: bool = False
    #: must match the reply `expect` waited for, else fail with `reason` and `what`
    check: re.Pattern[str] | None = None
    what: str = ""
    #: reason of a failed `expect` or `check`
    reason: FailureReason = FailureReason.BODY
    #: `send` is expanded with `${1}` from the match (config steps; not the built-in ones)
    expand: bool = False


@dataclass(frozen=True, slots=True)
class Dialogue:
    steps: tuple[Step, ...]
    #: written after the last step without waiting for an answer (QUIT, LOGOUT)
    goodbye: str | None = None


_SMTP_REPLY = re.compile(r"(?m)^\d{3}(?: [^\n]*|\r)?\n")  # the last line of a reply
_IMAP_LINE = re.compile(r"[^\n]*\n")
_POP3_LINE = _IMAP_LINE
#: a POP3 multi-line answer ends with "." alone; an error is one "-ERR" line
_POP3_MULTI = re.compile(r"(?m)\A-ERR[^\n]*\n|^\.\r?\n")

_SMTP = Dialogue((
    Step(_SMTP_REPLY, check=re.compile(r"(?m)^220(?: |\r?$)"), what="SMTP greeting"),
    Step(send="EHLO slamon\r\n"),
    Step(_SMTP_REPLY, check=re.compile(r"(?mi)^250[ -]STARTTLS\b"),
         what="server does not offer STARTTLS (EHLO answer)", reason=FailureReason.STARTTLS,
         send="STARTTLS\r\n"),
    Step(_SMTP_REPLY, check=re.compile(r"(?m)^220(?: |\r?$)"), what="server refused STARTTLS",
         reason=FailureReason.STARTTLS, starttls=True, send=None),
    Step(send="EHLO slamon\r\n"),
    Step(_SMTP_REPLY, check=re.compile(r"(?m)^250(?: |\r?$)"), what="EHLO over TLS"),
), goodbye="QUIT\r\n")

_IMAP = Dialogue((
    Step(_IMAP_LINE, check=re.compile(r"(?i)\A\* OK\b"), what="IMAP greeting",
         send="a1 CAPABILITY\r\n"),
    Step(re.compile(r"(?m)^a1 [^\n]*\n"), check=re.compile(r"(?mi)^\* CAPABILITY\b.* STARTTLS\b"),
         what="server does not offer STARTTLS (CAPABILITY answer)",
         reason=FailureReason.STARTTLS, send="a2 STARTTLS\r\n"),
    Step(re.compile(r"(?m)^a2 [^\n]*\n"), check=re.compile(r"(?mi)^a2 OK\b"),
         what="server refused STARTTLS", reason=FailureReason.STARTTLS, starttls=True),
    Step(send="a3 CAPABILITY\r\n"),
    Step(re.compile(r"(?m)^a3 [^\n]*\n"), check=re.compile(r"(?mi)^a3 OK\b"),
         what="CAPABILITY over TLS"),
), goodbye="a4 LOGOUT\r\n")

_POP3 = Dialogue((
    Step(_POP3_LINE, check=re.compile(r"\A\+OK"), what="POP3 greeting", send="CAPA\r\n"),
    Step(_POP3_MULTI, check=re.compile(r"(?ims)\A\+OK.*^STLS\b"),
         what="server does not offer STARTTLS (no STLS in the CAPA answer)",
         reason=FailureReason.STARTTLS, send="STLS\r\n"),
    Step(_POP3_LINE, check=re.compile(r"\A\+OK"), what="server refused STARTTLS (STLS)",
         reason=FailureReason.STARTTLS, starttls=True),
    Step(send="CAPA\r\n"),
    Step(_POP3_MULTI, check=re.compile(r"\A\+OK"), what="CAPA over TLS"),
), goodbye="QUIT\r\n")

STARTTLS_DIALOGUES = {"smtp": _SMTP, "imap": _IMAP, "pop3": _POP3}

def dialogue(spec: TcpSpec) -> Dialogue:
    """The steps of a TCP probe: the STARTTLS dialogue, then `query_response` or the
    plain `send` and `expect` (sent first, then matched, as before there were steps).
    Kept per spec object."""
    return _dialogues.get(spec, _build)


def _build(spec: TcpSpec) -> Dialogue:
    steps: list[Step] = []
    goodbye = None
    if spec.starttls is not None:
        mail = STARTTLS_DIALOGUES[spec.starttls]
        steps.extend(mail.steps)
        goodbye = mail.goodbye
    for i, qr in enumerate(spec.query_response):
        steps.append(Step(
            pattern(qr.expect) if qr.expect is not None else None, qr.send, qr.starttls,
            reason=FailureReason.STARTTLS if qr.starttls else FailureReason.BODY,
            what=f"query_response[{i}]", expand=True,
        ))
    if spec.send is not None:
        steps.append(Step(send=spec.send))
    if spec.expect is not None:
        steps.append(Step(pattern(spec.expect)))
    return Dialogue(tuple(steps), goodbye)


_dialogues: PerSpec[TcpSpec, Dialogue] = PerSpec(10_000)


_GO_TEMPLATE = re.compile(r"\$(?:(\$)|\{(\w+)\}|(\w+))")


def expand(template: str, match: re.Match[str]) -> str:
    """`send` with `$1`, `${1}`, `$name`, `${name}` replaced by what the group matched,
    as Go's Regexp.Expand (blackbox_exporter); an unknown group is empty, `$$` is `$`."""
    if "$" not in template:
        return template

    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(3)
        try:
            value = match.group(int(name) if name.isdigit() else name)
        except IndexError:  # no such group
            return ""
        return value or ""

    return _GO_TEMPLATE.sub(one, template)
