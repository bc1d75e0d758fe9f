"""Targets: what is probed (http, tcp, dns, icmp, grpc), how often, and what a good answer is."""

from __future__ import annotations

import functools
import importlib.util
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
    bad_host,
    check_headers,
    check_secret_source,
    has_space,
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


#: the usual target URL: http(s)://, a host name or IPv4 address (letters, digits, dots,
#: dashes), an optional port, then anything; `url_problem` takes these without urlsplit
#: (half the cost of an HTTP target's validation)
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::([0-9]{1,5}))?(?:[/?#].*)?", re.DOTALL)


def url_problem(value: str) -> str | None:
    """What is wrong with a target's URL, or None. Never quotes the URL: it may carry
    credentials or come from ${ENV}."""
    if not value.strip():
        return "must not be empty"
    if has_space(value):
        return "invalid URL: contains whitespace"
    plain = _PLAIN_URL.fullmatch(value)
    if plain is not None and (plain[1] is None or 0 < int(plain[1]) <= 65535):
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "invalid URL: bad port or IPv6 address"
    if parts.scheme not in ("http", "https"):
        if not parts.scheme:
            return "invalid URL: no scheme, write http://... or https://..."
        return "URL scheme must be http or https"
    if not parts.hostname:
        return "invalid URL: no host"
    if port == 0:
        return "URL port must be 1-65535"
    return None


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
    #: an HTTP proxy, http://[USER:PASSWORD@]HOST:PORT: CONNECT for https URLs, the
    #: absolute URL for http ones
    proxy: str | None = None
    #: client certificate (PEM, the chain after the leaf) for servers that require one
    cert_file: str | None = None
    #: its private key (PEM, unencrypted); omit when cert_file holds the key too
    key_file: str | None = None
    #: TLS certificate expiry below this marks the probe failed (reason tls); None = only report it
    min_cert_validity: Duration | None = None
    #: the body assertions see this much of the body; the rest is read and dropped
    body_limit: Size = 1024 * 1024
    #: a body (as sent) larger than this fails the probe, reason too_large; None: any size
    max_body_size: Size | None = None
    ip_family: Literal["any", "ipv4", "ipv6"] = "any"
    #: offer HTTP/2 in the TLS handshake (ALPN) and speak it when the server picks it,
    #: as a browser does; http:// URLs and servers without h2 get HTTP/1.1
    http2: bool = False
    #: the response's HTTP version must be one of these (empty: any); reason http_version
    valid_http_versions: list[Literal["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"]] = Field(
        default_factory=list)
    #: open a new connection for each probe: reachability is what is measured
    fresh_connection: bool = True

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        problem = url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)

    @field_validator("fresh_connection")
    @classmethod
    def _fresh(cls, value: bool) -> bool:
        if not value:
            raise ValueError("only true is supported: slamon opens a new connection for every "
                             "probe (reachability is part of what an SLA measures); remove "
                             "the key")
        return value

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        # messages never quote the value: it may carry the proxy's password
        if value is None:
            return None
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValueError("invalid proxy URL: bad port") from None
        if parts.scheme != "http":
            raise ValueError("proxy URL must start with http:// (an HTTP proxy; the tunnel "
                             "to an https target is TLS end to end)")
        if not parts.hostname or port is None:
            raise ValueError("proxy URL needs a host and a port: http://HOST:PORT")
        if parts.path.strip("/") or parts.query:
            raise ValueError("proxy URL takes no path or query")
        return value

    @model_validator(mode="after")
    def _client_cert(self) -> HttpSpec:
        check_client_cert(self.cert_file, self.key_file)
        return self

    @field_validator("http2")
    @classmethod
    def _http2(cls, value: bool) -> bool:
        missing = value and missing_library("h2", "h2", "http2", "http2: true")
        if missing:
            raise ValueError(missing)
        return value

    @field_validator("body_limit", "max_body_size")
    @classmethod
    def _limit(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1 byte")
        return value


def check_client_cert(cert_file: str | None, key_file: str | None) -> None:
    if key_file is not None and cert_file is None:
        raise PathError.many([(("key_file",), "needs cert_file: the certificate it belongs to")])


class TcpStep(Strict):
    """One step of a TCP dialogue, as in blackbox_exporter's `query_response`:
    wait for `expect`, then write `send` (`${1}`, `${name}` expanded from what
    `expect` matched; `$$` is a literal `$`), then upgrade to TLS if `starttls`."""

    expect: Regex | None = None
    send: str | None = None
    starttls: bool = False

    @model_validator(mode="after")
    def _something(self) -> TcpStep:
        if self.expect is None and self.send is None and not self.starttls:
            raise ValueError("a step needs expect, send or starttls")
        return self


class TcpSpec(Strict):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    tls_verify: bool = True
    ca_file: str | None = None
    server_name: str | None = None
    #: client certificate and key, as for http
    cert_file: str | None = None
    key_file: str | None = None
    min_cert_validity: Duration | None = None
    send: str | None = None
    expect: Regex | None = None
    #: the STARTTLS dialogue of a mail protocol, before `send`/`expect`/`query_response`
    starttls: Literal["smtp", "imap", "pop3"] | None = None
    #: a dialogue of steps (blackbox_exporter's query_response); instead of send/expect
    query_response: list[TcpStep] = Field(default_factory=list)
    #: how many bytes to read while waiting for `expect`
    read_limit: Size = 64 * 1024
    ip_family: Literal["any", "ipv4", "ipv6"] = "any"

    @field_validator("starttls", mode="before")
    @classmethod
    def _starttls_name(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _dialogue(self) -> TcpSpec:
        check_client_cert(self.cert_file, self.key_file)
        problems: list[Problem] = []
        if self.query_response:
            problems.extend(((k,), "not allowed with query_response: make it a step")
                            for k in ("send", "expect") if getattr(self, k) is not None)
        upgrades = [i for i, step in enumerate(self.query_response) if step.starttls]
        if self.tls and (self.starttls or upgrades):
            problems.append((("tls",), "not allowed with starttls: the connection starts "
                                       "in plain text and STARTTLS upgrades it"))
        if self.starttls and upgrades:
            problems.append((("query_response", upgrades[0], "starttls"),
                             f"starttls: {self.starttls} already upgrades the connection; "
                             "these steps run after it"))
        problems.extend((("query_response", i, "starttls"), "only one step can upgrade")
                        for i in upgrades[1:])
        if problems:
            raise PathError.many(problems)
        return self


#: DNS rcodes by name (RFC 1035, 2136, 6891): checked here so a config is validated
#: without dnspython installed
DNS_RCODES: dict[str, int] = {
    "NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5,
    "YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10, "BADVERS": 16,
}
#: the query types a probe may ask for (the common ones; ANY is refused by many servers)
DNS_QUERY_TYPES = (
    "A", "AAAA", "ANY", "CAA", "CNAME", "DNSKEY", "DS", "HTTPS", "MX", "NAPTR", "NS", "PTR",
    "SOA", "SRV", "SSHFP", "SVCB", "TLSA", "TXT",
)
_DNS_LABEL_RE = re.compile(r"[A-Za-z0-9_*]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address -> (host, port).

    ValueError says what is wrong, for a config message."""
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    port_text: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid address {value!r}: write [v6 address]:port")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text  # a name, an IPv4 address or a bare IPv6 address: default port
    if not host or bad_host(host):
        raise ValueError(f"invalid address {value!r}: write host, host:port or [v6]:port")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"invalid port in {value!r}: must be 1-65535")
    return host, int(port_text)


class DnsSpec(Strict):
    """One DNS query to one server, judged like blackbox_exporter's dns prober."""

    #: the server asked: host, host:port or [v6]:port (port 53 by default)
    server: str
    query_name: str
    query_type: str = "A"
    transport: Literal["udp", "tcp"] = "udp"
    valid_rcodes: list[str] = Field(default_factory=lambda: ["NOERROR"])
    recursion_desired: bool = True
    #: each regex must match at least one answer record (blackbox: fail_if_none_matches_regexp)
    answer_matches: list[Regex] = Field(default_factory=list)
    #: each regex must match every answer record (blackbox: fail_if_not_matches_regexp)
    answer_all_match: list[Regex] = Field(default_factory=list)
    #: no answer record may match any of these (blackbox: fail_if_matches_regexp)
    answer_not_matches: list[Regex] = Field(default_factory=list)
    #: address family used when `server` is a name
    ip_family: Literal["any", "ipv4", "ipv6"] = "any"

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        split_host_port(value, 53)
        return value

    @field_validator("query_name")
    @classmethod
    def _name(cls, value: str) -> str:
        name = value.strip()
        if name in (".", ""):
            if name == ".":
                return name
            raise ValueError("must not be empty")
        labels = name.removesuffix(".").split(".")
        if len(name.removesuffix(".")) > 253:
            raise ValueError("invalid DNS name: longer than 253 characters")
        for label in labels:
            if not _DNS_LABEL_RE.fullmatch(label):
                raise ValueError(
                    f"invalid DNS name {value!r}: label {label!r} must be 1-63 letters, "
                    "digits, '-' or '_'"
                )
        return name

    @field_validator("query_type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        if isinstance(value, str):
            upper = value.strip().upper()
            if upper not in DNS_QUERY_TYPES:
                raise ValueError(
                    f"unknown query type {value!r} (known: {', '.join(DNS_QUERY_TYPES)})"
                )
            return upper
        return value

    @field_validator("valid_rcodes", mode="before")
    @classmethod
    def _rcodes(cls, value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValueError("must not be empty: omit the key for the default (NOERROR)")
        out: list[str] = []
        problems: list[Problem] = []
        for i, item in enumerate(items):
            sub: Loc = (i,) if isinstance(value, list) else ()
            name = item.strip().upper() if isinstance(item, str) else None
            if name not in DNS_RCODES:
                problems.append(
                    (sub, f"unknown rcode {item!r} (known: {', '.join(DNS_RCODES)})")
                )
            elif name not in out:
                out.append(name)
        if problems:
            raise PathError.many(problems)
        return out

    def address(self) -> tuple[str, int]:
        """The server's (host, port)."""
        return split_host_port(self.server, 53)


class IcmpSpec(Strict):
    """Echo requests to one host; up if enough replies come back within the timeout."""

    host: str = Field(min_length=1)
    #: echo requests per probe, `packet_interval` apart
    count: int = Field(default=1, ge=1, le=100)
    packet_interval: Duration = 0.2
    #: share of the packets that may go unanswered (0.2 = 20 %); none: one reply is enough
    max_packet_loss: float | None = Field(default=None, ge=0.0, lt=1.0)
    #: bytes of payload after the ICMP header (ping's default)
    payload_size: int = Field(default=56, ge=0, le=65000)
    ip_family: Literal["any", "ipv4", "ipv6"] = "any"

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if bad_host(value):
            raise ValueError("invalid host: write a name or an IP address without brackets")
        return value

    @field_validator("packet_interval")
    @classmethod
    def _packet_interval(cls, value: float) -> float:
        if value < 0.01:
            raise ValueError("must be at least 10ms")
        return value


class GrpcSpec(Strict):
    """The standard grpc.health.v1.Health/Check; SERVING is up, anything else down."""

    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    #: the service asked about; "" asks about the server as a whole
    service: str = ""
    tls: bool = False
    #: PEM CA certificates to trust (with `tls`); the system's by default
    ca_file: str | None = None
    #: TLS name to verify (and send as SNI) when it is not `host`
    server_name: str | None = None
    ip_family: Literal["any", "ipv4", "ipv6"] = "any"

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if bad_host(value):
            raise ValueError("invalid host: write a name or an IP address without brackets")
        return value

    @model_validator(mode="after")
    def _tls_keys(self) -> GrpcSpec:
        if not self.tls:
            given = [k for k in ("ca_file", "server_name") if getattr(self, k) is not None]
            if given:
                raise PathError.many([((k,), "only used with tls: true") for k in given])
        return self


class HeartbeatSpec(Strict):
    """A push monitor: a job calls `POST /api/v1/push/<token>` at least every
    `interval` (+ `grace`); each tick with a beat is good, one without is bad."""

    #: the URL's secret (e.g. ${BACKUP_PUSH_TOKEN}); at least 16 characters
    token: str | None = None
    token_file: str | None = None
    #: how late a beat may be; default a tenth of the target's interval
    grace: Duration | None = None

    @model_validator(mode="after")
    def _token(self) -> HeartbeatSpec:
        check_secret_source(self.token, self.token_file, "token", required=True)
        if self.token is not None and len(self.token) < 16:
            # a fixed message: the value may come from ${ENV} and must not be echoed
            raise PathError(("token",), "must be at least 16 characters (it is the only "
                                        "credential of the push URL)")
        return self


KINDS = ("http", "tcp", "dns", "icmp", "grpc", "heartbeat")

#: kinds whose prober needs an optional library: kind -> (top-level module, distribution,
#: pip extra); a top-level name, so that looking for it imports nothing
OPTIONAL_KINDS: dict[str, tuple[str, str, str]] = {
    "dns": ("dns", "dnspython", "dns"),
    "icmp": ("icmplib", "icmplib", "icmp"),
    "grpc": ("grpc_health", "grpcio-health-checking", "grpc"),
}


def missing_extra(kind: str) -> str | None:
    """The message for a kind whose library is not installed, else None."""
    need = OPTIONAL_KINDS.get(kind)
    if need is None:
        return None
    module, dist, extra = need
    return missing_library(module, dist, extra, f"kind {kind!r}")


@functools.cache
def missing_library(module: str, dist: str, extra: str, what: str) -> str | None:
    """The message for `what`, whose library is not installed, else None (memoised:
    checked once, not per target)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing or a broken install
        found = False
    if found:
        return None
    return f"{what} needs {dist}, which is not installed: pip install 'slamon[{extra}]'"


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
    missing = missing_extra(kind)
    if missing is not None:
        problems.append((("kind",), missing))
    for other in sorted(sections - {kind}):
        if kind in KINDS:
            problems.append(((other,), f"not allowed for kind {kind!r}"))
    return problems


class Target(Strict):
    id: Id
    kind: Literal["http", "tcp", "dns", "icmp", "grpc", "heartbeat"]
    interval: Duration = 30.0
    timeout: Duration = 10.0
    labels: dict[str, str] = Field(default_factory=dict)
    http: HttpSpec | None = None
    tcp: TcpSpec | None = None
    dns: DnsSpec | None = None
    icmp: IcmpSpec | None = None
    grpc: GrpcSpec | None = None
    heartbeat: HeartbeatSpec | None = None

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

    @model_validator(mode="after")
    def _icmp_budget(self) -> Target:
        # every echo request must leave before the timeout, or it could never be answered
        spec = self.icmp
        if spec is not None and (spec.count - 1) * spec.packet_interval >= self.timeout:
            raise PathError.many([(
                ("icmp", "count"),
                f"{spec.count} packets {format_duration(spec.packet_interval)} apart take "
                f"longer than the timeout ({format_duration(self.timeout)}): send fewer, "
                "closer together, or raise timeout",
            )])
        return self

    @property
    def spec(self) -> HttpSpec | TcpSpec | DnsSpec | IcmpSpec | GrpcSpec | HeartbeatSpec:
        spec = getattr(self, self.kind)
        assert isinstance(spec, HttpSpec | TcpSpec | DnsSpec | IcmpSpec | GrpcSpec
                          | HeartbeatSpec)
        return spec


def target_label_names(targets: Iterable[Target]) -> tuple[str, ...]:
    """Every name used in the targets' `labels`, sorted: the extra label names of
    slamon_target_info and of the alerts that join it."""
    names: set[str] = set()
    for target in targets:
        names.update(target.labels)
    return tuple(sorted(names))
