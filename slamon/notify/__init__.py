"""Notifications: which events reach which channel, when, and with what text.

The channels themselves (webhook, slack, email, alertmanager) live in
slamon.channels, one module each with its own config model.

- `messages`: the text of a notification, safe details, idempotency keys
- `router`: Dispatcher (thresholds, filters, reminders, retries, metrics)
- `burn`: multiwindow burn-rate evaluation -> events
- `certs`: TLS expiry reminders -> events
"""

from slamon.channels.base import DeliveryError, Message, Notifier
from slamon.notify.burn import BurnWatch, burn_alerts
from slamon.notify.certs import CertWatch
from slamon.notify.router import Dispatcher, live_streak

__all__ = [
    "BurnWatch",
    "CertWatch",
    "DeliveryError",
    "Dispatcher",
    "Message",
    "Notifier",
    "burn_alerts",
    "live_streak",
]
