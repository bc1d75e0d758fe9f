"""Config model for `status_page:`, the public page customers read."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from slamon.config.auth import BasicAuth
from slamon.util.schema import Id, Strict, check_listen, check_url


class StatusPageConfig(Strict):
    enabled: bool = False
    title: str = "Service status"
    #: mount point of the HTML page (badges under <path>/badge/...)
    path: str = "/status"
    #: SLOs shown (and served as badges and JSON); None = all
    public_slos: list[Id] | None = None
    #: protect the page, badges and /api/v1/status
    basic_auth: BasicAuth | None = None
    #: serve the page on a listener of its own (host:port), public, while
    #: server.listen keeps /metrics and the API private; None = on server.listen
    listen: str | None = None
    #: block explorer link for report transactions, e.g. https://etherscan.io/tx/{tx_hash}
    explorer_tx_url: str | None = None
    #: incidents listed per SLO
    incidents: int = Field(default=10, ge=0, le=200)
    #: days on the uptime bar
    days: int = Field(default=90, ge=7, le=90)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9_.-][A-Za-z0-9_./-]*", value) or value.endswith("/"):
            raise ValueError("must be an absolute path like /status (no trailing slash)")
        if value.startswith(("/api", "/metrics", "/healthz", "/readyz")):
            raise ValueError("clashes with a built-in endpoint")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        return None if value is None else check_listen(value)

    @field_validator("explorer_tx_url")
    @classmethod
    def _explorer(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_url(value.replace("{tx_hash}", "0"))
        if "{tx_hash}" not in value:
            raise ValueError("must contain {tx_hash}")
        return value
