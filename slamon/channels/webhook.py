"""Generic webhook: POST the message as JSON, optionally signed with HMAC-SHA256.

Headers: `Idempotency-Key` (same on every retry of one notification, so a
receiver can drop a retry of a request it already processed after a timeout),
`X-Slamon-Event`, and with a key ``<signature_header>: sha256=<hex>`` over
``<timestamp>.<body>`` plus `X-Slamon-Timestamp` (replay protection, as in
Stripe's and Slack's signing schemes).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

import aiohttp
from pydantic import Field, field_validator, model_validator

from slamon.channels.base import ChannelKind, Context, DeliveryError, Message
from slamon.util.fsutil import read_secret
from slamon.util.schema import (
    HEADER_NAME_RE,
    PathError,
    Strict,
    check_headers,
    check_secret_source,
    check_url,
)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


async def post_json(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str]
) -> None:
    """POST and raise DeliveryError unless 2xx. Never quotes the URL (it may hold a token)."""
    try:
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json", **headers},
            allow_redirects=False,
        ) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                return
            # 4xx other than 408/429 will not get better by retrying
            retryable = resp.status >= 500 or resp.status in (408, 429)
            raise DeliveryError(f"http_{resp.status // 100}xx", f"HTTP {resp.status}",
                                retryable=retryable)
    except aiohttp.ClientConnectionError as exc:
        raise DeliveryError("connect", type(exc).__name__) from None
    except aiohttp.ClientError as exc:
        raise DeliveryError("http", type(exc).__name__) from None


class WebhookNotifier:
    kind = "webhook"

    def __init__(
        self,
        name: str,
        url: str,
        session: aiohttp.ClientSession,
        *,
        headers: Mapping[str, str] | None = None,
        secret: bytes | None = None,
        signature_header: str = "X-Slamon-Signature",
    ) -> None:
        self.name = name
        self._url = url
        self._session = session
        self._headers = dict(headers or {})
        self._secret = secret
        self._signature_header = signature_header

    async def send(self, message: Message) -> None:
        body = message.body()
        headers = {
            **self._headers,
            "Idempotency-Key": message.key,
            "X-Slamon-Event": message.kind.value,
        }
        if self._secret is not None:
            ts = str(int(time.time()))
            headers["X-Slamon-Timestamp"] = ts
            headers[self._signature_header] = sign(self._secret, ts, body)
        await post_json(self._session, self._url, body, headers)

    async def close(self) -> None:
        return None


# -- config -------------------------------------------------------------------


class WebhookChannel(Strict):
    """POST a JSON document; optional HMAC-SHA256 of the body in a header."""

    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    #: HMAC key (use ${ENV}); the signature goes in `signature_header` as sha256=<hex>
    hmac_secret: str | None = None
    hmac_secret_file: str | None = None
    signature_header: str = "X-Slamon-Signature"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("headers")
    @classmethod
    def _hdr(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookChannel:
        check_secret_source(self.hmac_secret, self.hmac_secret_file, "hmac_secret")
        if not HEADER_NAME_RE.fullmatch(self.signature_header):
            raise PathError(("signature_header",), "invalid header name")
        return self


def _build(channel_id: str, cfg: WebhookChannel, ctx: Context) -> WebhookNotifier:
    secret = read_secret(cfg.hmac_secret, cfg.hmac_secret_file)
    return WebhookNotifier(
        channel_id, cfg.url, ctx.session, headers=cfg.headers,
        secret=secret.encode() if secret else None,
        signature_header=cfg.signature_header,
    )


KIND = ChannelKind("webhook", WebhookChannel, _build)
