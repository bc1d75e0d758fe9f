"""Config loading: YAML -> Config, and every mistake reported with its path."""

from __future__ import annotations

import datetime
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from slamon.config import targets as target_config
from slamon.config import yamlfile
from slamon.config.loader import ConfigError, load_config, parse_config
from slamon.config.root import Config
from slamon.config.slo import default_alert_windows
from slamon.config.yamlfile import _fast_load, _FastLoader, dollar_free, parse_yaml
from slamon.util.schema import bad_host, format_path, has_space

ROOT = Path(__file__).resolve().parent.parent

HTTP_TARGET = """\
  - id: web
    kind: http
    interval: 30s
    timeout: 5s
    http:
      url: https://example.com/health
"""

TCP_TARGET = """\
  - id: db
    kind: tcp
    tcp:
      host: 127.0.0.1
      port: 5432
"""

SLO = """\
slos:
  - id: web-availability
    targets: [web]
    objective: 0.999
"""


def cfg(text: str) -> str:
    return textwrap.dedent(text)


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=env)
    return info.value.errors


def assert_error(text: str, path: str, fragment: str, env: dict[str, str] | None = None) -> None:
    errors = errors_of(text, env)
    prefix = f"{path}: " if path else ""
    matching = [e for e in errors if e.startswith(prefix) and fragment in e[len(prefix) :]]
    assert matching, f"no error {prefix}...{fragment}... in {errors}"


# ---------------------------------------------------------------- valid configs


def test_minimal_example_file_is_valid() -> None:
    config = load_config(ROOT / "config" / "example-minimal.yaml", env={})
    assert [t.kind for t in config.targets] == ["http", "tcp"]
    assert config.targets[0].spec.url == "http://127.0.0.1:8080/health"  # type: ignore[union-attr]
    assert config.slos[0].objective == 0.999


def test_defaults() -> None:
    config = parse_config("targets:\n" + HTTP_TARGET + TCP_TARGET + SLO)
    web, db = config.targets
    assert web.http is not None and db.tcp is not None
    assert web.http.valid_status_codes == list(range(200, 300))
    assert web.http.body_limit == 1024 * 1024
    assert web.http.method == "GET"
    assert web.http.follow_redirects is True and web.http.max_redirects == 10
    assert db.interval == 30.0 and db.timeout == 10.0
    slo = config.slos[0]
    assert slo.sli == "availability" and slo.window == 30 * 86400
    assert slo.alert_windows == default_alert_windows()
    assert [(w.long, w.short) for w in slo.alert_windows] == [
        (3600, 300),
        (6 * 3600, 1800),
        (86400, 7200),
        (3 * 86400, 6 * 3600),
    ]
    assert config.server.listen == "127.0.0.1:9115"
    assert config.logging.level == "info" and config.logging.format == "json"


FULL = """\
server:
  listen: "[::1]:9200"
logging:
  level: DEBUG
  format: console
scheduler:
  max_concurrency: 50
  spread: false
  slot: 20ms
targets:
  - id: api
    kind: http
    interval: 1m
    timeout: 1500ms
    labels: {service: shop, team: core}
    http:
      url: https://api.example.com:8443/v1/health?x=1
      method: post
      headers: {Authorization: "Bearer ${TOKEN}", X-Static: "a$${b}"}
      body: '{"ping": true}'
      valid_status_codes: [200, 3xx, "404-405"]
      body_contains: ["ok"]
      body_matches: ["^\\\\{"]
      body_not_matches: ["(?i)error"]
      json_equals:
        - {path: data.items.0.state, equals: up}
        - {path: count, equals: 3}
      header_matches:
        - {name: Content-Type, regex: json}
        - {name: X-Trace, regex: ".+", allow_missing: true}
      max_response_time: 800ms
      follow_redirects: off
      max_redirects: 0
      tls_verify: false
      ca_file: /etc/ssl/ca.pem
      min_cert_validity: 7d
      body_limit: 64KiB
      ip_family: ipv6
      fresh_connection: true
  - id: smtp
    kind: tcp
    interval: 10s
    timeout: 3s
    tcp:
      host: mail.example.com
      port: ${SMTP_PORT:-465}
      tls: true
      tls_verify: true
      ca_file: /etc/ssl/ca.pem
      server_name: mail.example.com
      min_cert_validity: 14d
      send: "EHLO slamon\\r\\n"
      expect: "^220 "
      read_limit: 4KiB
      ip_family: ipv4
slos:
  - id: shop
    description: composite
    targets: [api, smtp]
    objective: 0.995
    sli: availability
    window: 7d
    slice: 1m
    alert_windows:
      - {long: 1h, short: 5m, burn_rate: 14.4, severity: page}
      - {long: 1d, short: 2h, burn_rate: 3, severity: ticket}
  - id: api-latency
    targets: [api]
    objective: 0.9
    sli: latency
    latency_threshold: 250ms
"""


def test_every_option_round_trips() -> None:
    config = parse_config(FULL, env={"TOKEN": "t0k"})
    api, smtp = config.targets
    assert api.http is not None and smtp.tcp is not None
    assert api.interval == 60 and api.timeout == 1.5
    assert api.http.method == "POST"
    assert api.http.headers == {"Authorization": "Bearer t0k", "X-Static": "a${b}"}
    assert api.http.valid_status_codes == [200, *range(300, 400), 404, 405]
    assert api.http.follow_redirects is False
    assert api.http.body_limit == 64 * 1024
    assert api.http.min_cert_validity == 7 * 86400
    assert api.http.json_equals[1].equals == 3
    assert api.http.header_matches[1].allow_missing is True
    assert smtp.tcp.port == 465 and smtp.tcp.read_limit == 4096
    assert smtp.tcp.send == "EHLO slamon\r\n"
    assert config.slos[0].slice == 60
    assert config.slos[1].latency_threshold == 0.25
    assert config.server.host == "::1" and config.server.port == 9200
    assert config.logging.level == "debug"
    assert config.scheduler.max_concurrency == 50
    assert config.scheduler.slot == 0.02
    assert parse_config("targets: []\n").scheduler.slot is None  # auto
    assert parse_config("scheduler: {slot: auto}\ntargets: []\n").scheduler.slot is None
    # the validated model survives a dump / validate cycle unchanged
    assert Config.model_validate(config.model_dump()) == config
    assert Config.model_validate_json(config.model_dump_json()) == config


def test_config_example_file_if_present() -> None:
    path = ROOT / "config" / "example.yaml"
    if not path.exists():
        pytest.skip("config/example.yaml not written yet")
    load_config(path, env={})


# -------------------------------------------------------------------- mistakes

BASE = "targets:\n" + HTTP_TARGET + TCP_TARGET + SLO

MISTAKES: list[tuple[str, str, str, str]] = [
    # (name, config, path, message fragment)
    (
        "scheduler slot above 1s",
        "scheduler:\n  slot: 2s\n" + BASE,
        "scheduler.slot",
        "must be auto, or from 0s (off) to 1s",
    ),
    (
        "scheduler slot not a duration",
        "scheduler:\n  slot: soon\n" + BASE,
        "scheduler.slot",
        "soon",
    ),
    (
        "timeout >= interval",
        BASE.replace("timeout: 5s", "timeout: 30s"),
        "targets[0].timeout",
        "must be shorter than interval (30s)",
    ),
    (
        "timeout default vs short interval",
        BASE.replace("  - id: db\n", "  - id: db\n    interval: 5s\n"),
        "targets[1].timeout",
        "must be shorter than interval (5s)",
    ),
    (
        "interval below 1s",
        BASE.replace("interval: 30s", "interval: 500ms").replace("timeout: 5s", "timeout: 100ms"),
        "targets[0].interval",
        "at least 1s",
    ),
    (
        "objective as percent",
        BASE.replace("objective: 0.999", "objective: 99.9"),
        "slos[0].objective",
        "objective is a ratio: use 0.999 for 99.9%",
    ),
    (
        "objective of 1",
        BASE.replace("objective: 0.999", "objective: 1"),
        "slos[0].objective",
        "no error budget",
    ),
    (
        "objective negative",
        BASE.replace("objective: 0.999", "objective: -0.5"),
        "slos[0].objective",
        "between 0 and 1",
    ),
    (
        "latency SLO without threshold",
        BASE.replace("objective: 0.999", "objective: 0.999\n    sli: latency"),
        "slos[0].latency_threshold",
        "required when sli is latency",
    ),
    (
        "threshold on availability SLO",
        BASE.replace("objective: 0.999", "objective: 0.999\n    latency_threshold: 1s"),
        "slos[0].latency_threshold",
        "only allowed when sli is latency",
    ),
    (
        "unknown kind",
        BASE.replace("kind: tcp", "kind: udp"),
        "targets[1].kind",
        "unknown kind 'udp': must be one of 'http', 'tcp'",
    ),
    (
        "http section missing",
        BASE.replace("kind: tcp", "kind: http"),
        "targets[1].http",
        "section required for kind 'http'",
    ),
    (
        "tcp section on http target",
        BASE.replace(
            "      url: https://example.com/health\n",
            "      url: https://example.com/health\n    tcp: {host: h, port: 1}\n",
        ),
        "targets[0].tcp",
        "not allowed for kind 'http'",
    ),
    (
        "URL scheme",
        BASE.replace("https://example.com/health", "ftp://example.com/"),
        "targets[0].http.url",
        "scheme must be http or https",
    ),
    (
        "URL without scheme",
        BASE.replace("https://example.com/health", "example.com/health"),
        "targets[0].http.url",
        "no scheme",
    ),
    (
        "URL bad port",
        BASE.replace("https://example.com/health", "http://example.com:99999/"),
        "targets[0].http.url",
        "invalid URL",
    ),
    (
        "invalid regex",
        BASE.replace(
            "      url: https://example.com/health\n",
            "      url: https://example.com/health\n      body_matches: [ok, 'a(b']\n",
        ),
        "targets[0].http.body_matches[1]",
        "invalid regular expression 'a(b': missing ), unterminated subpattern",
    ),
    (
        "invalid tcp expect regex",
        BASE.replace("port: 5432", "port: 5432\n      expect: '[unclosed'"),
        "targets[1].tcp.expect",
        "unterminated character set",
    ),
    (
        "invalid duration",
        BASE.replace("interval: 30s", "interval: 30 seconds"),
        "targets[0].interval",
        "invalid duration '30 seconds'",
    ),
    (
        "invalid size",
        BASE.replace(
            "      url: https://example.com/health\n",
            "      url: https://example.com/health\n      body_limit: 1 megabyte\n",
        ),
        "targets[0].http.body_limit",
        "invalid size '1 megabyte'",
    ),
    (
        "duplicate target id",
        BASE.replace("id: db", "id: web"),
        "targets[1].id",
        "duplicate id 'web' (also targets[0])",
    ),
    (
        "duplicate SLO id",
        BASE + "  - id: web-availability\n    targets: [db]\n    objective: 0.9\n",
        "slos[1].id",
        "duplicate id 'web-availability' (also slos[0])",
    ),
    (
        "SLO references unknown target",
        BASE.replace("targets: [web]", "targets: [web, dbx]"),
        "slos[0].targets[1]",
        "unknown target 'dbx'; did you mean 'db'?",
    ),
    (
        "SLO lists a target twice",
        BASE.replace("targets: [web]", "targets: [web, web]"),
        "slos[0].targets[1]",
        "listed twice",
    ),
    (
        "SLO with no targets",
        BASE.replace("targets: [web]", "targets: []"),
        "slos[0].targets",
        "must not be empty",
    ),
    (
        "invalid label name",
        BASE.replace("  - id: db\n", "  - id: db\n    labels: {2fast: x}\n"),
        "targets[1].labels.2fast",
        "invalid label name",
    ),
    (
        "reserved label name",
        BASE.replace("  - id: db\n", "  - id: db\n    labels: {slo: x}\n"),
        "targets[1].labels.slo",
        "reserved by slamon",
    ),
    (
        "label value read as boolean",
        BASE.replace("  - id: db\n", "  - id: db\n    labels: {critical: yes}\n"),
        "targets[1].labels.critical",
        "quote it",
    ),
    (
        "status code out of range",
        BASE.replace(
            "      url: https://example.com/health\n",
            "      url: https://example.com/health\n      valid_status_codes: [200, 600]\n",
        ),
        "targets[0].http.valid_status_codes[1]",
        "status code 600 is outside 100-599",
    ),
    (
        "status code garbage",
        BASE.replace(
            "      url: https://example.com/health\n",
            "      url: https://example.com/health\n      valid_status_codes: 2xxx\n",
        ),
        "targets[0].http.valid_status_codes",
        "invalid status code '2xxx'",
    ),
    (
        "alert window short >= long",
        BASE + "    alert_windows:\n      - {long: 1h, short: 1h, burn_rate: 14.4}\n",
        "slos[0].alert_windows[0].short",
        "must be shorter than long (1h)",
    ),
    (
        "alert window burn rate",
        BASE + "    alert_windows:\n      - {long: 1h, short: 5m, burn_rate: 0}\n",
        "slos[0].alert_windows[0].burn_rate",
        "greater than 0",
    ),
    (
        "SLO window too long",
        BASE + "    window: 365d\n",
        "slos[0].window",
        "at most 90d",
    ),
    (
        "slice shorter than a part interval",
        BASE + "    slice: 10s\n",
        "slos[0].slice",
        "at least the longest part interval (30s)",
    ),
    (
        "server.listen without port",
        "server:\n  listen: localhost\n" + BASE,
        "server.listen",
        "must be host:port",
    ),
    (
        "server.listen IPv6 without brackets",
        "server:\n  listen: '::1:9115'\n" + BASE,
        "server.listen",
        "brackets",
    ),
    (
        "logging.level invalid",
        "logging:\n  level: verbose\n" + BASE,
        "logging.level",
        "must be one of 'debug', 'info', 'warning' or 'error'",
    ),
    (
        "logging.format invalid",
        "logging:\n  format: xml\n" + BASE,
        "logging.format",
        "'json' or 'console'",
    ),
    (
        "unknown key with suggestion",
        BASE.replace("interval: 30s", "intervall: 30s"),
        "targets[0].intervall",
        "unknown key; did you mean 'interval'?",
    ),
    (
        "protocol key outside its section",
        BASE.replace("  - id: db\n", "  - id: db\n    port: 5432\n"),
        "targets[1].port",
        "'port' goes inside the 'tcp' section",
    ),
    (
        "unknown top-level section",
        "target:\n" + HTTP_TARGET,
        "target",
        "did you mean 'targets'?",
    ),
    (
        "missing required key",
        BASE.replace("      port: 5432\n", ""),
        "targets[1].tcp.port",
        "missing required key",
    ),
    (
        "port out of range",
        BASE.replace("port: 5432", "port: 70000"),
        "targets[1].tcp.port",
        "less than or equal to 65535",
    ),
    (
        "invalid id",
        BASE.replace("id: db", "id: 'my db'"),
        "targets[1].id",
        "invalid id 'my db'",
    ),
    (
        "section is not a mapping",
        BASE.replace("    tcp:\n      host: 127.0.0.1\n      port: 5432\n", "    tcp: 127.0.0.1\n"),
        "targets[1].tcp",
        "must be a mapping",
    ),
    (
        "targets not a list",
        "targets: {id: web}\n",
        "targets",
        "must be a list",
    ),
    (
        "invalid header name",
        BASE.replace(
            "      url: https://example.com/health\n",
            "      url: https://example.com/health\n      headers: {'Bad Name': x}\n",
        ),
        'targets[0].http.headers["Bad Name"]',
        "invalid header name",
    ),
    (
        "method invalid",
        BASE.replace(
            "      url: https://example.com/health\n",
            "      url: https://example.com/health\n      method: FETCH\n",
        ),
        "targets[0].http.method",
        "'GET'",
    ),
    (
        "max_redirects too high",
        BASE.replace(
            "      url: https://example.com/health\n",
            "      url: https://example.com/health\n      max_redirects: 100\n",
        ),
        "targets[0].http.max_redirects",
        "50",
    ),
    (
        "ip_family invalid",
        BASE.replace("port: 5432", "port: 5432\n      ip_family: ipv5"),
        "targets[1].tcp.ip_family",
        "'ipv4'",
    ),
    (
        "section left empty",
        "server:\n" + BASE,
        "server",
        "has no value",
    ),
    (
        "not a number",
        BASE.replace("objective: 0.999", "objective: high"),
        "slos[0].objective",
        "must be a number",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [m[1:] for m in MISTAKES],
    ids=[m[0] for m in MISTAKES],
)
def test_mistake_reported_with_path(text: str, path: str, fragment: str) -> None:
    assert_error(text, path, fragment)


def test_mistakes_are_distinct() -> None:
    assert len({m[0] for m in MISTAKES}) == len(MISTAKES) >= 20
    assert len({(m[2], m[3]) for m in MISTAKES}) == len(MISTAKES)


def test_each_mistake_alone_is_the_only_error() -> None:
    """No noise: a single mistake gives one line (a few give a second, related one)."""
    for name, text, path, _ in MISTAKES:
        errors = errors_of(text)
        assert any(e.startswith(path + ":") for e in errors), name
        assert len(errors) <= 2, (name, errors)


# --------------------------------------------------------------- YAML and files


def test_yaml_syntax_error_has_line_and_column() -> None:
    errors = errors_of("targets:\n  - id: web\n    kind: http\n   bad: [\n")
    assert len(errors) == 1
    assert errors[0].startswith("line ")
    assert ", column " in errors[0]


def test_yaml_mapping_error_line() -> None:
    errors = errors_of("server:\n  listen: a\n    b: c\n")
    assert errors == ["line 3, column 6: mapping values are not allowed here"]


def test_duplicate_yaml_key() -> None:
    text = "targets:\n  - id: web\n    kind: http\n    id: other\n"
    assert errors_of(text) == ["line 4, column 5: duplicate key 'id' (first defined at line 2)"]


def test_duplicate_top_level_section() -> None:
    errors = errors_of("slos: []\ntargets: []\nslos: []\n")
    assert errors == ["line 3, column 1: duplicate key 'slos' (first defined at line 1)"]


def test_yaml_merge_keys_are_not_duplicates() -> None:
    text = (
        "targets:\n"
        "  - &base\n    id: a\n    kind: tcp\n    tcp: {host: h, port: 1}\n"
        "  - <<: *base\n    id: b\n"
    )
    config = parse_config(text)
    assert [t.id for t in config.targets] == ["a", "b"]


def test_python_tags_are_rejected() -> None:
    errors = errors_of("targets: !!python/object/apply:os.system ['true']\n")
    assert len(errors) == 1 and errors[0].startswith("line 1, column 10:")


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here\n", "---\n"])
def test_empty_config(text: str) -> None:
    assert errors_of(text) == ["config is empty"]


@pytest.mark.parametrize(("text", "what"), [("- a\n", "a list"), ("hello\n", "a string")])
def test_top_level_must_be_mapping(text: str, what: str) -> None:
    (error,) = errors_of(text)
    assert "top level must be a mapping" in error and what in error


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [f"{path}: file not found"]


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.errors == [f"{tmp_path}: is a directory, not a config file"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"targets: [\xff\xfe]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "not valid UTF-8" in info.value.errors[0]


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    errors = errors_of("\n".join(lines) + "\n")
    assert errors[0].startswith("a0: unknown key")


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    text = "targets: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(ConfigError):
        parse_config(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_gives_config_or_config_error(text: str) -> None:
    try:
        parse_config(text)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)


# ---------------------------------------------------------------- interpolation

ENV_CONFIG = """\
targets:
  - id: web
    kind: http
    interval: ${INTERVAL:-30s}
    http:
      url: ${URL}
      headers:
        Authorization: "Bearer ${API_TOKEN}"
        X-Literal: "$${NOT_A_VAR}"
      body: '{"a": "${EMPTY:-fallback}"}'
"""


def test_interpolation_values_defaults_and_escape() -> None:
    env = {"URL": "https://example.com/", "API_TOKEN": "s3cr3t: #{[!&*", "EMPTY": ""}
    config = parse_config(ENV_CONFIG, env=env)
    http = config.targets[0].http
    assert http is not None
    assert http.url == "https://example.com/"
    # YAML special characters in a secret cannot break parsing
    assert http.headers["Authorization"] == "Bearer s3cr3t: #{[!&*"
    assert http.headers["X-Literal"] == "${NOT_A_VAR}"
    assert http.body == '{"a": "fallback"}'  # ':-' also applies to an empty variable
    assert config.targets[0].interval == 30


def test_env_overrides_default() -> None:
    env = {"URL": "https://example.com/", "API_TOKEN": "x", "INTERVAL": "1m"}
    assert parse_config(ENV_CONFIG, env=env).targets[0].interval == 60


def test_interpolation_into_numbers_and_booleans() -> None:
    text = BASE.replace("port: 5432", "port: ${PORT}\n      tls: ${TLS}")
    config = parse_config(text, env={"PORT": "6543", "TLS": "true"})
    assert config.targets[1].tcp is not None
    assert config.targets[1].tcp.port == 6543 and config.targets[1].tcp.tls is True


def test_unset_variable_has_path() -> None:
    errors = errors_of(ENV_CONFIG, env={"URL": "https://example.com/"})
    assert errors == [
        "targets[0].http.headers.Authorization: environment variable API_TOKEN is not set"
    ]


def test_unset_variable_does_not_add_noise() -> None:
    errors = errors_of(ENV_CONFIG, env={"API_TOKEN": "x"})
    assert errors == ["targets[0].http.url: environment variable URL is not set"]


@pytest.mark.parametrize(
    ("value", "fragment"), [("${", "unclosed ${"), ("${1X}", "invalid reference ${1X}")]
)
def test_malformed_reference(value: str, fragment: str) -> None:
    text = BASE.replace("  - id: db\n", f"  - id: db\n    labels: {{env: '{value}'}}\n")
    assert_error(text, "targets[1].labels.env", fragment)


def test_variables_are_not_interpolated_in_keys() -> None:
    text = BASE.replace("  - id: db\n", "  - id: db\n    labels: {'${K}': v}\n")
    assert_error(text, 'targets[1].labels["${K}"]', "invalid label name", env={"K": "x"})


SECRET = "hunter2 Sup3r/Secret"


SECRET_CASES = [
    BASE.replace("id: db", "id: ${S}"),  # invalid id, quoted by the validator
    BASE.replace("kind: tcp", "kind: ${S}"),  # literal error
    BASE.replace("interval: 30s", "interval: ${S}"),  # invalid duration
    BASE.replace("objective: 0.999", "objective: ${S}"),  # not a number
    BASE.replace("https://example.com/health", "${S}"),  # invalid URL
    BASE.replace("https://example.com/health", "https://u:${S}@h:x/"),  # credentials in URL
    BASE.replace("port: 5432", "port: ${S}"),  # int parsing
    BASE.replace("port: 5432", "port: 5432\n      expect: '(${S}'"),  # regex error
    BASE.replace("targets: [web]", "targets: [web, '${S}']"),  # unknown reference
    BASE.replace("id: db", "id: web${S}")
    + "  - id: s2\n    targets: ['web${S}', x]\n    objective: 0.9\n",
    BASE.replace("  - id: db\n", "  - id: db\n    labels: {a: '${S}'}\n").replace(
        "port: 5432", "port: 0"
    ),
    BASE.replace(
        "      url: https://example.com/health\n",
        "      url: https://example.com/health\n      valid_status_codes: ['${S}']\n",
    ),
]


@pytest.mark.parametrize("text", SECRET_CASES, ids=[f"case{i}" for i in range(len(SECRET_CASES))])
def test_secret_never_in_errors(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={"S": SECRET})
    exc = info.value
    assert exc.errors
    for shown in (*exc.errors, str(exc), repr(exc)):
        assert SECRET not in shown
        assert "hunter2" not in shown
    assert exc.__cause__ is None and exc.__context__ is None


def test_secret_placeholder_names_the_variable() -> None:
    errors = errors_of(BASE.replace("id: db", "id: ${S}"), env={"S": "bad id!"})
    assert errors == [
        "targets[1].id: invalid id (value from ${S} not shown): use letters, digits and "
        "_ . : - (max 128), starting with a letter or digit"
    ]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@pytest.mark.parametrize("text", [
    'a: "\\x24{A}"\n', 'a: "\\u0024{A}"\n', 'a: "\\U00000024{A}"\n',
    'a: "$\\\n  {A}"\n',  # an escaped line break joins the two
    "a: $\n", "a: '$'\n", "a: |\n  ${A}\n",
])
def test_each_way_to_write_a_dollar_is_seen(text: str) -> None:
    assert "$" in "".join(_strings(yaml.safe_load(text)))
    assert dollar_free(text) is False


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(
    ['"', "'", "\\", "x", "u", "U", "0", "2", "4", "$", "{", "}", "a", " ", "\n", ": ",
     "- ", "|\n  ", "\\x24", "\\u0024", "\\U00000024", "k: "]), max_size=16))
def test_a_dollar_free_text_parses_to_strings_without_one(pieces: list[str]) -> None:
    text = "".join(pieces)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    if dollar_free(text):
        assert not any("$" in s for s in _strings(data)), (text, data)


def test_a_file_without_references_is_not_walked(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk over every value is skipped for a file with no '$'; an included file,
    which may hold one, keeps it."""
    from slamon.config import loader

    walked: list[object] = []
    real = loader._Interpolator.walk
    monkeypatch.setattr(loader._Interpolator, "walk",
                        lambda self, value, loc: walked.append(loc) or real(self, value, loc))
    monkeypatch.setenv("URL", "http://127.0.0.1:9/")
    path = tmp_path / "c.yaml"
    path.write_text("targets: [{id: web, kind: http, http: {url: 'http://127.0.0.1:9/'}}]\n")
    assert load_config(path).targets[0].id == "web" and walked == []
    (tmp_path / "more.yaml").write_text(
        "targets: [{id: api, kind: http, http: {url: '${URL}api'}}]\n")
    path.write_text(path.read_text() + "include: more.yaml\n")
    config = load_config(path)
    assert config.targets[1].http.url == "http://127.0.0.1:9/api"  # type: ignore[union-attr]
    assert walked


def test_load_config_uses_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(ENV_CONFIG)
    monkeypatch.setenv("URL", "https://example.org/")
    monkeypatch.setenv("API_TOKEN", "tok")
    monkeypatch.delenv("INTERVAL", raising=False)
    assert load_config(path).targets[0].http.url == "https://example.org/"  # type: ignore[union-attr]


# ------------------------------------------------------------------ many errors

MULTI = """\
server:
  listen: nowhere
targets:
  - id: web
    kind: http
    interval: 10s
    timeout: 10s
    http:
      url: https://example.com/
      body_matches: ["("]
  - id: web
    kind: tcp
    tcp: {host: db, port: 5432}
slos:
  - id: s
    targets: [web, api]
    objective: 99.9
    sli: latency
"""


def test_all_errors_reported_together() -> None:
    assert errors_of(MULTI) == [
        "server.listen: must be host:port, e.g. 127.0.0.1:9115 or [::1]:9115",
        "targets[0].timeout: must be shorter than interval (10s)",
        "targets[0].http.body_matches[0]: invalid regular expression '(': "
        "missing ), unterminated subpattern at position 0",
        "targets[1].id: duplicate id 'web' (also targets[0])",
        "slos[0].targets[1]: unknown target 'api'",
        "slos[0].objective: objective is a ratio: use 0.999 for 99.9%",
        "slos[0].latency_threshold: required when sli is latency (e.g. 300ms)",
    ]


def test_config_error_str_lists_every_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MULTI, source="multi.yaml")
    text = str(info.value)
    assert text.startswith("multi.yaml: 7 errors\n")
    assert all(line in text for line in info.value.errors)


def test_format_path() -> None:
    assert format_path(("targets", 3, "http", "url")) == "targets[3].http.url"
    assert format_path(("slos", 0, "targets", 1)) == "slos[0].targets[1]"
    assert format_path(("labels", "a b")) == 'labels["a b"]'


# ------------------------------------------------------------------------- CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slamon", "check-config", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def test_cli_valid_config_one_line_summary() -> None:
    result = run_cli("config/example-minimal.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [
        "config/example-minimal.yaml: OK: 2 targets (1 http, 1 tcp), 1 SLO, 0 SLAs, "
        "0 maintenance windows"
    ]
    assert result.stderr == ""


def test_cli_invalid_config_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MULTI)
    result = run_cli(str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert "error: targets[0].timeout: must be shorter than interval (10s)" in lines
    assert "error: slos[0].targets[1]: unknown target 'api'" in lines
    assert lines[-1] == f"{path}: 7 errors"


@pytest.mark.parametrize("content", [None, "", "a: [\n", "targets: [{id: x}]\n"])
def test_cli_never_shows_a_traceback(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_text(content)
    result = run_cli(str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")


def test_examples_in_docs_are_valid() -> None:
    import re

    doc = (ROOT / "docs" / "config.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "slos:" in b]
    assert len(blocks) >= 2
    for block in blocks:
        parse_config(block, env={"API_TOKEN": "x"})


def test_models_with_the_same_given_fields_share_one_fields_set() -> None:
    """Strict shares pydantic's internal per-instance set of given fields (memory at
    10k targets); pydantic is pinned for it, and this shows the sharing still works."""
    from slamon.config.targets import TcpSpec

    a = TcpSpec.model_validate({"host": "a.example", "port": 1})
    b = TcpSpec.model_validate({"host": "b.example", "port": 2})
    c = TcpSpec.model_validate({"host": "c.example", "port": 3, "tls": True})
    assert a.model_fields_set == {"host", "port"}
    assert a.model_fields_set is b.model_fields_set
    assert c.model_fields_set is not a.model_fields_set
    # a copy that sets a field must not change the set the others share
    copied = a.model_copy(update={"tls": True})
    assert "tls" in copied.model_fields_set
    assert b.model_fields_set == {"host", "port"}


# --------------------------------------------------------------- the fast YAML walk

_yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["yes", "off", "~", "0x1f", "1e3", "2001-12-14", "2001-12-14 21:59:43",
                     "=", "<<", "0o17", ".inf", "1_000", "12:30"]),
)
_yaml_keys = st.one_of(st.text(max_size=6), st.sampled_from(["on", "=", "1", "null", "<<"]))
_yaml_data = st.recursive(
    _yaml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_yaml_keys, inner, max_size=4),
    max_leaves=20,
)


def _typed(value: object) -> object:
    """The value with each scalar's type kept: 1 == True == 1.0 would hide a wrong type."""
    if isinstance(value, dict):
        return {repr(_typed(k)): _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


@settings(max_examples=300, deadline=None)
@given(data=_yaml_data, flow=st.sampled_from([None, True, False]))
def test_the_fast_yaml_walk_builds_what_the_stock_constructor_builds(
    data: object, flow: bool | None
) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True)
    assert _typed(_fast_load(text)[0]) == _typed(yaml.load(text, Loader=yaml.SafeLoader))


@pytest.mark.parametrize("text", [
    "a: &x [1, 2]\nb: *x\n",                      # an alias: one shared object
    "base: &b {k: 1}\nm: {<<: *b, j: 2}\n",       # a merge key
    "? [1, 2]\n: v\n",                            # a key that is not a string
    "1: a\n2.5: b\ntrue: c\n~: d\n",               # scalar keys of other types
    "=: v\n",                                     # the value key
    "s: !!set {a, b}\no: !!omap [{a: 1}, {b: 2}]\n",
    "when: 2001-12-14t21:59:43.10-05:00\nbin: !!binary aGk=\n",
    "deep: " + "[" * 300 + "]" * 300 + "\n",
    "deep: " + "[" * 800 + "]" * 800 + "\n",     # as deep as libyaml goes (it refuses 1,000)
    "a: &s text\nb: 1\n",                          # an anchor without an alias
    "a: !!str 1\nb: ! 2\nc: !x 3\n",               # explicit and non-specific tags
    "! {a: 1, b: [x]}\n",
    "a: 1\n---\nb: 2\n",                            # two documents
    "just text\n",                               # the document is one scalar
    "--- 12\n...\n",
    "",
    "a: 1\nb:\n  - {c: [1, {d: e}], f: ''}\n  - 2001-12-14\n",
])
def test_documents_beyond_the_fast_walk_take_the_stock_constructor(text: str) -> None:
    def outcome(load: Any) -> object:
        try:
            return _typed(load(text))
        except yaml.YAMLError as exc:
            return str(exc)  # the same refusal, marks included
        except RecursionError:
            return "too deep"

    stock = outcome(lambda t: yaml.load(t, Loader=_FastLoader))  # what ran before the walk
    assert outcome(lambda t: _fast_load(t)[0]) == stock
    if text.startswith("a: &x"):
        shared, tree = _fast_load(text)
        assert tree and shared["a"] is shared["b"]  # as the stock constructor: aliases share


def test_plain_documents_are_built_from_the_events_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The walk from libyaml's events builds a plain document without the stock path."""
    def stock(*_: object, **__: object) -> object:
        raise AssertionError("the stock composer ran")

    monkeypatch.setattr(yaml, "load", stock)
    text = "a: [1, x, {b: null, c: 2.5, d: '7', e: 2001-12-14}]\nf: true\n"
    assert _fast_load(text)[1] is False  # no node tree
    assert _typed(_fast_load(text)[0]) == _typed(
        {"a": [1, "x", {"b": None, "c": 2.5, "d": "7", "e": datetime.date(2001, 12, 14)}],
         "f": True})


def test_only_data_built_from_a_node_tree_is_compacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pickle round trip frees the pages a node tree scattered the data over; data
    built from the events alone is not scattered so, and the round trip only costs."""
    compacted: list[object] = []

    def compact(data: object) -> object:
        compacted.append(data)
        return data

    monkeypatch.setattr(yamlfile, "_compact", compact)
    plain = parse_yaml("a: {b: [1, 2]}\n", "plain.yaml")
    anchored = parse_yaml("a: &x {b: [1, 2]}\nc: *x\n", "anchored.yaml")
    assert compacted == [anchored]
    assert plain == {"a": {"b": [1, 2]}}


def test_a_duplicate_key_is_still_refused_by_the_fast_path() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'a'"):
        _fast_load("x: 1\na: 1\nb: 2\na: 3\n")  # the stock path, then its refusal


_url_ports = (st.sampled_from(["", ":", ":0", ":00", ":65535", ":65536", ":99999"])
              | st.integers(0, 200_000).map(lambda n: f":{n}"))
#: near the usual shape: what the quick check takes or only just does not
_url_near = st.builds(
    lambda *parts: "".join(parts),
    st.sampled_from(["http://", "https://", "HTTP://", "http:/", "ftp://"]),
    st.text(alphabet="a0.-@:_", min_size=1, max_size=5),
    _url_ports,
    st.sampled_from(["", "/", "/x?y#z", "?q", "#f", "x", "/a b"]),
)
#: anything of URL parts
_url_like = st.builds(
    lambda *parts: "".join(parts),
    st.sampled_from(["http", "https", "HTTP", "ftp", "", "http:", "h"]),
    st.sampled_from(["://", ":/", "//", ":", "://u:p@", ":///"]),
    st.text(alphabet="aZ09.-_@[]:%\u00e9", max_size=8),
    _url_ports | st.text(alphabet="0123456789", max_size=6).map(lambda d: ":" + d),
    st.text(alphabet="/?#a \x00:@[]\t", max_size=6),
)


@settings(max_examples=500)
@given(_url_near | _url_like | st.text(max_size=30))
def test_the_quick_url_check_agrees_with_urlsplit(value: str) -> None:
    """A URL of the usual shape is taken without urlsplit; whatever it takes, urlsplit's
    checks say the same of it."""
    quick = target_config.url_problem(value)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(target_config, "_PLAIN_URL", re.compile(r"(?!)"))  # matches nothing
        assert target_config.url_problem(value) == quick


def test_the_quick_url_check_takes_the_usual_urls() -> None:
    for url in ("http://127.0.0.1:9/", "https://shop.example.com/health?x=1#y",
                "http://a-b.example:65535", "https://h"):
        assert target_config._PLAIN_URL.fullmatch(url) is not None
        assert target_config.url_problem(url) is None
    for url in ("http://h:0/", "http://h:65536/"):  # the shape, not the range
        assert target_config._PLAIN_URL.fullmatch(url) is not None
        assert target_config.url_problem(url) is not None


@given(st.text(alphabet=st.characters(), max_size=40)
       | st.text(alphabet=" \t\u00a0\u2003\u3000\x1c/[]ab.:", max_size=12))
def test_the_host_and_url_character_checks_are_the_characters_own(text: str) -> None:
    """One regex search stands for a generator over the characters in every target's URL
    and host check: it finds exactly what `str.isspace` (and the host's `/[]`) find."""
    assert has_space(text) == any(ch.isspace() for ch in text)
    assert bad_host(text) == any(ch.isspace() or ch in "/[]" for ch in text)


@pytest.mark.parametrize(("spec", "where"), [
    ('{id: a, kind: http, http: {url: "http://h.test/a\u00a0b"}}', "targets[0].http.url"),
    ('{id: a, kind: icmp, icmp: {host: "h/x"}}', "targets[0].icmp.host"),
    ('{id: a, kind: dns, dns: {server: "h x:53", query_name: a.test}}', "targets[0].dns.server"),
    ('{id: a, kind: grpc, grpc: {host: "[::1]", port: 1}}', "targets[0].grpc.host"),
])
def test_whitespace_and_brackets_are_refused_where_they_are(spec: str, where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(f"targets:\n  - {spec}\n")
    assert any(where in line for line in exc.value.errors), exc.value.errors
