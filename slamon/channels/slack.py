"""Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat accept this shape)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from pydantic import field_validator

from slamon.channels.base import ChannelKind, Context, Message
from slamon.channels.webhook import post_json
from slamon.util.schema import (
    Strict,
    check_url,
)

_ICON = {
    "firing": ":red_circle:",
    "resolved": ":large_green_circle:",
    "info": ":information_source:",
}


def _mrkdwn_escape(text: str) -> str:
    # Slack's three control characters; everything else is literal
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: Message, channel: str | None = None,
                  username: str | None = None) -> dict[str, Any]:
    head, _, rest = message.text.partition("\n")
    text = f"{_ICON[message.status]} *{_mrkdwn_escape(head)}*"
    if rest:
        text += "\n" + _mrkdwn_escape(rest)
    payload: dict[str, Any] = {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                   {"type": "context", "elements": [
                       {"type": "mrkdwn", "text": f"slamon · {message.kind.value} · "
                                                  f"key {message.key}"}]}],
    }
    if channel:
        payload["channel"] = channel
    if username:
        payload["username"] = username
    return payload


class SlackNotifier:
    kind = "slack"

    def __init__(self, name: str, url: str, session: aiohttp.ClientSession, *,
                 channel: str | None = None, username: str | None = None) -> None:
        self.name = name
        self._url = url
        self._session = session
        self._channel = channel
        self._username = username

    async def send(self, message: Message) -> None:
        body = json.dumps(slack_payload(message, self._channel, self._username)).encode()
        await post_json(self._session, self._url, body, {"Idempotency-Key": message.key})

    async def close(self) -> None:
        return None


# -- config -------------------------------------------------------------------


class SlackChannel(Strict):
    """Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat)."""

    url: str
    channel: str | None = None
    username: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)


def _build(channel_id: str, cfg: SlackChannel, ctx: Context) -> SlackNotifier:
    return SlackNotifier(channel_id, cfg.url, ctx.session,
                         channel=cfg.channel, username=cfg.username)


KIND = ChannelKind("slack", SlackChannel, _build)
