"""What every prober returns, and the one signature all probers share.

As in blackbox_exporter's prober/: one module per protocol, one function
signature; adding a protocol is adding a module and a line in the registry.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from slamon.config.targets import Target


class FailureReason(enum.StrEnum):
    """Fixed set, so dashboards and alerts can rely on the label values."""

    TIMEOUT = "timeout"
    DNS = "dns"
    REFUSED = "refused"
    RESET = "reset"
    TLS = "tls"
    STATUS = "status"
    BODY = "body"
    HEADER = "header"
    JSON = "json"
    TOO_SLOW = "too_slow"
    TOO_LARGE = "too_large"
    REDIRECTS = "redirects"
    #: DNS: the server says the name does not exist / could not answer / another bad rcode
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    RCODE = "rcode"
    #: DNS: the answer records failed an `answer_*` assertion
    ANSWER = "answer"
    #: ICMP: replies came back, but fewer than `max_packet_loss` allows
    PACKET_LOSS = "packet_loss"
    #: gRPC: the health check answered NOT_SERVING, UNKNOWN or SERVICE_UNKNOWN
    NOT_SERVING = "not_serving"
    #: gRPC: the call ended with a status other than OK (UNIMPLEMENTED, NOT_FOUND, ...)
    GRPC_STATUS = "grpc_status"
    #: heartbeat: no beat within the interval and its grace / the job said it failed
    NO_HEARTBEAT = "no_heartbeat"
    REPORTED_DOWN = "reported_down"
    #: TCP: the server does not offer STARTTLS, or refused the command
    STARTTLS = "starttls"
    #: HTTP: the proxy refused the CONNECT or the request (its status in the detail)
    PROXY = "proxy"
    #: HTTP: the response's version is not in `valid_http_versions`
    HTTP_VERSION = "http_version"
    OTHER = "other"


PHASES = ("dns", "connect", "tls", "processing", "transfer")

S = TypeVar("S")
V = TypeVar("V")


class PerSpec(Generic[S, V]):
    """What a prober derives from one config object, kept by the object's identity.

    Config objects are frozen and a reload makes new ones, so identity is a safe key;
    the spec is kept beside the value so a recycled id() never returns a stale value.
    At most `limit` entries: past that the cache starts again.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: dict[int, tuple[S, V]] = {}

    def get(self, spec: S, build: Callable[[S], V]) -> V:
        held = self._items.get(id(spec))
        if held is not None and held[0] is spec:
            return held[1]
        value = build(spec)
        if len(self._items) >= self.limit:
            self._items.clear()
        self._items[id(spec)] = (spec, value)
        return value


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What a TLS handshake showed, for blackbox_exporter's TLS metrics.

    The leaf's identity goes into `probe_ssl_last_chain_info`; both expiries are
    unix time. Equal facts are shared between probes (see `_tls.peer_tls`), so
    the collector can keep their label text by identity.
    """

    #: "TLS 1.3", "TLS 1.2", ... as blackbox_exporter names them; "unknown" else
    version: str
    #: the earliest notAfter of the verified chain (the presented one when not verified)
    earliest_expiry: float | None
    #: the earliest notAfter of the verified chain; None when it was not verified
    last_chain_expiry: float | None
    fingerprint_sha256: str = ""
    subject: str = ""
    issuer: str = ""
    #: the leaf's DNS subject alternative names, comma-separated
    subjectalternative: str = ""
    serialnumber: str = ""


@dataclass(slots=True)
class ProbeResult:
    """Outcome of one probe. `detail` is for humans and must hold no secrets."""

    ok: bool
    duration: float
    reason: FailureReason | None = None
    detail: str = ""
    status_code: int | None = None
    phases: dict[str, float] = field(default_factory=dict)
    #: the earliest certificate expiry of the verified chain (unix time)
    cert_expiry: float | None = None
    tls: TlsFacts | None = None
    http_version: str | None = None
    redirects: int = 0
    body_bytes: int = 0
    #: numbers only some kinds have, for their metrics: dns_* (rcode, record counts),
    #: icmp_packets_*, grpc_* (status code, serving status, ssl); see metrics/probe_kinds.py
    facts: dict[str, float] = field(default_factory=dict)

    @classmethod
    def failure(
        cls, reason: FailureReason, duration: float, detail: str = "", **kw: object
    ) -> ProbeResult:
        return cls(ok=False, duration=duration, reason=reason, detail=detail, **kw)  # type: ignore[arg-type]


#: The prober signature: the target's config and its timeout budget in seconds.
#: A prober must return within `timeout` (plus scheduling noise) and never raise.
Prober = Callable[["Target", float], Awaitable[ProbeResult]]
