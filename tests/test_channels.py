"""Every notification channel conforms: one module owns its config model and its
sender, registered once in slamon.channels.CHANNELS (the gatus provider pattern)."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import aiohttp
import pytest

from slamon.channels import CHANNELS
from slamon.channels.base import Context
from slamon.config.notify import Channel
from slamon.util.schema import Strict

#: a minimal valid section per kind; a new channel without one fails below
EXAMPLES: dict[str, dict[str, Any]] = {
    "webhook": {"url": "http://127.0.0.1:9/hook", "hmac_secret": "s3cret"},
    "slack": {"url": "http://127.0.0.1:9/slack"},
    "email": {"host": "127.0.0.1", "port": 2525, "security": "none",
              "from": "slamon@example.org", "to": ["ops@example.org"]},
    "alertmanager": {"urls": ["http://127.0.0.1:9/"]},
    "apprise": {"urls": ["json://127.0.0.1:9/hook"]},
}


def test_every_kind_has_an_example() -> None:
    assert set(EXAMPLES) == set(CHANNELS)


def test_channel_model_offers_exactly_the_registered_kinds() -> None:
    hints = typing.get_type_hints(Channel)
    kinds = set(typing.get_args(hints["kind"]))
    assert kinds == set(CHANNELS)
    for kind, entry in CHANNELS.items():
        assert entry.kind == kind
        assert issubclass(entry.config, Strict)
        # the section on Channel is that kind's own model (or None)
        assert set(typing.get_args(hints[kind])) == {entry.config, type(None)}


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
async def test_each_kind_validates_and_builds_a_sender(kind: str) -> None:
    channel = Channel.model_validate({"id": f"my-{kind}", "kind": kind, kind: EXAMPLES[kind]})
    assert isinstance(channel.section, CHANNELS[kind].config)
    async with aiohttp.ClientSession() as session:
        notifier = CHANNELS[kind].build(channel.id, channel.section, Context(session, 5.0))
        assert notifier.name == f"my-{kind}"
        assert notifier.kind == kind
        assert inspect.iscoroutinefunction(notifier.send)
        await notifier.close()


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_unknown_key_in_a_section_is_an_error(kind: str) -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        Channel.model_validate({"id": "x", "kind": kind, kind: {**EXAMPLES[kind], "typo": 1}})


def test_section_must_match_kind() -> None:
    with pytest.raises(ValueError, match="section required for kind 'slack'"):
        Channel.model_validate({"id": "x", "kind": "slack", "webhook": EXAMPLES["webhook"]})
