"""The probers' assertions (slamon/probers/checks.py), without a server.

Each check returns None when it holds and `(FailureReason, detail)` when it
fails; the details are what dashboards and notifications show, so they are
asserted verbatim.
"""

from __future__ import annotations

import gc
import json
import re
import ssl
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slamon.config.targets import HeaderAssertion, JsonAssertion
from slamon.probers._net import ProbeError, classify
from slamon.probers._tls import tls_failure
from slamon.probers.base import FailureReason
from slamon.probers.checks import (
    body_failure,
    cert_validity_failure,
    codes_text,
    expect_failure,
    header_failure,
    header_rules,
    json_failure,
    pattern,
    patterns,
    response_time_failure,
    show,
    status_failure,
    valid_codes,
)

DAY = 86400.0
NOW = 1_800_000_000.0


# ---------------------------------------------------------------- per-spec inputs


def test_pattern_is_compiled_once_per_source() -> None:
    assert pattern(r"^ok\d+$") is pattern(r"^ok\d+$")
    assert pattern(r"^ok\d+$").search("ok42")


def test_unset_rules_are_the_shared_empty_tuple() -> None:
    """No container per target for the cyclic GC when a spec has no such rules."""
    for empty in (header_rules([]), patterns([])):
        assert empty == ()
        assert not gc.is_tracked(empty)


def test_header_rules_lowercase_the_name_once() -> None:
    rules = header_rules([HeaderAssertion(name="X-Version", regex=r"^3\.", allow_missing=True)])
    assert rules == ((b"x-version", "X-Version", re.compile(r"^3\."), True),)


@pytest.mark.parametrize(
    ("codes", "text"),
    [
        ([200], "200"),
        (list(range(200, 300)), "200-299"),
        ([*range(200, 300), 301], "200-299,301"),
        ([200, 204, 205, 206, 404], "200,204-206,404"),
        ([], ""),
    ],
)
def test_codes_text(codes: list[int], text: str) -> None:
    assert codes_text(codes) == text


def test_valid_codes_are_shared_between_equal_lists() -> None:
    a = valid_codes(tuple(range(200, 300)))
    b = valid_codes(tuple(range(200, 300)))
    assert a is b
    assert a == (frozenset(range(200, 300)), "200-299")


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(100, 599), min_size=1))
def test_codes_text_round_trips(codes: set[int]) -> None:
    """The detail names exactly the accepted codes."""
    got: set[int] = set()
    for part in codes_text(sorted(codes)).split(","):
        lo, _, hi = part.partition("-")
        got.update(range(int(lo), int(hi or lo) + 1))
    assert got == codes


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("short", "'short'"),
        ("x" * 78, "'" + "x" * 78 + "'"),
        ("x" * 79, "'" + "x" * 76 + "..."),
        (42, "42"),
    ],
)
def test_show_cuts_long_values_to_80_characters(value: object, text: str) -> None:
    assert show(value) == text
    assert len(show(value)) <= 80


# ---------------------------------------------------------------- status


def test_status_in_valid_codes_passes() -> None:
    valid, text = valid_codes(tuple(range(200, 300)))
    assert status_failure(204, valid, text) is None


def test_status_outside_valid_codes_fails() -> None:
    valid, text = valid_codes(tuple(range(200, 300)))
    assert status_failure(503, valid, text) == (FailureReason.STATUS, "status 503 not in 200-299")


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(100, 599), min_size=1), st.integers(100, 599))
def test_status_fails_exactly_outside_the_set(codes: set[int], status: int) -> None:
    valid, text = valid_codes(tuple(sorted(codes)))
    failed = status_failure(status, valid, text)
    if status in codes:
        assert failed is None
    else:
        assert failed == (FailureReason.STATUS, f"status {status} not in {text}")


# ---------------------------------------------------------------- headers


HEADERS = [(b"Content-Type", b"text/plain"), (b"X-Version", b"2.1"), (b"x-version", b"3.0")]


def _rules(name: str, regex: str, allow_missing: bool = False) -> Any:
    return header_rules([HeaderAssertion(name=name, regex=regex, allow_missing=allow_missing)])


def test_headers_without_rules_pass() -> None:
    assert header_failure(HEADERS, ()) is None


def test_header_name_ignores_case_and_any_repeated_value_may_match() -> None:
    assert header_failure(HEADERS, _rules("X-VERSION", r"^3\.")) is None
    assert header_failure(HEADERS, _rules("content-type", r"^text/")) is None


def test_header_not_matching_fails_naming_the_header_as_configured() -> None:
    assert header_failure(HEADERS, _rules("X-Version", r"^4\.")) == (
        FailureReason.HEADER,
        "header X-Version does not match '^4\\\\.'",
    )


def test_missing_header_fails_unless_allowed() -> None:
    assert header_failure(HEADERS, _rules("X-Absent", "x")) == (
        FailureReason.HEADER,
        "header X-Absent missing",
    )
    assert header_failure(HEADERS, _rules("X-Absent", "x", allow_missing=True)) is None


def test_header_values_are_latin1() -> None:
    assert header_failure([(b"X-Name", "café".encode("latin-1"))], _rules("X-Name", "é$")) is None


def test_first_failing_header_rule_wins() -> None:
    rules = header_rules(
        [
            HeaderAssertion(name="X-Absent", regex="x", allow_missing=True),
            HeaderAssertion(name="X-Version", regex="^9"),
            HeaderAssertion(name="X-Other", regex="x"),
        ]
    )
    failed = header_failure(HEADERS, rules)
    assert failed is not None and failed[1] == "header X-Version does not match '^9'"


def test_long_header_regex_is_cut_in_the_detail() -> None:
    failed = header_failure(HEADERS, _rules("X-Version", "a" * 200))
    assert failed is not None
    assert failed[1] == "header X-Version does not match '" + "a" * 76 + "..."


# ---------------------------------------------------------------- body


def test_body_without_rules_passes() -> None:
    assert body_failure("anything", [], (), ()) is None


def test_body_contains() -> None:
    assert body_failure("status: OK", ["OK", "status"], (), ()) is None
    assert body_failure("status: down", ["OK"], (), ()) == (
        FailureReason.BODY,
        "body does not contain 'OK'",
    )


def test_body_matches() -> None:
    assert body_failure("build 1234", [], patterns([r"build \d+"]), ()) is None
    assert body_failure("build x", [], patterns([r"build \d+"]), ()) == (
        FailureReason.BODY,
        "body does not match 'build \\\\d+'",
    )


def test_body_not_matches() -> None:
    assert body_failure("all good", [], (), patterns(["(?i)maintenance"])) is None
    assert body_failure("Down for MAINTENANCE", [], (), patterns(["(?i)maintenance"])) == (
        FailureReason.BODY,
        "body matches '(?i)maintenance'",
    )


def test_body_rules_run_in_order_contains_matches_not_matches() -> None:
    text = "maintenance"
    contains_first = body_failure(text, ["OK"], patterns(["^x"]), patterns(["main"]))
    assert contains_first == (FailureReason.BODY, "body does not contain 'OK'")
    matches_next = body_failure(text, [], patterns(["^x"]), patterns(["main"]))
    assert matches_next == (FailureReason.BODY, "body does not match '^x'")


def test_long_needle_is_cut_in_the_detail() -> None:
    failed = body_failure("", ["n" * 500], (), ())
    assert failed == (FailureReason.BODY, "body does not contain '" + "n" * 76 + "...")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=50), st.lists(st.text(max_size=5), max_size=4))
def test_body_contains_is_substring_search(text: str, needles: list[str]) -> None:
    failed = body_failure(text, needles, (), ())
    missing = [n for n in needles if n not in text]
    if missing:
        assert failed == (FailureReason.BODY, f"body does not contain {show(missing[0])}")
    else:
        assert failed is None


# ---------------------------------------------------------------- JSON


DOC = {"data": {"items": [{"state": "up", "n": 1}, {"state": "down", "ok": True}]}, "v": None}


def _items(*pairs: tuple[str, Any]) -> list[JsonAssertion]:
    return [JsonAssertion(path=p, equals=v) for p, v in pairs]


def test_json_without_rules_does_not_parse_the_body() -> None:
    assert json_failure("not json at all", []) is None


def test_json_equals_passes_on_dotted_paths_and_list_indexes() -> None:
    items = _items(("data.items.0.state", "up"), ("data.items.1.ok", True), ("v", None))
    assert json_failure(json.dumps(DOC), items) is None


def test_json_value_differs() -> None:
    assert json_failure(json.dumps(DOC), _items(("data.items.1.state", "up"))) == (
        FailureReason.JSON,
        "json data.items.1.state is 'down', expected 'up'",
    )


@pytest.mark.parametrize(
    "path", ["nope", "data.items.2", "data.items.x", "data.items.0.state.deeper", "v.x"]
)
def test_json_path_not_found(path: str) -> None:
    assert json_failure(json.dumps(DOC), _items((path, "up"))) == (
        FailureReason.JSON,
        f"json {path} not found",
    )


def test_invalid_json() -> None:
    failed = json_failure("<html>", _items(("a", 1)))
    assert failed is not None
    assert failed[0] is FailureReason.JSON
    assert failed[1] == "invalid JSON: Expecting value: line 1 column 1 (char 0)"


@pytest.mark.parametrize(
    ("got", "expected", "same"),
    [
        (True, 1, False),
        (1, True, False),
        (False, 0, False),
        (True, True, True),
        (1, 1.0, True),
        ([1, {"a": None}], [1, {"a": None}], True),
        ("1", 1, False),
    ],
)
def test_json_booleans_are_not_numbers(got: Any, expected: Any, same: bool) -> None:
    failed = json_failure(json.dumps({"k": got}), _items(("k", expected)))
    if same:
        assert failed is None
    else:
        assert failed == (
            FailureReason.JSON,
            f"json k is {show(got)}, expected {show(expected)}",
        )


def test_first_failing_json_rule_wins() -> None:
    items = _items(("data.items.0.state", "up"), ("nope", 1), ("v", 2))
    assert json_failure(json.dumps(DOC), items) == (FailureReason.JSON, "json nope not found")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_json_value_equals_itself_after_a_round_trip(value: Any) -> None:
    assert json_failure(json.dumps({"k": value}), _items(("k", value))) is None


# ---------------------------------------------------------------- response time


def test_no_max_response_time_passes() -> None:
    assert response_time_failure(1e9, None) is None


def test_response_time_at_the_limit_passes() -> None:
    assert response_time_failure(0.5, 0.5) is None


def test_response_time_over_the_limit_fails() -> None:
    assert response_time_failure(0.7504, 0.5) == (
        FailureReason.TOO_SLOW,
        "response took 0.750s, more than 500ms",
    )


# ---------------------------------------------------------------- certificate validity


def test_cert_validity_without_minimum_or_expiry_passes() -> None:
    assert cert_validity_failure(NOW - DAY, None, NOW) is None
    assert cert_validity_failure(None, 7 * DAY, NOW) is None


def test_cert_valid_long_enough_passes() -> None:
    assert cert_validity_failure(NOW + 8 * DAY, 7 * DAY, NOW) is None
    assert cert_validity_failure(NOW + 7 * DAY, 7 * DAY, NOW) is None


@pytest.mark.parametrize(
    ("left", "detail"),
    [
        (2 * DAY, "certificate expires in 2d (min_cert_validity 7d)"),
        (2 * DAY + 3 * 3600 + 1700, "certificate expires in 2d3h (min_cert_validity 7d)"),
        (5 * 3600 + 125, "certificate expires in 5h2m (min_cert_validity 7d)"),
        (59.4, "certificate expires in 59s (min_cert_validity 7d)"),
        (0.2, "certificate expires in 1s (min_cert_validity 7d)"),
        (0.0, "certificate has expired (min_cert_validity 7d)"),
        (-3 * DAY, "certificate has expired (min_cert_validity 7d)"),
    ],
)
def test_cert_expiring_too_soon_fails(left: float, detail: str) -> None:
    assert cert_validity_failure(NOW + left, 7 * DAY, NOW) == (FailureReason.TLS, detail)


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e8, 1e8), st.floats(1, 1e8))
def test_cert_fails_exactly_below_the_minimum(left: float, minimum: float) -> None:
    failed = cert_validity_failure(NOW + left, minimum, NOW)
    if (NOW + left) - NOW >= minimum:
        assert failed is None
    else:
        assert failed is not None and failed[0] is FailureReason.TLS


# ---------------------------------------------------------------- TCP expect


def test_expect_matched_passes() -> None:
    assert expect_failure(pattern("^220 "), True, False, 30, 65536) is None


def test_expect_not_matched_before_close() -> None:
    assert expect_failure(pattern("^220 "), False, True, 12, 65536) == (
        FailureReason.BODY,
        "expect '^220 ' not matched (connection closed after 12 bytes)",
    )


def test_expect_not_matched_within_read_limit() -> None:
    assert expect_failure(pattern(r"^SSH-\d"), False, False, 64, 64) == (
        FailureReason.BODY,
        "expect '^SSH-\\\\d' not matched (read_limit 64 bytes reached after 64 bytes)",
    )


# ---------------------------------------------------------------- error classification


def test_tls_errors_are_classified_before_socket_errors() -> None:
    """ssl.SSLError is an OSError: _tls words it before _net would call it a network error."""
    err = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] verify failed")
    err.verify_message = "certificate has expired"
    assert (tls_failure(err) or classify(err)) == (
        FailureReason.TLS,
        "TLS error: certificate has expired",
    )
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    assert tls_failure(eof) == (
        FailureReason.TLS,
        "TLS error: EOF occurred in violation of protocol",
    )


@pytest.mark.parametrize(
    ("exc", "reason", "detail"),
    [
        (
            ProbeError(FailureReason.STATUS, "status 500 not in 200"),
            "status",
            "status 500 not in 200",
        ),
        (ConnectionRefusedError(111, "Connection refused"), "refused", "connection refused"),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            "reset",
            "connection reset: Connection reset by peer",
        ),
        (OSError(113, "No route to host"), "other", "network error: No route to host"),
        (ValueError("boom"), "other", "ValueError: boom"),
    ],
)
def test_other_errors_are_not_tls(exc: BaseException, reason: str, detail: str) -> None:
    assert tls_failure(exc) is None
    assert classify(exc) == (FailureReason(reason), detail)
