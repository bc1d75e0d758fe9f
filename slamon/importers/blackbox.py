"""blackbox_exporter modules + Prometheus scrape jobs -> slamon targets.

A blackbox module says *how* to probe; a Prometheus job with
`metrics_path: /probe` and `params: {module: [...]}` says *what*: its
`static_configs` (and simple `file_sd_configs`) targets, usually moved into the
`target` parameter by the `__address__ -> __param_target` relabel rule. Each
module becomes a template (the `http`/`tcp` section without the address), and
each probed address one slamon target built from its job's template.

Every option slamon has no equivalent for is listed in a `#` comment of the
output, by module or job and option, with the reason. http, tcp, dns, icmp
and grpc modules are converted; a unix module, which slamon cannot probe, is
listed with its options and the addresses it probes. Nothing is dropped
silently.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from slamon.config.loader import ConfigError, parse_config
from slamon.importers import (
    InputError,
    comment,
    dump_item,
    inline,
    load_documents,
    unique_id,
    where,
)
from slamon.util.durations import format_duration, parse_duration, parse_size
from slamon.util.schema import Loc

__all__ = ["Reader", "import_blackbox"]

#: `read(pattern)` -> [(file name, text)] for a `file_sd_configs` pattern; raises OSError
Reader = Callable[[str], list[tuple[str, str]]]

PROBERS = ("http", "tcp", "dns", "icmp", "grpc", "unix")
#: Prometheus' defaults when neither the job nor `global` sets them
DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 10.0
#: the options that hold secrets: their values never reach a comment
_SECRET_KEYS = {"password", "client_secret", "bearer_token", "credentials", "secret_access_key"}


@dataclass
class Template:
    """One blackbox module as slamon target settings (everything but the address)."""

    name: str
    prober: str
    timeout: float | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    #: options not carried over: "http.valid_http_versions: [...]: why"
    notes: list[str] = field(default_factory=list)
    #: why the whole module cannot be imported (None: it can)
    reason: str | None = None


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, source: str, loc: Loc, message: str) -> None:
        self.lines.append(f"{where(source, loc)}: {message}")


def _shown(key: str, value: Any) -> str:
    if key in _SECRET_KEYS:
        return "<secret, not shown>"
    if isinstance(value, dict):
        return inline({k: "<secret, not shown>" if k in _SECRET_KEYS else v
                       for k, v in value.items()})
    return inline(value)


# ------------------------------------------------------------------ regexes


def _go_regex(source: str) -> tuple[str | None, str | None]:
    """A Go (RE2) regex as Python `re` text: (pattern or None, note or None).

    RE2 accepts a repeated anchor (`^+`, blackbox's own pop3 example) and `\\z`;
    Python does not. Anything else Python rejects is not carried over.
    """
    candidates = [source]
    rewritten = re.sub(r"(?<!\\)([\^$])\+", r"\1", source).replace(r"\z", r"\Z")
    if rewritten != source:
        candidates.append(rewritten)
    for i, cand in enumerate(candidates):
        try:
            re.compile(cand)
        except re.error:
            continue
        return cand, (f"regex {inline(source)} rewritten as {inline(cand)} for Python"
                      if i else None)
    try:
        re.compile(source)
    except re.error as exc:
        return None, f"not a valid Python regular expression ({exc})"
    return source, None  # pragma: no cover - the first candidate compiled


# ------------------------------------------------------------------ modules


def _tls_config(raw: Any, kind: str, loc: Loc, source: str, problems: _Problems,
                spec: dict[str, Any], notes: list[str]) -> None:
    prefix = f"{kind}.tls_config"
    if not isinstance(raw, dict):
        problems.add(source, loc, "must be a mapping")
        return
    for key, value in raw.items():
        if key == "insecure_skip_verify":
            if not isinstance(value, bool):
                problems.add(source, (*loc, key), "must be true or false")
            elif value:
                spec["tls_verify"] = False
        elif key == "ca_file":
            if not isinstance(value, str):
                problems.add(source, (*loc, key), "must be a file name")
            else:
                spec["ca_file"] = value
        elif key == "server_name" and kind == "tcp":
            spec["server_name"] = str(value)
        elif key == "server_name":
            notes.append(f"{prefix}.server_name: {_shown(key, value)}: slamon's HTTP prober "
                         "uses the URL's host for SNI and verification")
        elif key in ("cert_file", "key_file"):
            if not isinstance(value, str):
                problems.add(source, (*loc, key), "must be a file name")
            else:
                spec[key] = value
        elif key in ("cert", "key"):
            notes.append(f"{prefix}.{key}: {_shown(key, value)}: inline PEM is not carried "
                         f"over: write it to a file and set {key}_file")
        elif key in ("min_version", "max_version"):
            notes.append(f"{prefix}.{key}: {_shown(key, value)}: slamon uses Python's "
                         "default TLS versions")
        else:
            notes.append(f"{prefix}.{key}: {_shown(key, value)}: no slamon equivalent")


def _ip_family(raw: dict[str, Any], kind: str, loc: Loc, source: str, problems: _Problems,
               spec: dict[str, Any], notes: list[str]) -> None:
    preferred = raw.get("preferred_ip_protocol")
    fallback = raw.get("ip_protocol_fallback", True)
    if preferred is None and "ip_protocol_fallback" not in raw:
        return
    if preferred is not None and preferred not in ("ip4", "ip6"):
        problems.add(source, (*loc, "preferred_ip_protocol"), "must be ip4 or ip6")
        return
    if not isinstance(fallback, bool):
        problems.add(source, (*loc, "ip_protocol_fallback"), "must be true or false")
        return
    family = "ipv4" if preferred == "ip4" else "ipv6"  # blackbox prefers ip6 by default
    if not fallback:
        spec["ip_family"] = family
    elif preferred is not None:
        notes.append(f"{kind}.preferred_ip_protocol: {preferred} (with fallback): slamon "
                     "connects to any address family in the resolver's order (ip_family: any)")


def _regex_list(raw: Any, key: str, loc: Loc, source: str, problems: _Problems,
                notes: list[str], kind: str) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        problems.add(source, (*loc, key), "must be a list of regular expressions")
        return []
    out: list[str] = []
    for item in raw:
        pat, note = _go_regex(item)
        if note is not None:
            notes.append(f"{kind}.{key}: {note}" if pat is not None
                         else f"{kind}.{key}: {inline(item)}: {note}")
        if pat is not None:
            out.append(pat)
    return out


def _header_rules(raw: Any, key: str, loc: Loc, source: str, problems: _Problems,
                  notes: list[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        problems.add(source, (*loc, key), "must be a list of {header, regexp, allow_missing}")
        return []
    out: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("header"), str) \
                or not isinstance(item.get("regexp"), str):
            problems.add(source, (*loc, key, i), "needs header and regexp (text)")
            continue
        allow = item.get("allow_missing", False)
        if not isinstance(allow, bool):
            problems.add(source, (*loc, key, i, "allow_missing"), "must be true or false")
            continue
        pat, note = _go_regex(item["regexp"])
        if pat is None:
            notes.append(f"http.{key}[{i}]: {inline(item['regexp'])}: {note}")
            continue
        if note is not None:
            notes.append(f"http.{key}[{i}]: {note}")
        if key == "fail_if_header_matches":
            # "must not match" as slamon's "must match": a negative lookahead over the value
            pat = rf"\A(?!(?s:.*?)(?:{pat}))"
            notes.append(f"http.{key}[{i}] ({item['header']}): became header_matches with the "
                         "negative lookahead regex below (the value must not match)")
        out.append({"name": item["header"], "regex": pat, "allow_missing": allow})
    return out


def _http_module(raw: dict[str, Any], loc: Loc, source: str, problems: _Problems,
                 t: Template) -> None:
    spec, notes = t.spec, t.notes
    headers: dict[str, str] = {}
    header_rules: list[dict[str, Any]] = []
    _ip_family(raw, "http", loc, source, problems, spec, notes)
    for key, value in raw.items():
        at = (*loc, key)
        if key in ("preferred_ip_protocol", "ip_protocol_fallback"):
            continue
        if key == "valid_status_codes":
            if not isinstance(value, list) or not all(
                    isinstance(c, int) and not isinstance(c, bool) for c in value):
                problems.add(source, at, "must be a list of status codes")
            elif value:  # empty means blackbox's default, 2xx: slamon's default too
                spec["valid_status_codes"] = value
        elif key == "method":
            if not isinstance(value, str) or not value.strip():
                problems.add(source, at, "must be an HTTP method")
            elif value.upper() not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                       "OPTIONS"):
                t.reason = (f"http.method {value.upper()} is not one slamon sends "
                            "(GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)")
            elif value.upper() != "GET":
                spec["method"] = value.upper()
        elif key == "headers":
            if not isinstance(value, dict):
                problems.add(source, at, "must be a mapping of header names to values")
            else:
                for name, val in value.items():
                    if not isinstance(val, str | int | float) or isinstance(val, bool):
                        problems.add(source, (*at, str(name)), "must be text")
                    else:
                        headers[str(name)] = str(val)
        elif key == "body":
            if not isinstance(value, str):
                problems.add(source, at, "must be text")
            else:
                spec["body"] = value
        elif key == "body_size_limit":
            try:
                size = parse_size(value)
            except ValueError:
                notes.append(f"http.body_size_limit: {inline(value)}: not a size slamon reads "
                             "(B, KB, KiB, MB, MiB, GB, GiB); no max_body_size set")
                continue
            if size:  # 0 is blackbox's "no limit", slamon's default too
                spec["max_body_size"] = size
        elif key in ("follow_redirects", "no_follow_redirects"):
            if not isinstance(value, bool):
                problems.add(source, at, "must be true or false")
            else:
                follow = value if key == "follow_redirects" else not value
                if not follow:
                    spec["follow_redirects"] = False
        elif key in ("fail_if_body_matches_regexp", "fail_if_body_not_matches_regexp"):
            pats = _regex_list(value, key, loc, source, problems, notes, "http")
            if pats:
                spec["body_not_matches" if key == "fail_if_body_matches_regexp"
                     else "body_matches"] = pats
        elif key in ("fail_if_header_matches", "fail_if_header_not_matches"):
            header_rules += _header_rules(value, key, loc, source, problems, notes)
        elif key == "tls_config":
            _tls_config(value, "http", at, source, problems, spec, notes)
        elif key in ("fail_if_ssl", "fail_if_not_ssl"):
            if not isinstance(value, bool):
                problems.add(source, at, "must be true or false")
            elif value:
                notes.append(f"http.{key}: true: slamon does not fail a probe on whether "
                             "TLS was used (the URL's scheme decides)")
        elif key == "basic_auth":
            if not isinstance(value, dict):
                problems.add(source, at, "must be a mapping")
            elif "password_file" in value:
                notes.append("http.basic_auth.password_file: slamon reads no password files "
                             "for targets; set an Authorization header from ${ENV}")
            else:
                user, pwd = str(value.get("username", "")), str(value.get("password", ""))
                token = base64.b64encode(f"{user}:{pwd}".encode()).decode()
                headers["Authorization"] = f"Basic {token}"
                notes.append("http.basic_auth: became an Authorization header (better: "
                             "\"Basic ${TOKEN}\" from the environment)")
        elif key == "bearer_token":
            headers["Authorization"] = f"Bearer {value}"
            notes.append("http.bearer_token: became an Authorization header (better: "
                         "\"Bearer ${TOKEN}\" from the environment)")
        elif key == "valid_http_versions":
            known = ("HTTP/1.0", "HTTP/1.1", "HTTP/2.0")
            if isinstance(value, list) and value and all(v in known for v in value):
                spec["valid_http_versions"] = list(value)
            else:
                notes.append(f"http.valid_http_versions: {_shown(key, value)}: slamon checks "
                             f"only {', '.join(known)}")
        elif key == "compression":
            if value not in ("", None):
                notes.append(f"http.compression: {_shown(key, value)}: slamon does not ask "
                             "for or check a content encoding")
        elif key == "enable_http2":
            if value is True:
                spec["http2"] = True
        else:
            notes.append(f"http.{key}: {_shown(key, value)}: no slamon equivalent")
    if headers:
        spec["headers"] = headers
    if header_rules:
        spec["header_matches"] = header_rules


def _tcp_module(raw: dict[str, Any], loc: Loc, source: str, problems: _Problems,
                t: Template) -> None:
    spec, notes = t.spec, t.notes
    _ip_family(raw, "tcp", loc, source, problems, spec, notes)
    for key, value in raw.items():
        at = (*loc, key)
        if key in ("preferred_ip_protocol", "ip_protocol_fallback"):
            continue
        if key == "tls":
            if not isinstance(value, bool):
                problems.add(source, at, "must be true or false")
            elif value:
                spec["tls"] = True
        elif key == "tls_config":
            _tls_config(value, "tcp", at, source, problems, spec, notes)
        elif key == "query_response":
            _query_response(value, at, source, problems, spec, notes)
        else:
            notes.append(f"tcp.{key}: {_shown(key, value)}: no slamon equivalent")
    if spec.get("tls"):
        # TLS from the start and then STARTTLS would upgrade twice: slamon refuses it
        for i, step in enumerate(spec.get("query_response", [])):
            if step.pop("starttls", False):
                notes.append(f"tcp.query_response[{i}].starttls: dropped, the connection is "
                             "TLS from the start (tls: true)")
        spec["query_response"] = [step for step in spec.get("query_response", []) if step]
        if not spec["query_response"]:
            del spec["query_response"]


#: blackbox's validate_*_rrs keys -> slamon's answer_* keys (answer section only)
_RR_RULES = {"fail_if_matches_regexp": "answer_not_matches",
             "fail_if_not_matches_regexp": "answer_all_match",
             "fail_if_none_matches_regexp": "answer_matches"}


def _dns_module(raw: dict[str, Any], loc: Loc, source: str, problems: _Problems,
                t: Template) -> None:
    """The address probed is the DNS server; the module says what to ask it."""
    spec, notes = t.spec, t.notes
    _ip_family(raw, "dns", loc, source, problems, spec, notes)
    if not isinstance(raw.get("query_name"), str) or not raw["query_name"]:
        problems.add(source, (*loc, "query_name"), "required: the name to look up")
    for key, value in raw.items():
        at = (*loc, key)
        if key in ("preferred_ip_protocol", "ip_protocol_fallback"):
            continue
        if key == "query_name" and isinstance(value, str):
            spec["query_name"] = value
        elif key == "query_type":
            spec["query_type"] = str(value).upper()
        elif key == "transport_protocol":
            if value not in ("udp", "tcp"):
                problems.add(source, at, "must be udp or tcp")
            else:
                spec["transport"] = value
        elif key == "valid_rcodes":
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                problems.add(source, at, "must be a list of rcode names")
            else:
                spec["valid_rcodes"] = [x.upper() for x in value]
        elif key == "recursion_desired":
            if not isinstance(value, bool):
                problems.add(source, at, "must be true or false")
            else:
                spec["recursion_desired"] = value
        elif key == "validate_answer_rrs" and isinstance(value, dict):
            for rule, pats in value.items():
                if rule in _RR_RULES:
                    spec[_RR_RULES[rule]] = _regex_list(
                        pats, rule, at, source, problems, notes, "dns.validate_answer_rrs")
                else:
                    notes.append(f"dns.validate_answer_rrs.{rule}: {_shown(rule, pats)}: "
                                 "no slamon equivalent")
        elif key != "query_name":
            notes.append(f"dns.{key}: {_shown(key, value)}: no slamon equivalent "
                         "(slamon checks the answer section only, over plain DNS)")


def _icmp_module(raw: dict[str, Any], loc: Loc, source: str, problems: _Problems,
                 t: Template) -> None:
    spec, notes = t.spec, t.notes
    _ip_family(raw, "icmp", loc, source, problems, spec, notes)
    for key, value in raw.items():
        if key in ("preferred_ip_protocol", "ip_protocol_fallback"):
            continue
        if key == "payload_size" and isinstance(value, int) and not isinstance(value, bool):
            spec["payload_size"] = value
        else:
            notes.append(f"icmp.{key}: {_shown(key, value)}: no slamon equivalent")


def _grpc_module(raw: dict[str, Any], loc: Loc, source: str, problems: _Problems,
                 t: Template) -> None:
    spec, notes = t.spec, t.notes
    _ip_family(raw, "grpc", loc, source, problems, spec, notes)
    for key, value in raw.items():
        at = (*loc, key)
        if key in ("preferred_ip_protocol", "ip_protocol_fallback"):
            continue
        if key == "service":
            spec["service"] = str(value)
        elif key == "tls":
            if not isinstance(value, bool):
                problems.add(source, at, "must be true or false")
            elif value:
                spec["tls"] = True
        elif key == "tls_config" and isinstance(value, dict):
            for k, v in value.items():
                if k == "ca_file" and isinstance(v, str):
                    spec["ca_file"] = v
                elif k == "server_name" and isinstance(v, str):
                    spec["server_name"] = v
                else:
                    notes.append(f"grpc.tls_config.{k}: {_shown(k, v)}: no slamon equivalent "
                                 "(slamon always verifies gRPC certificates)")
        else:
            notes.append(f"grpc.{key}: {_shown(key, value)}: no slamon equivalent")
    if not spec.get("tls"):
        for k in ("ca_file", "server_name"):
            if spec.pop(k, None) is not None:
                notes.append(f"grpc.tls_config.{k}: only used with tls: true, dropped")


def _line_regex(pat: str) -> str:
    """A blackbox `expect` for slamon: blackbox matches line by line, so `(?m)` keeps
    `^`/`$` at line boundaries, and a `$` allows the `\\r` that blackbox's line
    reader drops (slamon matches the text as received)."""
    if "^" not in pat and "$" not in pat:
        return pat
    return "(?m)" + re.sub(r"(?<!\\)\$", r"\\r?$", pat)


def _query_response(raw: Any, loc: Loc, source: str, problems: _Problems,
                    spec: dict[str, Any], notes: list[str]) -> None:
    """A leading `send` and then one `expect` become slamon's `send` and `expect`;
    any other dialogue (more steps, `starttls`, a send after an expect) becomes
    slamon's `query_response`, step for step. blackbox sends each `send` with a
    trailing newline, and so does the import.
    """
    if not isinstance(raw, list):
        problems.add(source, loc, "must be a list of {expect, send, starttls}")
        return
    steps: list[dict[str, Any]] = []
    for i, step in enumerate(raw):
        if not isinstance(step, dict):
            problems.add(source, (*loc, i), "must be a mapping with expect, send or starttls")
            continue
        steps.append(step)
    shape = [tuple(sorted(step)) for step in steps]
    if shape in ([], [("send",)], [("expect",)], [("send",), ("expect",)]):
        for i, step in enumerate(steps):
            if "send" in step:
                spec["send"] = str(step["send"]) + "\n"
            else:
                pat = _step_regex(step["expect"], (*loc, i), notes)
                if pat is not None:
                    spec["expect"] = pat
        return
    out: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        item: dict[str, Any] = {}
        for key, value in step.items():
            if key == "expect":
                pat = _step_regex(value, (*loc, i), notes)
                if pat is None:
                    notes.append(f"tcp.query_response: not carried over, step {i} cannot be "
                                 "matched")
                    return
                item["expect"] = pat
            elif key == "send":
                item["send"] = str(value) + "\n"
            elif key == "starttls":
                if not isinstance(value, bool):
                    problems.add(source, (*loc, i, key), "must be true or false")
                elif value:
                    item["starttls"] = True
            else:
                notes.append(f"tcp.query_response[{i}].{key}: {_shown(key, value)}: "
                             "no slamon equivalent")
        if item:
            out.append(item)
    spec["query_response"] = out


def _step_regex(value: Any, loc: Loc, notes: list[str]) -> str | None:
    """A step's `expect` as a slamon regex, or None (noted) when Python rejects it."""
    where = f"tcp.query_response[{loc[-1]}].expect"
    pat, note = _go_regex(str(value))
    if pat is None:
        notes.append(f"{where}: {inline(value)}: {note}")
        return None
    if note is not None:
        notes.append(f"{where}: {note}")
    return _line_regex(pat)


def module_template(name: str, raw: Any, source: str, problems: _Problems) -> Template:
    loc: Loc = ("modules", name)
    if not isinstance(raw, dict):
        problems.add(source, loc, "must be a mapping with prober and its section")
        return Template(name, "?", reason="invalid")
    prober = raw.get("prober")
    if not isinstance(prober, str) or prober not in PROBERS:
        problems.add(source, (*loc, "prober"),
                     f"must be one of {', '.join(PROBERS)}" if prober is not None
                     else "required (http, tcp, dns, icmp, grpc)")
        return Template(name, str(prober), reason="invalid")
    t = Template(name, prober)
    if "timeout" in raw:
        try:
            t.timeout = _prom_duration(raw["timeout"])
        except ValueError as exc:
            problems.add(source, (*loc, "timeout"), str(exc))
    for key, value in raw.items():
        if key in ("prober", "timeout"):
            continue
        if key == prober:
            if value is None:
                continue
            if not isinstance(value, dict):
                problems.add(source, (*loc, key), "must be a mapping")
            elif prober == "http":
                _http_module(value, (*loc, key), source, problems, t)
            elif prober == "tcp":
                _tcp_module(value, (*loc, key), source, problems, t)
            elif prober == "dns":
                _dns_module(value, (*loc, key), source, problems, t)
            elif prober == "icmp":
                _icmp_module(value, (*loc, key), source, problems, t)
            elif prober == "grpc":
                _grpc_module(value, (*loc, key), source, problems, t)
            else:
                t.notes += [f"{key}.{k}: {_shown(k, v)}" for k, v in value.items()]
        elif key in PROBERS:
            t.notes.append(f"{key}: {_shown(key, value)}: ignored by blackbox too "
                           f"(the module's prober is {prober})")
        else:
            t.notes.append(f"{key}: {_shown(key, value)}: no slamon equivalent")
    if prober == "dns" and not isinstance(raw.get("dns"), dict):
        problems.add(source, (*loc, "dns"), "required: a dns section with query_name")
    if prober == "unix":
        t.reason = "slamon cannot probe unix sockets"
    return t


def _prom_duration(value: Any) -> float:
    """Prometheus durations are slamon's plus `y` (365 days)."""
    if isinstance(value, str) and re.fullmatch(r"\d+y", value.strip()):
        return int(value.strip()[:-1]) * 365 * 86400.0
    if not isinstance(value, str):
        raise ValueError("must be a duration like 5s")
    return parse_duration(value)


# ------------------------------------------------------------------ Prometheus jobs


@dataclass
class _Address:
    address: str
    labels: dict[str, str]
    loc: Loc
    source: str


@dataclass
class _Job:
    name: str
    module: str
    interval: float
    scrape_timeout: float
    addresses: list[_Address] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: with `discovery`: (kind, source section) per file_sd/http_sd config, watched live
    sd: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


_DEFAULT_RELABEL = {"action": "replace", "regex": "(.*)", "replacement": "$1", "separator": ";"}


def _relabel(rules: Any, loc: Loc, source: str, problems: _Problems, job: _Job) -> None:
    if rules is None:
        rules = []
    if not isinstance(rules, list):
        problems.add(source, loc, "must be a list")
        return
    moves_target = False
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            problems.add(source, (*loc, i), "must be a mapping")
            continue
        plain = all(rule.get(k, v) == v for k, v in _DEFAULT_RELABEL.items())
        src = rule.get("source_labels")
        dst = rule.get("target_label")
        if dst == "__param_target" and src == ["__address__"] and plain:
            moves_target = True
        elif dst == "instance" and src == ["__param_target"] and plain:
            pass  # the instance label: slamon's `target` label is the target's id
        elif dst == "__address__" and not src:
            pass  # points Prometheus at the exporter; slamon probes by itself
        else:
            job.notes.append(f"relabel_configs[{i}]: {inline(rule)}: not applied (targets "
                             "are probed as listed, with the job's module)")
    if not moves_target:
        job.notes.append("no relabel rule moves __address__ to __param_target: the listed "
                         "targets were taken as the addresses to probe")


def _targets_from(groups: Any, loc: Loc, source: str, problems: _Problems,
                  job: _Job) -> None:
    if not isinstance(groups, list):
        problems.add(source, loc, "must be a list of {targets, labels}")
        return
    for g, group in enumerate(groups):
        if not isinstance(group, dict):
            problems.add(source, (*loc, g), "must be a mapping with targets and labels")
            continue
        targets = group.get("targets", [])
        labels = group.get("labels") or {}
        if not isinstance(targets, list):
            problems.add(source, (*loc, g, "targets"), "must be a list")
            continue
        if not isinstance(labels, dict):
            problems.add(source, (*loc, g, "labels"), "must be a mapping")
            continue
        for i, addr in enumerate(targets):
            if not isinstance(addr, str) or not addr.strip():
                problems.add(source, (*loc, g, "targets", i), "must be an address or URL")
                continue
            job.addresses.append(_Address(addr.strip(), {str(k): str(v)
                                                         for k, v in labels.items()},
                                          (*loc, g, "targets", i), source))


def _jobs(text: str, source: str, modules: dict[str, Template], read: Reader | None,
          problems: _Problems, skipped: list[str], sd_base: str | None = None) -> list[_Job]:
    docs = load_documents(text, source)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        problems.add(source, (), "must be one YAML mapping (a Prometheus config)")
        return []
    data = docs[0]
    glob = data.get("global") or {}
    if not isinstance(glob, dict):
        problems.add(source, ("global",), "must be a mapping")
        glob = {}
    interval_g = _duration_at(glob, "scrape_interval", DEFAULT_INTERVAL, ("global",),
                              source, problems)
    timeout_g = _duration_at(glob, "scrape_timeout", DEFAULT_TIMEOUT, ("global",),
                             source, problems)
    scrape = data.get("scrape_configs") or []
    if not isinstance(scrape, list):
        problems.add(source, ("scrape_configs",), "must be a list")
        return []
    jobs: list[_Job] = []
    for j, raw in enumerate(scrape):
        loc: Loc = ("scrape_configs", j)
        if not isinstance(raw, dict) or not isinstance(raw.get("job_name"), str):
            problems.add(source, loc, "must be a mapping with a job_name")
            continue
        name = raw["job_name"]
        path = raw.get("metrics_path", "/metrics")
        if path != "/probe":
            skipped.append(f"job {name}: not a blackbox probe job (metrics_path "
                           f"{path}), not imported")
            continue
        params = raw.get("params") or {}
        mods = params.get("module") if isinstance(params, dict) else None
        if mods is None:
            mods = ["http_2xx"]  # blackbox's own default module
        if not isinstance(mods, list) or not mods or not all(isinstance(m, str) for m in mods):
            problems.add(source, (*loc, "params", "module"), "must be a list of module names")
            continue
        if mods[0] not in modules:
            known = ", ".join(sorted(modules)) or "none"
            problems.add(source, (*loc, "params", "module", 0),
                         f"unknown module {mods[0]!r} (the blackbox config has: {known})")
            continue
        interval = _duration_at(raw, "scrape_interval", interval_g, loc, source, problems)
        timeout = _duration_at(raw, "scrape_timeout", min(timeout_g, interval), loc, source,
                               problems)
        job = _Job(name, mods[0], interval, timeout)
        if "module" not in (params if isinstance(params, dict) else {}):
            job.notes.append("no params.module: blackbox's default module http_2xx")
        if len(mods) > 1:
            job.notes.append(f"params.module: {inline(mods)}: blackbox uses the first")
        for key, value in (params.items() if isinstance(params, dict) else ()):
            if key != "module":
                job.notes.append(f"params.{key}: {_shown(key, value)}: not carried over")
        _relabel(raw.get("relabel_configs"), (*loc, "relabel_configs"), source, problems, job)
        for key, value in raw.items():
            if key == "static_configs":
                _targets_from(value, (*loc, key), source, problems, job)
            elif key in ("file_sd_configs", "http_sd_configs") and sd_base is not None:
                _live_sd(key, value, (*loc, key), source, problems, job, sd_base)
            elif key == "file_sd_configs":
                _file_sd(value, (*loc, key), source, problems, job, read)
            elif key.endswith("_sd_configs"):
                job.notes.append(f"{key}: not imported: its targets come from service "
                                 "discovery at run time; list them in static_configs")
            elif key == "metric_relabel_configs":
                job.notes.append("metric_relabel_configs: not imported (they rewrite "
                                 "blackbox's metrics; slamon exports its own)")
        jobs.append(job)
    return jobs


def _file_sd(value: Any, loc: Loc, source: str, problems: _Problems, job: _Job,
             read: Reader | None) -> None:
    if not isinstance(value, list):
        problems.add(source, loc, "must be a list")
        return
    for i, sd in enumerate(value):
        files = sd.get("files") if isinstance(sd, dict) else None
        if not isinstance(files, list):
            problems.add(source, (*loc, i, "files"), "must be a list of file patterns")
            continue
        for k, pattern in enumerate(files):
            if read is None:
                job.notes.append(f"file_sd_configs[{i}].files[{k}]: {pattern}: not read "
                                 "(no file access): list its targets in static_configs")
                continue
            try:
                found = read(str(pattern))
            except OSError as exc:
                problems.add(source, (*loc, i, "files", k),
                             f"cannot read {pattern}: {exc.strerror or exc}")
                continue
            if not found:
                job.notes.append(f"file_sd_configs[{i}].files[{k}]: {pattern}: no file "
                                 "matches; nothing imported from it")
            for name, text in found:
                try:
                    docs = load_documents(text, name)
                except InputError as exc:
                    problems.lines += exc.problems
                    continue
                groups = docs[0] if len(docs) == 1 else None
                _targets_from(groups, (), name, problems, job)


def _live_sd(key: str, value: Any, loc: Loc, source: str, problems: _Problems, job: _Job,
             base: str) -> None:
    """file_sd/http_sd configs as slamon discovery sources, so the targets follow the
    files and the endpoint as Prometheus' do (paths made absolute from `base`)."""
    import os.path

    if not isinstance(value, list):
        problems.add(source, loc, "must be a list")
        return
    for i, sd in enumerate(value):
        if not isinstance(sd, dict):
            problems.add(source, (*loc, i), "must be a mapping")
            continue
        out: dict[str, Any] = {}
        if key == "file_sd_configs":
            files = sd.get("files")
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                problems.add(source, (*loc, i, "files"), "must be a list of file patterns")
                continue
            out["files"] = [f if os.path.isabs(f) else os.path.normpath(os.path.join(base, f))
                            for f in files]
            kind = "file_sd"
        else:
            if not isinstance(sd.get("url"), str):
                problems.add(source, (*loc, i, "url"), "must be the SD endpoint's URL")
                continue
            out["url"] = sd["url"]
            kind = "http_sd"
        if "refresh_interval" in sd:
            try:
                out["refresh_interval"] = format_duration(_prom_duration(sd["refresh_interval"]))
            except ValueError as exc:
                problems.add(source, (*loc, i, "refresh_interval"), str(exc))
                continue
        elif kind == "http_sd":
            out["refresh_interval"] = "1m"  # Prometheus' default
        for option in sorted(set(sd) - {"files", "url", "refresh_interval"}):
            job.notes.append(f"{key}[{i}].{option}: {_shown(option, sd[option])}: not carried "
                             "over (set the discovery source's headers or tls_verify by hand)")
        job.sd.append((kind, out))


def _duration_at(raw: dict[str, Any], key: str, default: float, loc: Loc, source: str,
                 problems: _Problems) -> float:
    if key not in raw:
        return default
    try:
        return _prom_duration(raw[key])
    except ValueError as exc:
        problems.add(source, (*loc, key), str(exc))
        return default


# ------------------------------------------------------------------ targets


_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RESERVED = {"target", "slo", "window", "phase", "result", "reason", "le", "sla"}


def _split_host_port(address: str) -> tuple[str, int] | None:
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", address)
    if m is None:
        return None
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    return (host, port) if 1 <= port <= 65535 else None


def _base_id(address: str) -> str:
    if "://" in address:
        parts = urlsplit(address)
        return (parts.netloc + parts.path).rstrip("/")
    v6 = re.fullmatch(r"\[([^\]]+)\]:(\d+)", address)
    return f"{v6.group(1)}-{v6.group(2)}" if v6 else address


def _target(t: Template, job: _Job, addr: _Address, tid: str,
            notes: list[str]) -> dict[str, Any] | str:
    """The slamon target for one address, or why it cannot be made."""
    timeout = job.scrape_timeout if t.timeout is None else min(t.timeout, job.scrape_timeout)
    interval = max(job.interval, 1.0)
    if timeout >= interval:
        # Prometheus allows scrape_timeout == scrape_interval; slamon needs it shorter
        timeout = interval - min(1.0, interval / 2)
        notes.append(f"timeout lowered to {format_duration(timeout)}: slamon needs a "
                     "timeout shorter than the interval")
    out: dict[str, Any] = {"id": tid, "kind": t.prober, "interval": format_duration(interval),
                           "timeout": format_duration(timeout)}
    labels: dict[str, str] = {}
    for name, value in addr.labels.items():
        if not _LABEL_RE.fullmatch(name) or name.startswith("__") or name in _RESERVED:
            notes.append(f"label {name}={inline(value)}: not a label name slamon allows "
                         "(reserved or invalid)")
        else:
            labels[name] = value
    if labels:
        out["labels"] = labels
    spec = dict(t.spec)
    if t.prober == "http":
        url = addr.address
        if not url.startswith(("http://", "https://")):
            url = "http://" + url  # what blackbox does with a bare host[:port]
        out["http"] = {"url": url, **spec}
    elif t.prober == "dns":
        out["dns"] = {"server": addr.address, **spec}  # the server; port 53 by default
    elif t.prober == "icmp":
        host = addr.address
        out["icmp"] = {"host": host[1:-1] if host.startswith("[") else host, **spec}
    else:
        hp = _split_host_port(addr.address)
        if hp is None:
            return f"a {t.prober} target must be host:port (IPv6 as [addr]:port)"
        out[t.prober] = {"host": hp[0], "port": hp[1], **spec}
    return out


def _check_target(target: dict[str, Any]) -> list[str]:
    """slamon's own validation of one generated target: `path: message` lines."""
    try:
        parse_config("\n".join(["targets:", *dump_item(target, 2)]) + "\n", source="<target>")
    except ConfigError as exc:
        return [re.sub(r"^targets\[0\]\.?", "", line) for line in exc.errors]
    return []


def import_blackbox(
    blackbox_text: str,
    prometheus_text: str | None = None,
    *,
    blackbox_name: str = "blackbox.yml",
    prometheus_name: str = "prometheus.yml",
    read: Reader | None = None,
    discovery_base: str | None = None,
) -> str:
    """slamon config text (targets) for blackbox modules and the Prometheus jobs using them.

    `read` resolves `file_sd_configs` patterns; without it they are listed as not
    imported. With `discovery_base` (the Prometheus config's directory) file_sd and
    http_sd configs become slamon `discovery:` sources instead, which follow the
    files and the endpoint at run time. Raises InputError naming the file and path
    of each mistake.
    """
    problems = _Problems()
    docs = load_documents(blackbox_text, blackbox_name)
    if len(docs) != 1 or not isinstance(docs[0], dict) \
            or not isinstance(docs[0].get("modules"), dict):
        raise InputError([f"{blackbox_name}: must be a mapping with a 'modules' mapping "
                          "(a blackbox_exporter config)"])
    top_notes = [f"{key}: not carried over (only modules are imported)"
                 for key in docs[0] if key != "modules"]
    modules = {str(name): module_template(str(name), raw, blackbox_name, problems)
               for name, raw in docs[0]["modules"].items()}
    skipped: list[str] = []
    jobs: list[_Job] = []
    if prometheus_text is not None:
        jobs = _jobs(prometheus_text, prometheus_name, modules, read, problems, skipped,
                     discovery_base)
    if problems.lines:
        raise InputError(problems.lines)

    used: set[str] = set()
    counts: dict[str, int] = {}
    for job in jobs:
        for addr in job.addresses:
            counts[_base_id(addr.address)] = counts.get(_base_id(addr.address), 0) + 1
    body: list[str] = []
    not_imported: list[str] = []
    for job in jobs:
        t = modules[job.module]
        if t.reason is not None:
            shown = ", ".join(a.address for a in job.addresses) or "no targets"
            not_imported.append(f"job {job.name}, module {job.module}: {t.reason}: {shown}")
            continue
        for addr in job.addresses:
            base = _base_id(addr.address)
            tid = unique_id(base if counts[base] == 1 else f"{base}-{job.name}", used)
            notes: list[str] = []
            target = _target(t, job, addr, tid, notes)
            if isinstance(target, str):
                problems.add(addr.source, addr.loc, f"{target} (module {job.module})")
                continue
            for line in _check_target(target):
                problems.add(addr.source, addr.loc, f"module {job.module}: {line}")
            body.append(comment(f"job {job.name}, module {job.module}", 2))
            body += [comment(n, 2) for n in notes]
            body += dump_item(target, 2)
    sd_items = _sd_items(jobs, modules, used, not_imported)
    if problems.lines:
        raise InputError(problems.lines)

    sources = blackbox_name + (f" and {prometheus_name}" if prometheus_text is not None else "")
    out = [
        comment(f"slamon config generated by `slamon import blackbox` from {sources}."),
        comment("Each blackbox module became target settings, one target per probed address."),
        comment("Every option slamon has no equivalent for is listed here; nothing was dropped."),
        "",
    ]
    out += [comment(f"{blackbox_name}: {n}") for n in top_notes]
    for t in modules.values():
        status = "imported" if t.reason is None else f"not imported: {t.reason}"
        out.append(comment(f"module {t.name} (prober {t.prober}): {status}"))
        if t.notes:
            out.append(comment("  options not carried over:" if t.reason is None
                               else "  its options:"))
            out += [comment("    " + n) for n in t.notes]
    for job in jobs:
        if job.notes:
            out.append(comment(f"job {job.name} (module {job.module}), not carried over:"))
            out += [comment("    " + n) for n in job.notes]
    out += [comment(s) for s in skipped]
    if prometheus_text is None:
        out += _templates(modules)
    out.append("")
    if body or not_imported:
        out.append("targets:")
        out += body
        out += [comment(f"not imported: {n}", 2) for n in not_imported]
    else:
        out.append("targets: []")
    if sd_items:
        out.append("discovery:")
        out += sd_items
    text = "\n".join(out) + "\n"
    try:
        parse_config(text, source="<generated>")
    except ConfigError as exc:  # pragma: no cover - each target was checked above
        raise InputError([f"generated config: {line}" for line in exc.errors]) from None
    return text


def _sd_items(jobs: list[_Job], modules: dict[str, Template], used: set[str],
              not_imported: list[str]) -> list[str]:
    """The `discovery:` items of the jobs' file_sd/http_sd configs: each a source
    whose template is the job's module, with the entry as the address."""
    out: list[str] = []
    for job in jobs:
        t = modules[job.module]
        for kind, spec in job.sd:
            if t.reason is not None:
                not_imported.append(f"job {job.name}, module {job.module}: {t.reason}: "
                                    f"its {kind} targets")
                continue
            notes: list[str] = []
            address = "sample.invalid" if t.prober == "http" else "sample.invalid:1"
            target = _target(t, job, _Address(address, {}, (), ""), "sample", notes)
            assert isinstance(target, dict)  # a valid sample address always makes one
            del target["id"]
            if t.prober == "http":
                target["http"]["url"] = "{{url}}"  # blackbox adds http:// to a bare host
            else:
                target["tcp"].update(host="{{host}}", port="{{port}}")
            sid = unique_id(f"{job.name}-{kind.replace('_', '-')}", used)
            out.append(comment(f"job {job.name}, module {job.module}: its {kind} targets, "
                               "followed as they change", 2))
            out += [comment(n, 2) for n in notes]
            out += dump_item({"id": sid, kind: spec, "template": target}, 2)
    return out


def _templates(modules: dict[str, Template]) -> list[str]:
    """Without Prometheus jobs there are no addresses: each module as a commented target."""
    out = ["", comment("No Prometheus config was given, so no addresses are known. Templates:")]
    for t in modules.values():
        if t.reason is not None:
            continue
        job = _Job("example", t.name, 30.0, DEFAULT_TIMEOUT)
        address = "https://example.com/" if t.prober == "http" else "example.com:443"
        target = _target(t, job, _Address(address, {}, (), ""), f"example-{t.name}", [])
        if isinstance(target, dict):
            out.append(comment(f"module {t.name}:"))
            out += [comment(line) for line in dump_item(target, 2)]
    return out
