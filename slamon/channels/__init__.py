"""Notification channels: one module per kind, each with its config model and sender.

To add a channel: write `slamon/channels/<kind>.py` with a `<Kind>Channel`
config model, a notifier class (``name``, ``kind``, ``async send(message)``,
``async close()``) and ``KIND = ChannelKind(...)``; list it below and add its
section to `slamon.config.notify.Channel`. tests/test_channels.py checks that
every kind conforms.
"""

from __future__ import annotations

from typing import Any

from slamon.channels import alertmanager, apprise, email, slack, webhook
from slamon.channels.base import ChannelKind

#: kind name -> its config model and builder
CHANNELS: dict[str, ChannelKind[Any]] = {
    m.KIND.kind: m.KIND for m in (webhook, slack, email, alertmanager, apprise)
}
