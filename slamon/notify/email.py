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

from slamon.notify.base import DeliveryError, Message


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
