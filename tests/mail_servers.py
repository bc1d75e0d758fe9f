"""Mail servers on 127.0.0.1 that speak just enough SMTP, IMAP or POP3 for a
STARTTLS dialogue (a real TLS upgrade), and that misbehave on purpose: no offer,
a refusal, garbage, or plain text where the TLS handshake should be."""

from __future__ import annotations

import asyncio
import ssl
from typing import Literal

from tests.misbehaving import StreamServer

Protocol = Literal["smtp", "imap", "pop3"]
#: ok: offers STARTTLS, upgrades, answers over TLS;
#: no-starttls: does not offer it; refuse: offers it, then refuses the command;
#: garbage: offers it, then answers the command with garbage and closes;
#: no-tls: accepts the command, then answers the TLS handshake with plain text
MailMode = Literal["ok", "no-starttls", "refuse", "garbage", "no-tls"]


class MailServer(StreamServer):
    def __init__(self, protocol: Protocol, ssl_context: ssl.SSLContext,
                 mode: MailMode = "ok") -> None:
        super().__init__()  # plain text first: the TLS context is for STARTTLS
        self.protocol = protocol
        self.tls_context = ssl_context
        self.mode: MailMode = mode
        #: (over TLS?, command line) in the order received
        self.commands: list[tuple[bool, str]] = []
        #: set when a client said goodbye (QUIT / LOGOUT)
        self.goodbye = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._dialogue(reader, writer)

    async def _dialogue(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        greeting = {"smtp": "220 mail.test ESMTP ready", "imap": "* OK mail.test IMAP4rev1 ready",
                    "pop3": "+OK mail.test POP3 ready"}[self.protocol]
        writer.write(greeting.encode() + b"\r\n")
        tls = False
        while line := await reader.readline():
            text = line.decode().strip()
            self.commands.append((tls, text))
            tag, _, rest = text.partition(" ") if self.protocol == "imap" else ("", "", text)
            verb = rest.split(" ")[0].upper()
            offer = self.mode != "no-starttls" and not tls
            if verb in ("QUIT", "LOGOUT"):
                self.goodbye.set()
                writer.write({"smtp": b"221 bye\r\n", "pop3": b"+OK bye\r\n",
                              "imap": f"* BYE\r\n{tag} OK LOGOUT done\r\n".encode()
                              }[self.protocol])
                await writer.drain()
                return
            if verb in ("STARTTLS", "STLS"):
                if self.mode == "garbage":
                    writer.write(b"%%% what? %%%\r\n")
                    await writer.drain()
                    return
                if self.mode == "refuse":
                    writer.write({"smtp": b"454 4.7.0 TLS not available\r\n",
                                  "pop3": b"-ERR TLS not available\r\n",
                                  "imap": f"{tag} NO TLS not available\r\n".encode()
                                  }[self.protocol])
                    continue
                writer.write({"smtp": b"220 2.0.0 go ahead\r\n", "pop3": b"+OK go ahead\r\n",
                              "imap": f"{tag} OK go ahead\r\n".encode()}[self.protocol])
                await writer.drain()
                if self.mode == "no-tls":
                    await reader.read(1)  # the client's hello: answer it, not the command
                    writer.write(b"this is not a TLS server hello\r\n" * 4)
                    await writer.drain()
                    await reader.read()  # until the client gives up
                    return
                await writer.start_tls(self.tls_context)
                tls = True
                continue
            writer.write(self._answer(verb, tag, offer))

    def _answer(self, verb: str, tag: str, offer: bool) -> bytes:
        if self.protocol == "smtp":
            if verb in ("EHLO", "HELO"):
                caps = ["mail.test", "PIPELINING", *(["STARTTLS"] if offer else []), "HELP"]
                return "".join(f"250{'-' if i < len(caps) - 1 else ' '}{c}\r\n"
                               for i, c in enumerate(caps)).encode()
            return b"502 5.5.2 not implemented\r\n"
        if self.protocol == "imap":
            if verb == "CAPABILITY":
                extra = " STARTTLS LOGINDISABLED" if offer else ""
                return f"* CAPABILITY IMAP4rev1{extra}\r\n{tag} OK done\r\n".encode()
            return f"{tag} BAD unknown command\r\n".encode()
        if verb == "CAPA":
            return b"+OK list follows\r\nUSER\r\n" + (b"STLS\r\n" if offer else b"") + b".\r\n"
        return b"-ERR unknown command\r\n"
