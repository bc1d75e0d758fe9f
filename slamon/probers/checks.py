"""The assertions of the probers, as pure functions over what a probe learned.

Each takes the facts of one response (status, headers, decoded body text,
elapsed time, certificate expiry, what a TCP server said) and the parts of the
target spec it checks, and returns None when the assertion holds or the
`(FailureReason, detail)` it fails with. Nothing here touches a socket or the
event loop, so the rules and their messages are tested without a server, and
the transports (http, tcp) only decide when to call them.

The per-spec inputs (compiled regexes, status-code sets, header rules) are made
once per spec by the helpers below and kept by the prober, so a probe only
pays for the comparisons themselves.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any

from slamon.config.targets import HeaderAssertion, JsonAssertion
from slamon.probers.base import FailureReason
from slamon.util.durations import format_duration

#: a failed assertion: the reason label and a detail for humans
Failure = tuple[FailureReason, str]

#: one `header_matches` rule, prepared: (lower-case name as bytes, name as
#: configured, compiled regex, allow_missing)
HeaderRule = tuple[bytes, str, re.Pattern[str], bool]

_CACHE_MAX = 10_000
_SHOW = 80  # max characters of user-supplied text repeated in a detail


# ---------------------------------------------------------------- per-spec inputs


_patterns: dict[str, re.Pattern[str]] = {}


def pattern(source: str) -> re.Pattern[str]:
    """Compiled regex, shared by every target using the same pattern string."""
    pat = _patterns.get(source)
    if pat is None:
        if len(_patterns) > _CACHE_MAX:
            _patterns.clear()
        pat = _patterns[source] = re.compile(source)
    return pat


def codes_text(codes: Sequence[int]) -> str:
    """[200, ..., 299, 301] -> "200-299,301" for details."""
    parts: list[str] = []
    i = 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        parts.append(str(codes[i]) if i == j else f"{codes[i]}-{codes[j]}")
        i = j + 1
    return ",".join(parts)


@functools.lru_cache(maxsize=256)
def valid_codes(codes: tuple[int, ...]) -> tuple[frozenset[int], str]:
    """Shared per distinct list: the default 2xx frozenset alone is 4.2 KB per target."""
    return frozenset(codes), codes_text(codes)


def header_rules(assertions: Sequence[HeaderAssertion]) -> tuple[HeaderRule, ...]:
    """`header_matches` prepared for `header_failure`."""
    # a tuple: the empty one is a shared untracked constant, so targets without
    # header rules add no container for the cyclic GC to walk
    return tuple(
        (h.name.lower().encode("latin-1"), h.name, pattern(h.regex), h.allow_missing)
        for h in assertions
    )


def patterns(sources: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    """`body_matches` / `body_not_matches` compiled (an empty tuple when unset)."""
    return tuple(pattern(p) for p in sources)


def show(value: object) -> str:
    """repr of user-supplied text for a detail, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _SHOW else text[: _SHOW - 3] + "..."


# ---------------------------------------------------------------- HTTP


def status_failure(status: int, valid: frozenset[int], valid_text: str) -> Failure | None:
    """`valid_status_codes`; `valid_text` is `valid` as shown in the detail."""
    if status not in valid:
        return FailureReason.STATUS, f"status {status} not in {valid_text}"
    return None


def version_failure(version: str | None, valid: Sequence[str]) -> Failure | None:
    """`valid_http_versions` ("HTTP/1.1", "HTTP/2.0", ...); empty: any version."""
    shown = f"HTTP/{version}" if version else "unknown"
    if valid and shown not in valid:
        return FailureReason.HTTP_VERSION, f"{shown} not in {', '.join(valid)}"
    return None


def header_failure(
    headers: Sequence[tuple[bytes, bytes]], rules: Sequence[HeaderRule]
) -> Failure | None:
    """`header_matches`: any value of a repeated header may match; names ignore case."""
    for low, name, pat, allow_missing in rules:
        values = [v for n, v in headers if n.lower() == low]
        if not values:
            if allow_missing:
                continue
            return FailureReason.HEADER, f"header {name} missing"
        if not any(pat.search(v.decode("latin-1")) for v in values):
            return FailureReason.HEADER, f"header {name} does not match {show(pat.pattern)}"
    return None


def body_failure(
    text: str,
    contains: Sequence[str],
    matches: Sequence[re.Pattern[str]],
    not_matches: Sequence[re.Pattern[str]],
) -> Failure | None:
    """`body_contains`, then `body_matches`, then `body_not_matches`, on the decoded body."""
    for needle in contains:
        if needle not in text:
            return FailureReason.BODY, f"body does not contain {show(needle)}"
    for pat in matches:
        if not pat.search(text):
            return FailureReason.BODY, f"body does not match {show(pat.pattern)}"
    for pat in not_matches:
        if pat.search(text):
            return FailureReason.BODY, f"body matches {show(pat.pattern)}"
    return None


_MISSING = object()


def _json_path(doc: Any, path: str) -> Any:
    cur = doc
    for part in path.split("."):
        if isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                return _MISSING
        elif isinstance(cur, dict):
            if part not in cur:
                return _MISSING
            cur = cur[part]
        else:
            return _MISSING
    return cur


def _json_same(a: Any, b: Any) -> bool:
    """Equality where true != 1 (JSON types differ even if Python says equal)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def json_failure(text: str, items: Sequence[JsonAssertion]) -> Failure | None:
    """`json_equals`; the body is parsed only when there is something to compare."""
    if not items:
        return None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return FailureReason.JSON, f"invalid JSON: {exc}"
    for item in items:
        got = _json_path(doc, item.path)
        if got is _MISSING:
            return FailureReason.JSON, f"json {item.path} not found"
        if not _json_same(got, item.equals):
            return (
                FailureReason.JSON,
                f"json {item.path} is {show(got)}, expected {show(item.equals)}",
            )
    return None


def response_time_failure(elapsed: float, limit: float | None) -> Failure | None:
    """`max_response_time`, over the whole probe (every redirect hop included)."""
    if limit is not None and elapsed > limit:
        return (
            FailureReason.TOO_SLOW,
            f"response took {elapsed:.3f}s, more than {format_duration(limit)}",
        )
    return None


# ---------------------------------------------------------------- TLS and TCP


def cert_validity_failure(
    expiry: float | None, min_validity: float | None, now: float
) -> Failure | None:
    """`min_cert_validity`: fails with reason tls when the certificate expires
    within it; `now` is unix time. An unknown expiry passes (nothing to judge)."""
    if min_validity is None or expiry is None:
        return None
    left = expiry - now
    if left >= min_validity:
        return None
    if left <= 0:
        msg = "certificate has expired"
    else:
        # rounded to the hour (minute) so the detail reads "3d4h" and stays the
        # same from one probe to the next
        step = 3600 if left >= 86400 else 60 if left >= 3600 else 1
        msg = f"certificate expires in {format_duration(max(1, round(left / step)) * step)}"
    return FailureReason.TLS, f"{msg} (min_cert_validity {format_duration(min_validity)})"


def expect_failure(
    expect: re.Pattern[str], matched: bool, eof: bool, received: int, read_limit: int
) -> Failure | None:
    """TCP `expect`: `matched` says whether it matched what the server sent
    (`received` bytes) before EOF or `read_limit`."""
    if matched:
        return None
    why = "connection closed" if eof else f"read_limit {read_limit} bytes reached"
    return (
        FailureReason.BODY,
        f"expect {expect.pattern!r} not matched ({why} after {received} bytes)",
    )
