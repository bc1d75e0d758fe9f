"""Notifications: one module per channel behind one interface, and a router.

- `base`: Message, the Notifier protocol, DeliveryError, message text
- `webhook`, `slack`, `email`, `alertmanager`: the channels
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
