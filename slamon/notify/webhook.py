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

from slamon.notify.base import DeliveryError, Message


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
