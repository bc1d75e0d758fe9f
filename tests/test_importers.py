"""`slamon import blackbox` / `slamon import openslo`: real-world-shaped files round-trip
into configs that slamon's own loader accepts, with nothing dropped silently."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slamon.config.loader import parse_config
from slamon.config.root import Config
from slamon.importers import InputError
from slamon.importers.blackbox import import_blackbox
from slamon.importers.openslo import import_openslo

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def _text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def _read(pattern: str) -> list[tuple[str, str]]:
    return [(n, Path(n).read_text(encoding="utf-8"))
            for n in sorted(glob.glob(str(DATA / pattern)))]


def _comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))


@pytest.fixture(scope="module")
def imported() -> tuple[str, Config]:
    text = import_blackbox(_text("blackbox.yml"), _text("prometheus-blackbox.yml"),
                           read=_read)
    return text, parse_config(text)


def test_blackbox_targets_round_trip(imported: tuple[str, Config]) -> None:
    _, config = imported
    by_id = {t.id: t for t in config.targets}
    assert sorted(by_id) == sorted([
        "prometheus.io", "example.com:8080-health", "api.example.com-v1-ping",
        "db.example.com:5432", "2001:db8::1-6379", "mail.example.com:995",
        "git.example.com:22", "bastion.example.com:22",
        "8.8.8.8", "1.1.1.1", "grpc.example.com:443"])
    web = by_id["prometheus.io"]
    assert web.kind == "http" and web.http is not None
    assert web.http.url == "https://prometheus.io" and web.http.method == "GET"
    assert web.interval == 30 and web.timeout == 10 and web.labels == {"team": "web"}
    post = by_id["api.example.com-v1-ping"].http
    assert post is not None and post.method == "POST"
    assert post.url == "http://api.example.com/v1/ping"  # blackbox adds http:// too
    assert by_id["api.example.com-v1-ping"].interval == 60
    db = by_id["db.example.com:5432"]
    assert db.tcp is not None and (db.tcp.host, db.tcp.port) == ("db.example.com", 5432)
    assert db.interval == 15 and db.timeout < 15  # scrape_timeout == interval is lowered
    v6 = by_id["2001:db8::1-6379"].tcp
    assert v6 is not None and (v6.host, v6.port) == ("2001:db8::1", 6379)
    pop = by_id["mail.example.com:995"].tcp
    assert pop is not None and pop.tls and pop.tls_verify and pop.expect == "(?m)^OK"
    ssh = by_id["git.example.com:22"]  # from file_sd_configs
    assert ssh.tcp is not None and ssh.tcp.expect is None and ssh.tcp.send is None
    assert ssh.labels == {"env": "prod"}
    # a send after an expect is a dialogue: query_response, step for step
    assert [s.model_dump(exclude_defaults=True) for s in ssh.tcp.query_response] == [
        {"expect": "(?m)^SSH-2.0-"}, {"send": "SSH-2.0-blackbox-ssh-check\n"}]
    ping = by_id["8.8.8.8"]  # module icmp: the address is the host pinged
    assert ping.kind == "icmp" and ping.icmp is not None and ping.icmp.host == "8.8.8.8"
    grpc = by_id["grpc.example.com:443"]
    assert grpc.kind == "grpc" and grpc.grpc is not None
    assert (grpc.grpc.host, grpc.grpc.port, grpc.grpc.tls) == ("grpc.example.com", 443, True)


def test_blackbox_lists_what_is_not_imported(imported: tuple[str, Config]) -> None:
    text, _ = imported
    notes = _comments(text)
    for expected in (
        "module grpc (prober grpc): imported",
        "grpc.preferred_ip_protocol: ip4 (with fallback)", "module icmp_ttl5 (prober icmp): "
        "imported", "icmp.ttl: 5: no slamon equivalent", "job blackbox-icmp, module icmp",
        "regex ^+OK rewritten as ^OK", "relabel_configs[1]", "kubernetes_sd_configs",
        "job prometheus: not a blackbox probe job",
    ):
        assert expected in notes, expected
    # every dialogue is carried over (irc's ${1} too): only the regex rewrite is noted
    assert [line for line in notes.splitlines() if "query_response" in line] == [
        "#     tcp.query_response[0].expect: regex ^+OK rewritten as ^OK for Python"]


def test_blackbox_example_every_option() -> None:
    """blackbox's example.yml uses every option: each is carried over or commented."""
    prom = """
scrape_configs:
  - job_name: all
    metrics_path: /probe
    params: {module: [http_2xx_example]}
    static_configs: [{targets: [https://www.example.com/]}]
    relabel_configs:
      - {source_labels: [__address__], target_label: __param_target}
  - job_name: auth
    metrics_path: /probe
    params: {module: [http_basic_auth_example]}
    static_configs: [{targets: [https://login.example.com/]}]
    relabel_configs:
      - {source_labels: [__address__], target_label: __param_target}
  - job_name: ca
    metrics_path: /probe
    params: {module: [http_custom_ca_example]}
    static_configs: [{targets: [https://internal.example.com/]}]
    relabel_configs:
      - {source_labels: [__address__], target_label: __param_target}
  - job_name: irc
    metrics_path: /probe
    params: {module: [irc_banner_example]}
    static_configs: [{targets: ['irc.example.com:6667']}]
    relabel_configs:
      - {source_labels: [__address__], target_label: __param_target}
  - job_name: dns
    metrics_path: /probe
    params: {module: [dns_udp_example]}
    static_configs: [{targets: ['8.8.8.8']}]
    relabel_configs:
      - {source_labels: [__address__], target_label: __param_target}
"""
    text = import_blackbox(_text("blackbox-example.yml"), prom)
    config = parse_config(text)
    by_id = {t.id: t for t in config.targets}
    ex = by_id["www.example.com"]
    assert ex.timeout == 5
    h = ex.http
    assert h is not None
    assert h.headers == {"Host": "vhost.example.com", "Accept-Language": "en-US",
                         "Origin": "example.com"}
    assert h.body_not_matches == ["Could not connect to database"]
    assert h.body_matches == ["Download the latest version here"]
    assert h.ip_family == "ipv4" and h.tls_verify and h.follow_redirects
    assert h.valid_http_versions == ["HTTP/1.1", "HTTP/2.0"]
    rules = {r.name: r for r in h.header_matches}
    assert rules["Access-Control-Allow-Origin"].regex == r"(\*|example\.com)"
    cookie = rules["Set-Cookie"]  # fail_if_header_matches: must NOT match
    assert cookie.allow_missing and not re.search(cookie.regex, "id=1")
    auth = by_id["login.example.com"].http
    assert auth is not None and auth.method == "POST"
    assert auth.headers["Authorization"] == "Basic dXNlcm5hbWU6bXlzZWNyZXQ="
    ca = by_id["internal.example.com"].http
    assert ca is not None and ca.ca_file == "/certs/my_cert.crt"
    irc = by_id["irc.example.com:6667"].tcp
    assert irc is not None and irc.send is None and irc.expect is None
    assert [s.model_dump(exclude_defaults=True) for s in irc.query_response] == [
        {"send": "NICK prober\n"}, {"send": "USER prober prober prober :prober\n"},
        {"expect": "(?m)PING :([^ ]+)", "send": "PONG ${1}\n"}, {"expect": "(?m)^:[^ ]+ 001"}]
    dns = by_id["8.8.8.8"].dns  # the DNS server; the module says what to ask
    assert dns is not None and dns.server == "8.8.8.8" and dns.query_name == "www.prometheus.io"
    assert dns.query_type == "A" and dns.valid_rcodes == ["NOERROR"]
    assert dns.answer_not_matches == [".*127.0.0.1"]
    assert dns.answer_all_match == ["www.prometheus.io.\t300\tIN\tA\t127.0.0.1"]
    notes = _comments(text)
    for expected in ("http.proxy_url", "http.compression: gzip",
                     "http.skip_resolve_phase_with_proxy", "http.basic_auth",
                     "dns.validate_answer_rrs.fail_if_all_match_regexp",
                     "dns.validate_authority_rrs", "icmp.source_ip_address",
                     "dns_tcp_example",
                     "job dns, module dns_udp_example"):
        assert expected in notes, expected
    assert "mysecret" not in notes


def test_blackbox_without_prometheus_writes_templates() -> None:
    text = import_blackbox(_text("blackbox.yml"))
    assert parse_config(text).targets == []
    assert "# module http_post_2xx:" in text and "#       method: POST" in text


def test_blackbox_literal_dollar_brace_survives() -> None:
    bb = "modules:\n  m:\n    prober: http\n    http:\n      headers: {X-T: 'a${1}b'}\n"
    prom = ("scrape_configs:\n  - job_name: j\n    metrics_path: /probe\n"
            "    params: {module: [m]}\n    static_configs: [{targets: [h.example]}]\n")
    config = parse_config(import_blackbox(bb, prom))
    http = config.targets[0].http
    assert http is not None and http.headers == {"X-T": "a${1}b"}


def test_blackbox_client_certificate_and_body_size_limit() -> None:
    bb = ("modules:\n  m:\n    prober: http\n    http:\n      body_size_limit: 2MiB\n"
          "      tls_config: {cert_file: /etc/c.pem, key_file: /etc/k.pem}\n")
    prom = ("scrape_configs:\n  - job_name: j\n    metrics_path: /probe\n"
            "    params: {module: [m]}\n    static_configs: [{targets: [https://h.example]}]\n")
    http = parse_config(import_blackbox(bb, prom)).targets[0].http
    assert http is not None
    assert (http.cert_file, http.key_file) == ("/etc/c.pem", "/etc/k.pem")
    # blackbox fails a larger body: that is max_body_size; body_limit keeps its default
    assert http.max_body_size == 2 * 1024 * 1024 and http.body_limit == 1024 * 1024


def test_blackbox_http2_and_versions() -> None:
    prom = ("scrape_configs:\n  - job_name: j\n    metrics_path: /probe\n"
            "    params: {module: [m]}\n    static_configs: [{targets: [https://h.example]}]\n")
    for enable, versions, want in ((True, "[HTTP/2.0]", True), (False, "[HTTP/3]", False)):
        bb = (f"modules:\n  m:\n    prober: http\n    http:\n      enable_http2: "
              f"{str(enable).lower()}\n      valid_http_versions: {versions}\n")
        text = import_blackbox(bb, prom)
        http = parse_config(text).targets[0].http
        assert http is not None and http.http2 is want
        if enable:
            assert http.valid_http_versions == ["HTTP/2.0"]
        else:  # a version slamon cannot check stays a comment, not a config error
            assert http.valid_http_versions == [] and "HTTP/3" in _comments(text)


@pytest.mark.parametrize(("bb", "prom", "message"), [
    ("modules:\n  http_post_2xx:\n    prober: http\n    http:\n      method: 5\n", None,
     "blackbox.yml: modules.http_post_2xx.http.method: must be an HTTP method"),
    ("modules:\n  x:\n    prober: ftp\n", None, "blackbox.yml: modules.x.prober: must be one of"),
    ("nothing: here\n", None, "blackbox.yml: must be a mapping with a 'modules' mapping"),
    ("modules:\n  t:\n    prober: tcp\n",
     "scrape_configs:\n  - job_name: j\n    metrics_path: /probe\n    params: {module: [t]}\n"
     "    static_configs: [{targets: [no-port.example]}]\n",
     "prometheus.yml: scrape_configs[0].static_configs[0].targets[0]: a tcp target must be "
     "host:port"),
    ("modules:\n  t:\n    prober: tcp\n",
     "scrape_configs:\n  - job_name: j\n    metrics_path: /probe\n    params: {module: [nope]}\n",
     "prometheus.yml: scrape_configs[0].params.module[0]: unknown module 'nope'"),
])
def test_blackbox_bad_input(bb: str, prom: str | None, message: str) -> None:
    with pytest.raises(InputError) as info:
        import_blackbox(bb, prom)
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


# ------------------------------------------------------------------ OpenSLO


def _openslo(*names: str, **kw: object) -> str:
    return import_openslo([(n, _text(n)) for n in names], **kw)  # type: ignore[arg-type]


def test_openslo_over_slamon_metrics(imported: tuple[str, Config]) -> None:
    base_text, base = imported
    fragment = _openslo("openslo-slamon.yaml", base=base)
    config = parse_config(base_text + fragment)
    slos = {s.id: s for s in config.slos}
    shop = slos["shop-availability"]  # indicatorRef, target=~"a|b": composite
    assert shop.targets == ["db.example.com:5432", "prometheus.io"]
    assert shop.objective == pytest.approx(0.995) and shop.window == 28 * 86400
    assert shop.sli == "availability" and "shop" in shop.description
    api = slos["api-monthly"]  # bad/total, calendar 1M
    assert api.targets == ["api.example.com-v1-ping"] and api.objective == 0.999
    lat = slos["web-latency"]  # thresholdMetric over probe_duration_seconds
    assert lat.sli == "latency" and lat.latency_threshold == pytest.approx(0.3)
    assert lat.objective == 0.95
    slas = {s.id: s for s in config.slas}
    assert slas["api-monthly"].slo == "api-monthly"
    assert slas["api-monthly"].period.kind == "monthly"
    assert slas["api-monthly"].period.timezone == "Europe/Berlin"
    fixed = slas["web-latency"].period
    assert fixed.kind == "fixed" and fixed.length == 14 * 86400 and fixed.anchor == 1704067200
    assert "shop-availability" not in slas  # rolling: no SLA
    assert "Service shop" in _comments(fragment)


def test_openslo_official_examples() -> None:
    """OpenSLO's own examples query Datadog/Prometheus, not slamon: each SLO is listed as
    not imported, with its name and the way to map it; mapped, they import."""
    names = ("openslo-v1-slos.yaml", "openslo-v1-slis.yaml", "openslo-ratio-timeslices.yaml",
             "openslo-calendar.yaml")
    text = _openslo(*names)
    assert parse_config(text).slos == []
    notes = _comments(text)
    for name in ("web-availability", "main-page", "test-slo"):
        assert f"SLO {name} (" in notes and f"--target {name}=ID" in notes

    text = _openslo(*names, targets={"web-availability": ["web"], "response-code": ["web"],
                                     "test-slo": ["web", "db"]})
    config = parse_config("targets:\n  - {id: web, kind: tcp, tcp: {host: h, port: 1}}\n"
                          "  - {id: db, kind: tcp, tcp: {host: h, port: 2}}\n" + text)
    slos = {s.id: s for s in config.slos}
    slas = {s.id: s for s in config.slas}
    assert slos["web-availability"].objective == 0.995
    assert slos["web-availability"].window == 7 * 86400
    weekly = slas["web-availability"].period
    assert weekly.kind == "weekly" and weekly.week_start == "saturday"  # 2022-01-01
    assert weekly.timezone == "America/New_York"
    assert slos["main-page"].window == 14 * 86400 and "main-page" not in slas
    assert slos["test-slo"].targets == ["web", "db"] and slos["test-slo"].objective == 0.98
    assert slas["test-slo"].period.kind == "daily"
    notes = _comments(text)
    for expected in ("timeSliceTarget: 0.95", "timeSliceWindow: 1m", "budgetingMethod Timeslices",
                     "budgetingMethod RatioTimeslices", "startTime 2022-01-01T12:00:00-05:00",
                     "startTime 2020-01-21T12:30:00-05:00"):
        assert expected in notes, expected


def test_openslo_annotation_maps_targets() -> None:
    doc = """
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout
  annotations: {slamon/targets: "web, db"}
spec:
  indicatorRef: search-availability
  timeWindow: [{duration: 30d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{target: 0.99}]
"""
    text = import_openslo([("a.yaml", doc), ("slis.yaml", _text("openslo-v1-slis.yaml"))])
    slo = parse_config("targets:\n  - {id: web, kind: tcp, tcp: {host: h, port: 1}}\n"
                       "  - {id: db, kind: tcp, tcp: {host: h, port: 2}}\n" + text).slos[0]
    assert slo.targets == ["web", "db"] and slo.window == 30 * 86400


@pytest.mark.parametrize(("doc", "message"), [
    ("apiVersion: openslo/v1alpha\nkind: SLO\nmetadata: {name: x}\nspec: {}\n",
     "x.yaml: apiVersion: openslo/v1alpha is not supported"),
    ("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\nspec:\n  indicatorRef: nope\n"
     "  objectives: [{target: 0.9}]\n",
     "x.yaml: spec.indicatorRef: unknown SLI 'nope'"),
    ("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x, annotations: {slamon/targets: w}}"
     "\nspec:\n  indicator: {spec: {ratioMetric: {}}}\n  objectives: [{target: 0.9}]\n"
     "  timeWindow: [{duration: 4x}]\n",
     "x.yaml: spec.timeWindow[0].duration: must be a duration shorthand"),
    ("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x, annotations: {slamon/targets: w}}"
     "\nspec:\n  indicator: {spec: {ratioMetric: {}}}\n  objectives: [{displayName: a}]\n",
     "x.yaml: spec.objectives[0]: needs target (0-1) or targetPercent (0-100)"),
    ("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x, annotations: {slamon/targets: w}}"
     "\nspec:\n  indicator: {spec: {ratioMetric: {}}}\n  objectives: [{target: 0.9}]\n"
     "  timeWindow: [{duration: 1d, calendar: {timeZone: Mars/Base}}]\n",
     "x.yaml: spec.timeWindow[0].calendar.timeZone: unknown time zone"),
    ("key: [unclosed\n", "x.yaml: line 2, column 1:"),
])
def test_openslo_bad_input(doc: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        import_openslo([("x.yaml", doc)])
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


def test_openslo_unknown_target_in_base(imported: tuple[str, Config]) -> None:
    with pytest.raises(InputError) as info:
        _openslo("openslo-calendar.yaml", targets={"test-slo": ["missing"]}, base=imported[1])
    assert info.value.problems == [
        "SLO test-slo (openslo-calendar.yaml): targets[0]: unknown target 'missing'"]


# ------------------------------------------------------------------ command line


def _slamon(*args: str, cwd: Path = DATA) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "slamon", "import", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def test_cli_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "slamon.yaml"
    r = _slamon("blackbox", "--blackbox", "blackbox.yml", "--prometheus",
                "prometheus-blackbox.yml", "-o", str(out))
    assert r.returncode == 0, r.stderr
    r = _slamon("openslo", "openslo-slamon.yaml", "-c", str(out))
    assert r.returncode == 0, r.stderr
    config = parse_config(out.read_text(encoding="utf-8") + r.stdout)
    assert len(config.targets) == 11 and len(config.slos) == 3 and len(config.slas) == 2


def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bb.yml"
    bad.write_text("modules:\n  http_post_2xx:\n    prober: http\n    http:\n      method: 5\n"
                   "  x: {prober: nope}\n")
    r = _slamon("blackbox", "--blackbox", str(bad))
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert lines == [f"error: {bad}: modules.http_post_2xx.http.method: must be an HTTP method",
                     f"error: {bad}: modules.x.prober: must be one of http, tcp, dns, icmp, "
                     "grpc, unix"]
    r = _slamon("blackbox", "--blackbox", str(tmp_path / "missing.yml"))
    assert r.returncode == 2 and "missing.yml: cannot read" in r.stderr
    assert "Traceback" not in r.stderr
    r = _slamon("openslo", "openslo-slamon.yaml", "--target", "oops")
    assert r.returncode == 2 and "--target oops: use NAME=ID" in r.stderr
    r = _slamon("openslo", str(bad))
    assert r.returncode == 2 and "apiVersion" in r.stderr and "Traceback" not in r.stderr


def test_blackbox_discovery_follows_file_sd_and_http_sd(imported: tuple[str, Config]) -> None:
    """With discovery, file_sd/http_sd jobs become sources whose targets, rendered from
    the very file, equal the ones a static import makes of it."""
    import json

    from slamon.config.discovery import parse_groups, render

    prom = _text("prometheus-blackbox.yml") + textwrap.dedent("""
      - job_name: cmdb-http
        metrics_path: /probe
        params: {module: [http_2xx]}
        http_sd_configs:
          - url: http://127.0.0.1:8080/sd
            refresh_interval: 30s
            authorization: {credentials: s3cret}
        relabel_configs:
          - {source_labels: [__address__], target_label: __param_target}
          - {target_label: __address__, replacement: 127.0.0.1:9115}
    """).replace("\n", "\n  ").rstrip() + "\n"
    text = import_blackbox(_text("blackbox.yml"), prom, read=_read,
                           discovery_base=str(DATA))
    config = parse_config(text)
    sources = {s.id: s for s in config.discovery}
    ssh = sources["blackbox-ssh-file-sd"]
    assert ssh.file_sd is not None and ssh.file_sd.files == [str(DATA / "ssh-targets.json")]
    http = sources["cmdb-http-http-sd"]
    assert http.http_sd is not None and http.http_sd.url == "http://127.0.0.1:8080/sd"
    assert http.http_sd.refresh_interval == 30
    assert http.template["http"]["url"] == "{{url}}"
    assert "authorization" in text and "s3cret" not in text
    # the file's entries through the template = the statically imported targets
    static = {t.id: t for t in imported[1].targets}
    groups = parse_groups(json.loads((DATA / "ssh-targets.json").read_text()))
    for group in groups:
        for entry in group.targets:
            live = render(ssh, group, entry)
            assert live.tcp == static[entry].tcp and live.labels == static[entry].labels
            assert (live.interval, live.timeout) == (static[entry].interval,
                                                     static[entry].timeout)
    assert "git.example.com:22" not in {t.id for t in config.targets}
    # a bare address becomes an http:// URL, as blackbox does
    entry = render(http, parse_groups([{"targets": ["shop.example.com/health"]}])[0],
                   "shop.example.com/health")
    assert entry.http is not None and entry.http.url == "http://shop.example.com/health"
