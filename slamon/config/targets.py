"""Targets: what is probed (http, tcp), how often, and what a good answer is."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from slamon.util.durations import format_duration
from slamon.util.schema import (
    Duration,
    Id,
    Loc,
    PathError,
    Problem,
    Regex,
    Size,
    Strict,
    check_headers,
)

_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


_RESERVED_LABELS = {"target", "slo", "window", "phase", "result", "reason", "le", "sla"}


def _status_codes(value: Any) -> Any:
    """Accept 200, "2xx", "200-299" or a list of those; return sorted unique ints.

    Every bad item is reported, at its index when a list was given.
    """
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("must not be empty: omit the key for the default (2xx)")
    codes: set[int] = set()
    problems: list[Problem] = []
    for i, item in enumerate(items):
        sub: Loc = (i,) if isinstance(value, list) else ()
        try:
            codes.update(_status_item(item))
        except ValueError as exc:
            problems.append((sub, str(exc)))
    if problems:
        raise PathError.many(problems)
    return sorted(codes)


def _status_item(item: Any) -> list[int]:
    if isinstance(item, bool) or not isinstance(item, int | str):
        raise ValueError("status code must be a number like 200, a class like 2xx or 200-299")
    if isinstance(item, int):
        if not 100 <= item <= 599:
            raise ValueError(f"status code {item} is outside 100-599")
        return [item]
    text = item.strip().lower()
    if re.fullmatch(r"[1-5]xx", text):
        base = int(text[0]) * 100
        return list(range(base, base + 100))
    if re.fullmatch(r"\d{3}\s*-\s*\d{3}", text):
        lo, hi = (int(x) for x in text.split("-"))
        if not (100 <= lo <= hi <= 599):
            raise ValueError(f"invalid status range {item!r}: use low-high within 100-599")
        return list(range(lo, hi + 1))
    if re.fullmatch(r"\d+", text):
        if not 100 <= int(text) <= 599:
            raise ValueError(f"status code {text} is outside 100-599")
        return [int(text)]
    raise ValueError(f"invalid status code {item!r}: use 200, 2xx or 200-299")


#: one shared list per distinct list of status codes (config objects are frozen)
_CODE_LISTS: dict[tuple[int, ...], list[int]] = {}


def _shared_codes(value: list[int]) -> list[int]:
    """The default 2xx list is 100 ints (about 2 KB per target): share equal lists."""
    return _CODE_LISTS.setdefault(tuple(value), value)


class JsonAssertion(Strict):
    """`path` is dotted (`data.items.0.state`); `equals` is compared after JSON decoding."""

    path: str = Field(min_length=1)
    equals: Any


class HeaderAssertion(Strict):
    name: str = Field(min_length=1)
    regex: Regex
    #: fail if the header is absent (default) rather than pass
    allow_missing: bool = False


class HttpSpec(Strict):
    url: str
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    valid_status_codes: Annotated[
        list[int], BeforeValidator(_status_codes), AfterValidator(_shared_codes)
    ] = Field(default_factory=lambda: _shared_codes(list(range(200, 300))))
    body_contains: list[str] = Field(default_factory=list)
    body_matches: list[Regex] = Field(default_factory=list)
    body_not_matches: list[Regex] = Field(default_factory=list)
    json_equals: list[JsonAssertion] = Field(default_factory=list)
    header_matches: list[HeaderAssertion] = Field(default_factory=list)
    max_response_time: Duration | None = None
    follow_redirects: bool = True
    max_redirects: int = Field(default=10, ge=0, le=50)
    tls_verify: bool = True
    ca_file: str | None = None
    #: TLS certificate expiry below this marks the probe failed (reason tls); None = only report it
    min_cert_validity: Duration | None = None
    body_limit: Size = 1024 * 1024
    ip_family: Literal["any", "ipv4", "ipv6"] = "any"
    #: open a new connection for each probe: reachability is what is measured
    fresh_connection: bool = True

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        # Messages never quote the URL: it may carry credentials or come from ${ENV}.
        from urllib.parse import urlsplit

        if not value.strip():
            raise ValueError("must not be empty")
        if any(ch.isspace() for ch in value):
            raise ValueError("invalid URL: contains whitespace")
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValueError("invalid URL: bad port or IPv6 address") from None
        if parts.scheme not in ("http", "https"):
            if not parts.scheme:
                raise ValueError("invalid URL: no scheme, write http://... or https://...")
            raise ValueError("URL scheme must be http or https")
        if not parts.hostname:
            raise ValueError("invalid URL: no host")
        if port == 0:
            raise ValueError("URL port must be 1-65535")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)

    @field_validator("body_limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1 byte")
        return value


class TcpSpec(Strict):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    tls_verify: bool = True
    ca_file: str | None = None
    server_name: str | None = None
    min_cert_validity: Duration | None = None
    send: str | None = None
    expect: Regex | None = None
    #: how many bytes to read while waiting for `expect`
    read_limit: Size = 64 * 1024
    ip_family: Literal["any", "ipv4", "ipv6"] = "any"


KINDS = ("http", "tcp")


def target_problems(
    kind: str, interval: float | None, timeout: float | None, sections: set[str]
) -> list[Problem]:
    """Cross-field checks of one target. Pure, shared with the loader's raw pass.

    `interval`/`timeout` are None when they are themselves invalid (then they are
    not compared); `sections` are the protocol sections present.
    """
    problems: list[Problem] = []
    if interval is not None and timeout is not None and timeout >= interval:
        problems.append(
            (("timeout",), f"must be shorter than interval ({format_duration(interval)})")
        )
    if kind in KINDS and kind not in sections:
        problems.append(((kind,), f"section required for kind {kind!r}"))
    for other in sorted(sections - {kind}):
        if kind in KINDS:
            problems.append(((other,), f"not allowed for kind {kind!r}"))
    return problems


class Target(Strict):
    id: Id
    kind: Literal["http", "tcp"]
    interval: Duration = 30.0
    timeout: Duration = 10.0
    labels: dict[str, str] = Field(default_factory=dict)
    http: HttpSpec | None = None
    tcp: TcpSpec | None = None

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        problems: list[Problem] = []
        for key in value:
            if not _LABEL_RE.fullmatch(key) or key.startswith("__"):
                problems.append(
                    ((key,), "invalid label name: use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __")
                )
            elif key in _RESERVED_LABELS:
                problems.append(
                    (
                        (key,),
                        f"label name is reserved by slamon ({', '.join(sorted(_RESERVED_LABELS))})",
                    )
                )
        if problems:
            raise PathError.many(problems)
        return value

    @model_validator(mode="after")
    def _sections(self) -> Target:
        present = {name for name in KINDS if getattr(self, name) is not None}
        problems = target_problems(self.kind, self.interval, self.timeout, present)
        if problems:
            raise PathError.many(problems)
        return self

    @property
    def spec(self) -> HttpSpec | TcpSpec:
        spec = self.http if self.kind == "http" else self.tcp
        assert spec is not None
        return spec


def target_label_names(targets: Iterable[Target]) -> tuple[str, ...]:
    """Every name used in the targets' `labels`, sorted: the extra label names of
    slamon_target_info and of the alerts that join it."""
    names: set[str] = set()
    for target in targets:
        names.update(target.labels)
    return tuple(sorted(names))
