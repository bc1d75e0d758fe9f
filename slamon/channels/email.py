"""E-mail over SMTP (stdlib smtplib in a worker thread: no extra dependency).

The Message-ID is derived from the idempotency key, so a retry of a message a
server accepted but whose answer was lost carries the same Message-ID, which
mail systems (and humans' clients) use to recognise duplicates.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal

from pydantic import Field, field_validator, model_validator

from slamon.channels.base import ChannelKind, Context, DeliveryError, Message
from slamon.util.fsutil import read_secret
from slamon.util.schema import (
    PathError,
    Problem,
    Strict,
    check_secret_source,
)


def build_email(message: Message, sender: str, to: list[str], prefix: str) -> EmailMessage:
    mail = EmailMessage()
    state = {"firing": "FIRING", "resolved": "RESOLVED", "info": "INFO"}[message.status]
    head = message.text.partition("\n")[0]
    subject = f"{prefix} [{state}] {head}".strip()
    mail["Subject"] = subject.replace("\r", " ").replace("\n", " ")[:200]
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = formatdate(message.at, usegmt=True)
    domain = sender.rpartition("@")[2] or "slamon.invalid"
    mail["Message-ID"] = f"<{message.key}@{domain}>"
    mail["X-Slamon-Event"] = message.kind.value
    mail["X-Slamon-Idempotency-Key"] = message.key
    mail.set_content(message.text + "\n")
    return mail


class EmailNotifier:
    kind = "email"

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        sender: str,
        to: list[str],
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        subject_prefix: str = "[slamon]",
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self._host, self._port = host, port
        self._sender, self._to = sender, list(to)
        self._security = security
        self._username, self._password = username, password
        self._prefix = subject_prefix
        self._timeout = timeout
        self._ctx = ssl_context

    def _send_sync(self, mail: EmailMessage) -> None:
        ctx = self._ctx or ssl.create_default_context()
        smtp: smtplib.SMTP
        if self._security == "tls":
            smtp = smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout, context=ctx)
        else:
            smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        with smtp:
            if self._security == "starttls":
                smtp.starttls(context=ctx)
            if self._username and self._password is not None:
                smtp.login(self._username, self._password)
            smtp.send_message(mail)

    async def send(self, message: Message) -> None:
        mail = build_email(message, self._sender, self._to, self._prefix)
        try:
            # the router's timeout cancels the wait; the thread ends by its socket timeout
            await asyncio.to_thread(self._send_sync, mail)
        except smtplib.SMTPResponseException as exc:
            # 4xx is temporary, 5xx permanent (RFC 5321)
            raise DeliveryError(f"smtp_{exc.smtp_code // 100}xx", f"SMTP {exc.smtp_code}",
                                retryable=exc.smtp_code < 500) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError("smtp_5xx", "recipients refused", retryable=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else "connect"
            raise DeliveryError(reason, type(exc).__name__) from None

    async def close(self) -> None:
        return None


# -- config -------------------------------------------------------------------


class EmailChannel(Strict):
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    #: none (plain, for a local relay), starttls, or tls (implicit, port 465)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    sender: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    subject_prefix: str = "[slamon]"

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        problems: list[Problem] = [
            ((i,), "not an e-mail address") for i, a in enumerate(value) if "@" not in a
        ]
        if problems:
            raise PathError.many(problems)
        return value

    @model_validator(mode="after")
    def _auth(self) -> EmailChannel:
        check_secret_source(self.password, self.password_file, "password")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise PathError(("username",), "required with a password")
        if "@" not in self.sender:
            raise PathError(("from",), "not an e-mail address")
        return self


def _build(channel_id: str, cfg: EmailChannel, ctx: Context) -> EmailNotifier:
    return EmailNotifier(
        channel_id, host=cfg.host, port=cfg.port, sender=cfg.sender, to=cfg.to,
        security=cfg.security, username=cfg.username,
        password=read_secret(cfg.password, cfg.password_file),
        subject_prefix=cfg.subject_prefix, timeout=ctx.timeout,
    )


KIND = ChannelKind("email", EmailChannel, _build)
