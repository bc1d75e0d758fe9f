"""Config schema (pydantic v2). Pure: no I/O here, see loader.py for files.

Every model forbids unknown keys so a typo is an error, not a silently
ignored setting.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from slamon.durations import format_duration, parse_duration, parse_size

Loc = tuple[str | int, ...]
#: (sub-path, message) pairs, as carried by PathError
Problem = tuple[Loc, str]


def _finite(value: float) -> float:
    if math.isnan(value) or math.isinf(value):
        raise ValueError("must be a finite duration like 30s")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_finite)]
Size = Annotated[int, BeforeValidator(parse_size)]

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RESERVED_LABELS = {"target", "slo", "window", "phase", "result", "reason", "le", "sla"}


def _check_id(value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ValueError(
            f"invalid id {value!r}: use letters, digits and _ . : - (max 128), "
            "starting with a letter or digit"
        )
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Id = Annotated[str, AfterValidator(_check_id)]
Regex = Annotated[str, AfterValidator(_check_regex)]


#: one shared ``__pydantic_fields_set__`` per distinct set of explicitly given fields
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    @model_validator(mode="after")
    def _share_fields_set(self) -> Any:
        # Memory (issue 2): every instance carries a set of the fields given in the
        # input (216-728 bytes); models are frozen and pydantic copies that set
        # before changing it (model_copy), so instances with the same set share one.
        mine = self.__pydantic_fields_set__
        shared = _FIELDS_SETS.setdefault(frozenset(mine), mine)
        if shared is not mine:
            object.__setattr__(self, "__pydantic_fields_set__", shared)
        return self


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


def check_headers(value: dict[str, str]) -> dict[str, str]:
    """HTTP header names and values that cannot smuggle a second header or request."""
    problems: list[Problem] = []
    for name, val in value.items():
        if not _HEADER_NAME_RE.fullmatch(name):
            problems.append(((name,), "invalid header name"))
        elif "\r" in val or "\n" in val or "\0" in val:
            problems.append(((name,), "header value contains a line break or NUL"))
    if problems:
        raise PathError.many(problems)
    return value


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


MAX_WINDOW = 90 * 86400.0


def alert_window_problems(long: float | None, short: float | None) -> list[Problem]:
    problems: list[Problem] = []
    if long is not None and long > MAX_WINDOW:
        problems.append((("long",), "must be at most 90d"))
    if long is not None and short is not None and short >= long:
        problems.append((("short",), f"must be shorter than long ({format_duration(long)})"))
    return problems


class AlertWindow(Strict):
    """One multiwindow burn-rate pair (SRE workbook ch. 5)."""

    long: Duration
    short: Duration
    burn_rate: float = Field(gt=0)
    severity: Literal["page", "ticket"] = "page"

    @field_validator("long", "short")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @model_validator(mode="after")
    def _order(self) -> AlertWindow:
        problems = alert_window_problems(self.long, self.short)
        if problems:
            raise PathError.many(problems)
        return self


#: the SRE workbook pairs; immutable, so every SLO that uses the defaults shares them
_DEFAULT_ALERT_WINDOWS = (
    AlertWindow(long=3600, short=300, burn_rate=14.4, severity="page"),
    AlertWindow(long=6 * 3600, short=1800, burn_rate=6.0, severity="page"),
    AlertWindow(long=86400, short=7200, burn_rate=3.0, severity="ticket"),
    AlertWindow(long=3 * 86400, short=6 * 3600, burn_rate=1.0, severity="ticket"),
)


def default_alert_windows() -> list[AlertWindow]:
    return list(_DEFAULT_ALERT_WINDOWS)


def slo_problems(
    targets: list[str | None], sli: str | None, has_threshold: bool, window: float | None
) -> list[Problem]:
    """Cross-field checks of one SLO (None = that field is itself invalid)."""
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for j, tid in enumerate(targets):
        if tid is None:
            continue
        if tid in first:
            problems.append(
                (("targets", j), f"target {tid!r} listed twice (also targets[{first[tid]}])")
            )
        else:
            first[tid] = j
    if sli == "latency" and not has_threshold:
        problems.append((("latency_threshold",), "required when sli is latency (e.g. 300ms)"))
    if sli == "availability" and has_threshold:
        problems.append((("latency_threshold",), "only allowed when sli is latency"))
    if window is not None and window > MAX_WINDOW:
        problems.append((("window",), "must be at most 90d"))
    if window is not None and window < 60:
        problems.append((("window",), "must be at least 1m"))
    return problems


class Slo(Strict):
    id: Id
    targets: list[Id] = Field(min_length=1)
    objective: float
    sli: Literal["availability", "latency"] = "availability"
    latency_threshold: Duration | None = None
    window: Duration = 30 * 86400.0
    alert_windows: list[AlertWindow] = Field(default_factory=default_alert_windows)
    #: composite SLOs: length of a time slice; default = the longest part interval
    slice: Duration | None = None
    description: str = ""

    @field_validator("objective")
    @classmethod
    def _objective(cls, value: float) -> float:
        if 1 < value <= 100:
            # a fixed example: the message must not echo a value (it may come from ${ENV})
            raise ValueError("objective is a ratio: use 0.999 for 99.9%")
        if value == 1:
            raise ValueError("must be less than 1: an objective of 100% leaves no error budget")
        if not 0 < value < 1:
            raise ValueError("must be a ratio between 0 and 1 (exclusive), e.g. 0.999")
        return value

    @field_validator("latency_threshold")
    @classmethod
    def _threshold(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @model_validator(mode="after")
    def _checks(self) -> Slo:
        if "alert_windows" not in self.model_fields_set:
            # the workbook pairs are for a 30d SLO: drop those longer than this SLO's window
            fitting = [aw for aw in self.alert_windows if aw.long <= self.window]
            object.__setattr__(self, "alert_windows", fitting)
        problems = slo_problems(
            list[str | None](self.targets),
            self.sli,
            self.latency_threshold is not None,
            self.window,
        )
        if problems:
            raise PathError.many(problems)
        return self


class ServerConfig(Strict):
    listen: str = "127.0.0.1:9115"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 127.0.0.1:9115 or [::1]:9115")
        if not host:
            raise ValueError("host missing: use 0.0.0.0:PORT to listen on all addresses")
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            raise ValueError("an IPv6 address must be in brackets, e.g. [::1]:9115")
        if any(ch.isspace() for ch in host) or host in ("[]",):
            raise ValueError("must be host:port, e.g. 127.0.0.1:9115 or [::1]:9115")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class SchedulerConfig(Strict):
    #: probes in flight at once, across all targets
    max_concurrency: int = Field(default=1000, ge=1, le=100_000)
    #: spread first probes over each target's interval by a stable hash of its id
    spread: bool = True


def reference_problems(
    targets: list[tuple[str | None, float | None]],
    slos: list[tuple[str | None, list[str | None], float | None]],
    targets_complete: bool = True,
) -> list[Problem]:
    """Checks across sections. Pure, shared with the loader's raw pass.

    `targets`: (id, interval) per target, None where unknown/invalid;
    `slos`: (id, target ids, slice) per SLO. With `targets_complete` False
    (some target entry is unreadable) unknown references are not reported.
    """
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    intervals: dict[str, float | None] = {}
    for i, (tid, interval) in enumerate(targets):
        if tid is None:
            continue
        if tid in seen:
            problems.append(
                (("targets", i, "id"), f"duplicate id {tid!r} (also targets[{seen[tid]}])")
            )
        else:
            seen[tid] = i
            intervals[tid] = interval
    slo_seen: dict[str, int] = {}
    for i, (sid, refs, slice_) in enumerate(slos):
        if sid is not None:
            if sid in slo_seen:
                problems.append(
                    (("slos", i, "id"), f"duplicate id {sid!r} (also slos[{slo_seen[sid]}])")
                )
            else:
                slo_seen[sid] = i
        unknown = False
        for j, tid in enumerate(refs):
            if tid is None:
                unknown = True
            elif tid not in seen:
                unknown = True
                if targets_complete:
                    problems.append((("slos", i, "targets", j), _unknown_target(tid, seen)))
        if slice_ is not None and refs and not unknown:
            known = [intervals[t] for t in refs if t is not None]
            if all(v is not None for v in known):
                longest = max(v for v in known if v is not None)
                if slice_ < longest:
                    problems.append(
                        (
                            ("slos", i, "slice"),
                            "must be at least the longest part interval "
                            f"({format_duration(longest)})",
                        )
                    )
    return problems


def _unknown_target(tid: str, known: dict[str, int]) -> str:
    import difflib

    message = f"unknown target {tid!r}"
    close = difflib.get_close_matches(tid, list(known), n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    elif not known:
        message += " (no targets are defined)"
    return message


class KeyConfig(Strict):
    """The oracle's signing key: an encrypted JSON keystore and its password file
    (both must be readable by the owner only), or for development only the name
    of an environment variable holding a raw private key."""

    keystore: str | None = None
    password_file: str | None = None
    dev_key_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> KeyConfig:
        file_based = self.keystore is not None or self.password_file is not None
        if file_based and self.dev_key_env is not None:
            raise PathError(("dev_key_env",), "use either keystore + password_file or dev_key_env")
        if file_based and (self.keystore is None or self.password_file is None):
            missing = "password_file" if self.password_file is None else "keystore"
            raise PathError((missing,), "required with a keystore")
        if not file_based and self.dev_key_env is None:
            raise PathError((), "set keystore + password_file (or dev_key_env for development)")
        return self


class OracleConfig(Strict):
    """Signed SLA reports: published on-chain (mode chain) or only written to an
    outbox and served over HTTP for a relayer (mode attest)."""

    mode: Literal["chain", "attest"] = "chain"
    key: KeyConfig
    #: EIP-712 domain: the chain id and the SLACompensation contract address
    chain_id: int = Field(ge=1)
    contract: str
    #: JSON-RPC endpoint (mode chain); a URL with credentials is never logged
    rpc_url: str | None = None
    confirmations: int = Field(default=1, ge=0, le=64)
    #: EIP-1559 fee cap: never pay more per gas than this
    max_fee_gwei: float = Field(default=200.0, gt=0)
    priority_fee_gwei: float = Field(default=1.0, ge=0)
    #: gas limit = estimate x margin
    gas_margin: float = Field(default=1.25, ge=1.0, le=3.0)
    #: a transaction not mined after this is replaced (same nonce, higher fee)
    replace_after: Duration = 60.0
    #: retry back-off bounds while the chain is unreachable
    retry_min: Duration = 1.0
    retry_max: Duration = 300.0
    #: attest mode (and a copy in chain mode): signed report files; default <state dir>/outbox
    outbox: str | None = None
    #: SLAs to report (default: all)
    slas: list[Id] | None = None
    #: per SLA, the start (unix seconds) of the contract's period 0; in chain mode read
    #: from the contract when absent (and checked against it when present)
    schedule_starts: dict[str, int] = Field(default_factory=dict)

    @field_validator("contract")
    @classmethod
    def _address(cls, value: str) -> str:
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise ValueError("must be an address: 0x followed by 40 hex digits")
        return value

    @model_validator(mode="after")
    def _rpc(self) -> OracleConfig:
        if self.mode == "chain" and not self.rpc_url:
            raise PathError(("rpc_url",), "required when mode is chain")
        if self.retry_min > self.retry_max:
            raise PathError(("retry_min",), "must not exceed retry_max")
        return self


class ShardConfig(Strict):
    """Scale-out: this instance probes only its share of the targets (stable hash)."""

    index: int = Field(default=0, ge=0)
    count: int = Field(default=1, ge=1, le=1024)

    @model_validator(mode="after")
    def _range(self) -> ShardConfig:
        if self.index >= self.count:
            raise PathError(("index",), f"must be below count ({self.count})")
        return self


class StateConfig(Strict):
    """Durable state (SQLite). Defaults suit systemd's StateDirectory=."""

    #: default: $STATE_DIRECTORY/slamon.sqlite3 (systemd), else ./state/slamon.sqlite3
    path: str | None = None
    #: how often pending results are written (one transaction per flush)
    flush_interval: Duration = 1.0
    #: how often SLO windows are snapshotted (the journal covers the time between)
    snapshot_interval: Duration = 60.0
    #: how long evidence leaves of closed periods are kept
    evidence_retention: Duration = 400 * 86400.0

    @field_validator("flush_interval")
    @classmethod
    def _flush(cls, value: float) -> float:
        if not 0.05 <= value <= 60:
            raise ValueError("must be between 50ms and 1m")
        return value

    @field_validator("snapshot_interval")
    @classmethod
    def _snap(cls, value: float) -> float:
        if not 1 <= value <= 3600:
            raise ValueError("must be between 1s and 1h")
        return value

    def resolved_path(self, environ: Mapping[str, str] | None = None) -> Path:
        env = os.environ if environ is None else environ
        if self.path:
            return Path(self.path).expanduser()
        state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
        if state_dir:
            return Path(state_dir) / "slamon.sqlite3"
        return Path("state") / "slamon.sqlite3"


class PathError(ValueError):
    """A validation error that knows the sub-path(s) it is about.

    pydantic reports validator errors at the validated value's own location; the
    loader appends each item's sub-path so users see e.g. `targets[3].timeout`,
    and reports every item, so one validator can report several problems.
    """

    def __init__(self, subpath: Loc, message: str) -> None:
        super().__init__(message)
        self.subpath = subpath
        self.message = message
        self.items: list[Problem] = [(subpath, message)]

    @classmethod
    def many(cls, items: list[Problem]) -> PathError:
        assert items
        err = cls(items[0][0], items[0][1])
        err.items = list(items)
        if len(items) > 1:
            err.args = ("; ".join(f"{_dotted(sub)}: {msg}" if sub else msg for sub, msg in items),)
        return err


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


from slamon.config.sla import MaintenanceWindow, Sla  # noqa: E402 - sla.py imports from here
from slamon.notify_config import NotifyConfig, StatusPageConfig  # noqa: E402


def sla_problems(
    slas: list[Sla],
    slos: list[Slo],
    targets: list[Target],
    maintenance: list[MaintenanceWindow],
) -> list[Problem]:
    """References from `slas` and `maintenance` to SLOs, targets and each other."""
    problems: list[Problem] = []
    slo_by_id = {s.id: s for s in slos}
    target_by_id = {t.id: t for t in targets}
    seen: dict[str, int] = {}
    onchain: dict[bytes, int] = {}
    for i, sla in enumerate(slas):
        if sla.id in seen:
            problems.append(
                (("slas", i, "id"), f"duplicate id {sla.id!r} (also slas[{seen[sla.id]}])")
            )
        else:
            seen[sla.id] = i
        slo = slo_by_id.get(sla.slo)
        if slo is None:
            message = f"unknown SLO {sla.slo!r}"
            close = difflib.get_close_matches(sla.slo, list(slo_by_id), n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
            problems.append((("slas", i, "slo"), message))
            continue
        key = sla.onchain_id_bytes
        if key in onchain:
            problems.append(
                (("slas", i, "onchain_id"), f"same on-chain id as slas[{onchain[key]}]")
            )
        else:
            onchain[key] = i
        parts = [target_by_id[t] for t in slo.targets if t in target_by_id]
        if len(parts) > 1:
            longest = max(t.interval for t in parts)
            if sla.resolution_s < longest:
                problems.append(
                    (
                        ("slas", i, "evidence_resolution"),
                        "a composite SLA needs buckets at least as long as the longest part "
                        f"interval ({format_duration(longest)}), or most buckets lack a probe",
                    )
                )
    for i, window in enumerate(maintenance):
        for j, tid in enumerate(window.targets):
            if tid not in target_by_id:
                problems.append((("maintenance", i, "targets", j), _unknown_target(tid, {
                    t: 0 for t in target_by_id})))
        for j, sid in enumerate(window.slas):
            if sid not in seen:
                problems.append((("maintenance", i, "slas", j), f"unknown SLA {sid!r}"))
    return problems


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    targets: list[Target] = Field(default_factory=list)
    slos: list[Slo] = Field(default_factory=list)
    slas: list[Sla] = Field(default_factory=list)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    state: StateConfig = Field(default_factory=StateConfig)
    oracle: OracleConfig | None = None
    shard: ShardConfig = Field(default_factory=ShardConfig)
    notify: NotifyConfig | None = None
    status_page: StatusPageConfig = Field(default_factory=StatusPageConfig)

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems = reference_problems(
            [(t.id, t.interval) for t in self.targets],
            [(s.id, list[str | None](s.targets), s.slice) for s in self.slos],
        )
        if not problems:
            problems = sla_problems(self.slas, self.slos, self.targets, self.maintenance)
        problems += self._people_problems()
        if not problems and self.oracle is not None and self.oracle.slas is not None:
            known = {s.id for s in self.slas}
            for j, sid in enumerate(self.oracle.slas):
                if sid not in known:
                    problems.append((("oracle", "slas", j), f"unknown SLA {sid!r}"))
        if problems:
            raise PathError.many(problems)
        return self

    def _people_problems(self) -> list[Problem]:
        """References from notification routes and the status page."""
        problems: list[Problem] = []
        known = {
            "slos": {s.id for s in self.slos},
            "slas": {s.id for s in self.slas},
            "targets": {t.id for t in self.targets},
        }
        names = {"slos": "SLO", "slas": "SLA", "targets": "target"}
        if self.notify is not None:
            for i, route in enumerate(self.notify.routes):
                for field_name, ids in known.items():
                    for j, ref in enumerate(getattr(route, field_name)):
                        if ref not in ids:
                            problems.append((("notify", "routes", i, field_name, j),
                                             f"unknown {names[field_name]} {ref!r}"))
        for j, ref in enumerate(self.status_page.public_slos or []):
            if ref not in known["slos"]:
                problems.append((("status_page", "public_slos", j), f"unknown SLO {ref!r}"))
        return problems

    def target(self, target_id: str) -> Target:
        for t in self.targets:
            if t.id == target_id:
                return t
        raise KeyError(target_id)
