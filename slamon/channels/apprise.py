"""Apprise: one channel kind for the many services Apprise speaks (ntfy, Discord,
Telegram, Teams, Gotify, Pushover, plain JSON/form POSTs, ...).

Optional: the `apprise` library comes with the ``apprise`` extra and is imported
only when a channel of this kind is validated or built, so slamon without it
runs every other channel.

An Apprise URL usually carries the service's token (``ntfys://:tk_abc@host/topic``,
``discord://id/token``), so every URL is a secret: inline (use ``${ENV}``) or
in a file, never quoted in an error, a log line or a repr. Apprise's own log
lines can quote a URL whole, so they are kept inside Apprise (see `load_apprise`).

One notification goes to every URL; a retry (the router's) goes only to the
URLs that have not accepted that notification yet, so a partial failure does
not duplicate the message on the services that already have it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from types import ModuleType
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from slamon.channels.base import ChannelKind, Context, DeliveryError, Message
from slamon.util.fsutil import read_secret
from slamon.util.schema import Duration, PathError, Problem, Strict, check_secret_source

#: the one line a user without the extra sees
INSTALL_HINT = "the apprise channel needs the Apprise library: pip install 'slamon[apprise]'"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")

#: notifications of which some URLs accepted and some not, remembered per channel
PARTIAL_MEMORY = 1000

_STATE = {"firing": "FIRING", "resolved": "RESOLVED", "info": "INFO"}


class AppriseMissing(RuntimeError):
    """The apprise library is not installed."""


def load_apprise() -> ModuleType:
    """The apprise module, or AppriseMissing with the install hint."""
    try:
        import apprise
    except ImportError:
        raise AppriseMissing(INSTALL_HINT) from None
    # Apprise logs some failures with the URL in full ("Unparseable URL
    # <url>"), token included; slamon's log chain redacts only userinfo and
    # secret-looking query keys, not tokens in a path, so Apprise's records
    # must not reach it. Delivery failures surface as DeliveryError instead.
    logging.getLogger(apprise.LOGGER_NAME).propagate = False
    # Apprise sends with requests; urllib3's DEBUG lines quote each request's
    # path, where services such as Discord and Slack carry their tokens
    pool = logging.getLogger("urllib3.connectionpool")
    if pool.level < logging.INFO:
        pool.setLevel(logging.INFO)
    return apprise


def url_problem(lib: ModuleType, url: str) -> str | None:
    """Why Apprise cannot use `url`, in words that never quote it; None if it can."""
    match = _SCHEME.match(url)
    if match is None:
        return "not an Apprise URL: write scheme://..., e.g. ntfys://ntfy.sh/my-topic"
    scheme = match.group(1).lower()
    if scheme not in lib.NotificationManager():
        return f"unknown Apprise scheme {scheme!r}"
    if lib.Apprise.instantiate(url) is None:
        return f"not a valid {scheme}:// URL (see that service's page in Apprise's documentation)"
    return None


def render(message: Message, prefix: str) -> tuple[str, str]:
    """(title, body): the title as the e-mail subject, the body the message text."""
    head = message.text.partition("\n")[0]
    title = f"{prefix} [{_STATE[message.status]}] {head}".strip()
    title = title.replace("\r", " ").replace("\n", " ")[:200]
    body = f"{message.text}\n\nslamon · {message.kind.value} · key {message.key}"
    return title, body


def _notify_type(lib: ModuleType, message: Message) -> Any:
    if message.status == "resolved":
        return lib.NotifyType.SUCCESS
    if message.status == "info":
        return lib.NotifyType.INFO
    if message.kind.value == "cert_expiring":
        return lib.NotifyType.WARNING
    return lib.NotifyType.FAILURE


class AppriseNotifier:
    kind = "apprise"

    def __init__(self, name: str, services: list[Any], *, lib: ModuleType,
                 title_prefix: str = "[slamon]", timeout: float = 10.0) -> None:
        """`services`: one Apprise plugin instance per configured URL, in order."""
        self.name = name
        self._lib = lib
        # one Apprise object per URL: a retry can go to the ones that failed only
        self._targets = [lib.Apprise(s) for s in services]
        self._services = [str(getattr(s, "service_name", "service")) for s in services]
        self._prefix = title_prefix
        self._timeout = timeout
        #: idempotency key -> indexes of the URLs that accepted it
        self._partial: OrderedDict[str, set[int]] = OrderedDict()

    def __repr__(self) -> str:
        # never the URLs: they hold tokens
        return f"AppriseNotifier(name={self.name!r}, urls={len(self._targets)})"

    async def _one(self, index: int, title: str, body: str, kind: Any) -> str | None:
        """None when the URL accepted, else what went wrong (without the URL)."""
        try:
            result = await self._targets[index].async_notify(
                body=body, title=title, notify_type=kind,
                body_format=self._lib.NotifyFormat.TEXT, timeout=self._timeout,
            )
        except Exception as exc:  # a plugin bug is a failed attempt, not a dead route
            return f"error ({type(exc).__name__})"
        if result:
            return None
        status = getattr(result, "status", None)
        return "timed out" if status == self._lib.AppriseResultStatus.TIMEOUT else "failed"

    async def send(self, message: Message) -> None:
        title, body = render(message, self._prefix)
        kind = _notify_type(self._lib, message)
        done = self._partial.get(message.key, set())
        pending = [i for i in range(len(self._targets)) if i not in done]
        outcomes = await asyncio.gather(*(self._one(i, title, body, kind) for i in pending))
        failed = [(i, why) for i, why in zip(pending, outcomes, strict=True) if why is not None]
        if not failed:
            self._partial.pop(message.key, None)
            return
        self._partial[message.key] = done | {i for i, why in zip(pending, outcomes,
                                                                strict=True) if why is None}
        self._partial.move_to_end(message.key)
        while len(self._partial) > PARTIAL_MEMORY:
            self._partial.popitem(last=False)
        reason = "timeout" if all(why == "timed out" for _, why in failed) else "apprise"
        text = ", ".join(f"urls[{i}] ({self._services[i]}) {why}" for i, why in failed)
        raise DeliveryError(reason, f"apprise: {text}")

    async def close(self) -> None:
        return None


# -- config -------------------------------------------------------------------


class AppriseUrl(Strict):
    """One Apprise URL: inline (use ``${ENV}``: it holds a token) or read from a file."""

    #: left out of the model's repr: it holds the service's token
    url: str | None = Field(default=None, repr=False)
    url_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AppriseUrl:
        check_secret_source(self.url, self.url_file, "url", required=True)
        return self


def _entries(value: Any) -> Any:
    # the common case is a plain string per URL: `urls: ["${NTFY_URL}"]`
    if isinstance(value, list):
        return [{"url": v} if isinstance(v, str) else v for v in value]
    return value


class AppriseChannel(Strict):
    """Any service Apprise supports, one or more URLs (the ``apprise`` extra)."""

    urls: Annotated[list[AppriseUrl], BeforeValidator(_entries)] = Field(min_length=1)
    #: the title is "<prefix> [FIRING] <first line of the text>", as an e-mail subject
    title_prefix: str = "[slamon]"
    #: per attempt, across all URLs (default: notify.delivery.timeout)
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _usable(self) -> AppriseChannel:
        if self.timeout is not None and self.timeout <= 0:
            raise PathError(("timeout",), "must be greater than 0")
        try:
            lib = load_apprise()
        except AppriseMissing:
            raise PathError((), INSTALL_HINT) from None
        # URLs from files are read (and checked the same way) when the channel is built
        problems: list[Problem] = [
            (("urls", i), problem)
            for i, entry in enumerate(self.urls)
            if entry.url is not None and (problem := url_problem(lib, entry.url)) is not None
        ]
        if problems:
            raise PathError.many(problems)
        return self


def _build(channel_id: str, cfg: AppriseChannel, ctx: Context) -> AppriseNotifier:
    lib = load_apprise()
    timeout = cfg.timeout if cfg.timeout is not None else ctx.timeout
    services: list[Any] = []
    for i, entry in enumerate(cfg.urls):
        url = read_secret(entry.url, entry.url_file) or ""
        service = lib.Apprise.instantiate(url)
        if service is None:
            source = "url_file" if entry.url_file is not None else "url"
            why = url_problem(lib, url) or "not usable"
            raise ValueError(f"notify channel {channel_id!r}: apprise urls[{i}] ({source}): {why}")
        # the router cancels a late attempt, but Apprise's worker thread runs on
        # until its sockets time out: bound those too
        service.socket_connect_timeout = timeout
        service.socket_read_timeout = timeout
        # Apprise spaces messages to one service by sleeping in its worker
        # (5.5 s unless a plugin says otherwise). That sleep eats the attempt's
        # timeout, and the abandoned thread then sends anyway: a duplicate.
        # The router already sends one message at a time per route and backs
        # off when a service refuses (429 is a failure, retried later).
        service.request_rate_per_sec = 0
        services.append(service)
    return AppriseNotifier(channel_id, services, lib=lib, title_prefix=cfg.title_prefix,
                           timeout=timeout)


KIND = ChannelKind("apprise", AppriseChannel, _build)
