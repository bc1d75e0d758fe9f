"""`slamon rules`: Prometheus recording and alerting rules for every SLO.

Generated from the config, so the alert windows and burn rates are the SLO's
own `alert_windows` (Google SRE workbook, ch. 5: multiwindow, multi-burn-rate
alerts). Built only on slamon's own metrics:

- recording rules pool the good and valid events of every slamon instance that
  reports the SLO (`sum by (slo)`), from the two counters slamon exports per SLO
  summed over each window in Prometheus (or, with `metrics.window_series`, from
  slamon's own window counts): with several instances measuring
  the same SLO (a k-of-n quorum) one alert fires per SLO, not one per
  instance, and a single instance with a bad network path cannot page alone;
- a burn-rate alert per alert window: the burn rate is above `burn_rate` over
  both the long and the short window;
- budget exhausted: the error budget over the SLO window is spent;
- no data: no valid events over a window that should hold several probes, or
  slamon's series are absent; and per target, a probe schedule gone stale.

- per target: down now (every instance sees it fail, outside maintenance), and
  certificate expiry within 21 days (ticket) and 7 days (page).

Every alert carries `severity` and a `runbook_url` annotation that points at
an anchor of docs/runbooks.md, which slamon serves at `/runbooks`. Pure except `register`'s command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from slamon.config.discovery import matches
from slamon.config.root import Config
from slamon.config.slo import AlertWindow, Slo
from slamon.config.targets import target_label_names
from slamon.util.args import add_config_argument
from slamon.util.durations import format_duration, parse_duration
from slamon.util.schema import check_url

#: the path of the runbooks page slamon serves (slamon.web.runbooks)
RUNBOOKS_PATH = "/runbooks"
#: `for:` of the target-down alert unless --down-for says otherwise
DOWN_FOR = 300.0
#: certificate expiry alerts: (days left, severity)
CERT_EXPIRY = ((21, "ticket"), (7, "page"))
#: `for:` of burn-rate alerts is half the short window, capped at these
PAGE_FOR_MAX = 120.0
TICKET_FOR_MAX = 900.0
BUDGET_FOR_MAX = 300.0
NO_DATA_FOR_MAX = 300.0
#: the no-data window must hold at least this many probe intervals
NO_DATA_INTERVALS = 3

BURN_ALERT = "SlamonErrorBudgetBurn"
BUDGET_ALERT = "SlamonErrorBudgetExhausted"
NO_DATA_ALERT = "SlamonSLONoData"
STALE_ALERT = "SlamonProbesStale"
LAG_ALERT = "SlamonSchedulerLagging"
DOWN_ALERT = "SlamonTargetDown"
CERT_ALERT = "SlamonCertificateExpiry"
def _ours(labels: tuple[str, ...]) -> str:
    """Keeps only series a slamon instance exports (another exporter's `probe_success`
    in the same Prometheus has no slamon_target_info beside it), and brings the
    targets' config labels along, so alerts route by team like any other."""
    return f"* on (instance, target) group_left ({', '.join(labels)}) slamon_target_info"


def _by(labels: tuple[str, ...]) -> str:
    return ", ".join(("target", *labels))
#: p99 scheduling lag that opens a ticket: a bucket bound of slamon_scheduler_lag_seconds,
#: and the goal slamon meets alone at 10,000 targets on 2 cores (docs/benchmarks.md)
LAG_P99_LIMIT = 0.1

BURN_RATE = "slamon:slo_burn_rate"
ERROR_RATIO = "slamon:slo_error_ratio"
BUDGET = "slamon:slo_error_budget_remaining"
#: without `metrics.window_series`: good and valid events per base window, pooled over the
#: instances, from which every window is summed (as Sloth does)
GOOD_BASE = "slamon:sli_good:increase"
VALID_BASE = "slamon:sli_valid:increase"
#: the base window: the workbook's shortest (a shorter configured window is its own base)
BASE_WINDOW = 300.0


def _dur(seconds: float) -> str:
    """A Prometheus duration in whole seconds (at least 1s)."""
    return format_duration(max(1, round(seconds)))


def _window(seconds: float) -> str:
    """The `window` label slamon exports for a window length."""
    return format_duration(seconds)


def _sel(slo: Slo, **labels: str) -> str:
    """The series of `slo`; for a selector SLO, of every SLO it makes (`<id>:<target>`)."""
    own = (f'slo="{slo.id}"' if slo.selector is None
           else 'slo=~"' + slo.id.replace(".", "\\\\.") + ':.+"')
    inner = ",".join([own, *(f'{k}="{v}"' for k, v in labels.items())])
    return "{" + inner + "}"


def _slo_label(slo: Slo) -> dict[str, str]:
    """A selector SLO's rules keep each series' own `slo` (one per target) and add
    the selector SLO's id, so Alertmanager can route on either."""
    return {"slo": slo.id} if slo.selector is None else {"slo_selector": slo.id}


def _name(slo: Slo) -> str:
    return slo.id if slo.selector is None else "{{ $labels.slo }}"


def _runbook(base: str, anchor: str) -> str:
    return f"{base}#{anchor}"


def runbook_base(config: Config, override: str | None = None) -> str:
    """Where the alerts' runbook links point: `override`, else the runbooks page slamon
    serves at `server.external_url` (default http://<listen>)."""
    return override or config.server.base_url + RUNBOOKS_PATH


def base_window(slo: Slo) -> float:
    return min(BASE_WINDOW, *slo.windows)


def _summed(base: str, slo: Slo, length: float) -> str:
    """Events of a base-window recording over `length` (counter mode). Each event is in
    as many base samples as rule evaluations fit in the base window, in the good and the
    valid sum alike, so ratios are unaffected."""
    if length <= base_window(slo):
        return f"{base}{_sel(slo)}"
    return f"sum_over_time({base}{_sel(slo)}[{_dur(length)}])"


def recording_rules(slo: Slo, window_series: bool = False) -> list[dict[str, Any]]:
    """Pooled error ratio and burn rate per window, and the budget left.

    With `window_series` the windows are slamon's exact window counts; without, they
    are summed in Prometheus from the two counters slamon exports per SLO.
    The static `slo` label (already on every series) keeps each SLO's rules
    distinct for `promtool check rules`' duplicate-rule lint."""
    sel = _sel(slo)
    rules: list[dict[str, Any]]
    if window_series:
        rules = [{
            "record": ERROR_RATIO,
            "expr": (
                f"1 - sum by (slo, window) (slamon_sli_good_events{sel})\n"
                f"  / (sum by (slo, window) (slamon_sli_valid_events{sel}) > 0)"
            ),
        }]
    else:
        base = _dur(base_window(slo))
        rules = [
            {"record": GOOD_BASE + base,
             "expr": f"sum by (slo) (increase(slamon_sli_good_total{sel}[{base}]))"},
            {"record": VALID_BASE + base,
             "expr": f"sum by (slo) (increase(slamon_sli_valid_total{sel}[{base}]))"},
        ]
        for length in slo.windows:
            rules.append({
                "record": ERROR_RATIO,
                "expr": (f"1 - {_summed(GOOD_BASE + base, slo, length)}\n"
                         f"  / ({_summed(VALID_BASE + base, slo, length)} > 0)"),
                "labels": _slo_label(slo) | {"window": _window(length)},
            })
    rules += [
        {
            "record": BURN_RATE,
            "expr": (
                f"{ERROR_RATIO}{sel}\n"
                f"  / on (slo) group_left () (1 - max by (slo) (slamon_slo_objective_ratio{sel}))"
            ),
        },
        {
            "record": BUDGET,
            "expr": f"1 - {BURN_RATE}{_sel(slo, window=_window(slo.window))}",
        },
    ]
    for rule in rules:
        rule.setdefault("labels", _slo_label(slo))
    return rules


def burn_alert(slo: Slo, aw: AlertWindow, runbook: str) -> dict[str, Any]:
    long_w, short_w = _window(aw.long), _window(aw.short)
    rate = f"{aw.burn_rate:g}"
    cap = PAGE_FOR_MAX if aw.severity == "page" else TICKET_FOR_MAX
    return {
        "alert": BURN_ALERT,
        "expr": (
            f"{BURN_RATE}{_sel(slo, window=long_w)} > {rate}\n"
            f"and ignoring (window)\n"
            f"{BURN_RATE}{_sel(slo, window=short_w)} > {rate}\n"
            # a declared maintenance of one of its targets is not an incident
            "unless on (slo)\n"
            "max by (slo) (slamon_slo_maintenance_active) == 1"
        ),
        "for": _dur(min(cap, aw.short / 2)),
        "labels": {
            "severity": aw.severity,
            **_slo_label(slo),
            "long_window": long_w,
            "short_window": short_w,
            "burn_rate": rate,
        },
        "annotations": {
            "summary": f"SLO {_name(slo)} is burning its error budget {rate}x too fast",
            "description": (
                f"The error budget of SLO {_name(slo)} (objective {slo.objective:g} over "
                f"{_window(slo.window)}) burns at {{{{ $value | humanize }}}}x over {long_w}, "
                f"and above {rate}x over {short_w} too. At this rate the whole budget is gone in "
                f"{_dur(slo.window / aw.burn_rate)}."
            ),
            "runbook_url": _runbook(runbook, "error-budget-burn"),
        },
    }


def budget_alert(slo: Slo, runbook: str) -> dict[str, Any]:
    return {
        "alert": BUDGET_ALERT,
        "expr": f"{BUDGET}{_sel(slo)} <= 0",
        "for": _dur(min(BUDGET_FOR_MAX, slo.window / 10)),
        "labels": {"severity": "ticket", **_slo_label(slo)},
        "annotations": {
            "summary": f"SLO {_name(slo)} has spent its whole error budget",
            "description": (
                f"Over the last {_window(slo.window)} SLO {_name(slo)} missed its objective "
                f"{slo.objective:g}: budget left {{{{ $value | humanizePercentage }}}}."
            ),
            "runbook_url": _runbook(runbook, "error-budget-exhausted"),
        },
    }


def no_data_window(slo: Slo, config: Config) -> float:
    """The shortest exported window that should hold several probes of every part."""
    intervals = [config.target(t).interval for t in slo.targets]
    if slo.selector is not None:
        intervals = _selected_intervals(slo, config)
    need = NO_DATA_INTERVALS * max([*intervals, slo.slice or 0.0])
    windows = slo.windows
    for length in windows:
        if length >= need:
            return length
    return windows[-1]


def _selected_intervals(slo: Slo, config: Config) -> list[float]:
    """A selector SLO's targets are known only at run time: the intervals of the
    listed targets it selects and of every discovery template bound the probes."""
    out = [t.interval for t in config.targets if slo.selector and matches(slo.selector, t)]
    for source in config.discovery:
        value = source.template.get("interval", 30.0)
        try:
            out.append(parse_duration(value))
        except ValueError:  # a placeholder: unknown until an entry fills it
            continue
    return out or [30.0]


def no_data_alerts(
    slo: Slo, config: Config, runbook: str, window_series: bool = False
) -> list[dict[str, Any]]:
    length = no_data_window(slo, config)
    if window_series:
        valid = f"slamon_sli_valid_events{_sel(slo, window=_window(length))}"
        present = valid
    else:
        valid = _summed(VALID_BASE + _dur(base_window(slo)), slo, length)
        present = f"slamon_sli_valid_total{_sel(slo)}"
    alerts: list[dict[str, Any]] = [
        {
            "alert": NO_DATA_ALERT,
            "expr": (
                f"sum by (slo) ({valid}) == 0\n"
                f"or\n"
                f"absent({present})"
            ),
            "for": _dur(min(NO_DATA_FOR_MAX, length / 2)),
            "labels": {"severity": "page", **_slo_label(slo)},
            "annotations": {
                "summary": f"No data for SLO {_name(slo)}: slamon is blind",
                "description": (
                    f"No valid probe result for SLO {_name(slo)} over the last {_window(length)}, "
                    "or no slamon instance reports it. Its SLI, budget and burn-rate alerts "
                    "cannot fire while this lasts."
                ),
                "runbook_url": _runbook(runbook, "no-data"),
            },
        }
    ]
    for tid in slo.targets:
        target = config.target(tid)
        stale = NO_DATA_INTERVALS * target.interval + target.timeout
        alerts.append(
            {
                "alert": STALE_ALERT,
                "expr": (
                    f'time() - max by (target) (slamon_probe_scheduled_timestamp_seconds'
                    f'{{target="{tid}"}}) > {stale:g}'
                ),
                "for": _dur(min(NO_DATA_FOR_MAX, stale)),
                "labels": {"severity": "ticket", "slo": slo.id, "target": tid},
                "annotations": {
                    "summary": f"Target {tid} has not been probed for a while",
                    "description": (
                        f"The last completed probe of {tid} was scheduled "
                        "{{ $value | humanizeDuration }} ago (interval "
                        f"{_window(target.interval)}): the scheduler is stalled or overloaded."
                    ),
                    "runbook_url": _runbook(runbook, "probes-stale"),
                },
            }
        )
    return alerts


def lag_alert(runbook: str) -> dict[str, Any]:
    """slamon itself starts probes late: results still count against their tick, but
    an outage shorter than the lag can fall between probes (docs/operations.md)."""
    return {
        "alert": LAG_ALERT,
        "expr": (
            "histogram_quantile(0.99, sum by (instance, le) "
            "(rate(slamon_scheduler_lag_seconds_bucket[10m])))\n"
            f"> {LAG_P99_LIMIT:g}"
        ),
        "for": "15m",
        "labels": {"severity": "ticket"},
        "annotations": {
            "summary": "slamon starts probes late",
            "description": (
                f"The p99 scheduling lag over 10m is above {_window(LAG_P99_LIMIT)}: "
                "slamon waits for a CPU or its event loop is blocked. Results still count "
                "against their scheduled tick, but they describe a later instant."
            ),
            "runbook_url": _runbook(runbook, "scheduler-lag"),
        },
    }


def target_down_alert(
    runbook: str, down_for: float = DOWN_FOR, labels: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Every instance that probes the target sees it failing (one bad network path
    cannot page alone), and no maintenance window covers it."""
    return {
        "alert": DOWN_ALERT,
        "expr": (
            f"max by ({_by(labels)}) (probe_success {_ours(labels)}) == 0\n"
            "unless on (target)\n"
            "max by (target) (slamon_maintenance_active) == 1"
        ),
        "for": _dur(down_for),
        "labels": {"severity": "page"},
        "annotations": {
            "summary": "Target {{ $labels.target }} is down",
            "description": (
                "Every slamon instance probing {{ $labels.target }} has seen its probes fail "
                f"for {_window(down_for)}, outside any maintenance window. "
                "probe_failed_reason says how."
            ),
            "runbook_url": _runbook(runbook, "target-down"),
        },
    }


def cert_expiry_alerts(runbook: str, labels: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The earliest expiry in the presented chain is near: a ticket, then a page."""
    return [
        {
            "alert": CERT_ALERT,
            "expr": (
                f"min by ({_by(labels)}) (probe_ssl_earliest_cert_expiry {_ours(labels)})"
                " - time()\n"
                f"< {days} * 86400"
            ),
            "for": "10m",
            "labels": {"severity": severity, "days": str(days)},
            "annotations": {
                "summary": f"A certificate of {{{{ $labels.target }}}} expires within {days} days",
                "description": (
                    "The earliest expiry in the certificate chain {{ $labels.target }} presents "
                    "is in {{ $value | humanizeDuration }}."
                ),
                "runbook_url": _runbook(runbook, "certificate-expiry"),
            },
        }
        for days, severity in CERT_EXPIRY
    ]


def generate_rules(
    config: Config, runbook_url: str | None = None, down_for: float = DOWN_FOR
) -> dict[str, Any]:
    """Prometheus rule file content (YAML-ready): one group per SLO, one for the
    targets, one for slamon itself."""
    runbook_url = runbook_base(config, runbook_url)
    names = target_label_names(config.targets)
    groups: list[dict[str, Any]] = []
    series = config.metrics.window_series
    for slo in config.slos:
        rules: list[dict[str, Any]] = recording_rules(slo, series)
        rules.extend(burn_alert(slo, aw, runbook_url) for aw in slo.alert_windows)
        rules.append(budget_alert(slo, runbook_url))
        rules.extend(no_data_alerts(slo, config, runbook_url, series))
        groups.append({"name": f"slamon-slo-{slo.id}", "rules": rules})
    groups.append({"name": "slamon-targets", "rules": [
        target_down_alert(runbook_url, down_for, names), *cert_expiry_alerts(runbook_url, names)]})
    groups.append({"name": "slamon-self", "rules": [lag_alert(runbook_url)]})
    return {"groups": groups}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def prometheus_rule(doc: dict[str, Any], name: str = "slamon",
                    labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The rule groups as a prometheus-operator `PrometheusRule` resource."""
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": meta, "spec": doc}


def render_rules(
    config: Config, runbook_url: str | None = None, source: str = "", down_for: float = DOWN_FOR,
    fmt: str = "prometheus", labels: dict[str, str] | None = None,
) -> str:
    """The rule file (`prometheus`) or a PrometheusRule resource (`prometheusrule`)."""
    header = "# Generated by `slamon rules`"
    header += f" from {source}" if source else ""
    header += ": regenerate after changing the SLOs, do not edit.\n"
    doc = generate_rules(config, runbook_url, down_for)
    if fmt == "prometheusrule":
        doc = prometheus_rule(doc, labels=labels)
    body = yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return header + body


def _cmd_rules(args: argparse.Namespace) -> int:
    from slamon.config.loader import load_config_for_cli

    config = load_config_for_cli(args.config)
    if config is None:
        return 2
    text = render_rules(config, args.runbook_url, source=args.config, down_for=args.down_for,
                        fmt=args.format, labels=dict(args.label or []))
    if args.output and args.output != "-":
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            print(f"slamon: error: cannot write {args.output}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


def _absolute_url(value: str) -> str:
    try:
        check_url(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: must be an absolute http(s) URL (Alertmanager shows it as a link)"
        ) from None
    return value.rstrip("/")


def _label(value: str) -> tuple[str, str]:
    name, sep, text = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=VALUE")
    return name, text


def _duration(value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return seconds


def configure(p: argparse.ArgumentParser) -> None:
    """`slamon rules -c FILE [-o OUT] [--runbook-url URL]` (listed in slamon.cli.PLUGINS)."""
    add_config_argument(p)
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default stdout)")
    p.add_argument(
        "--runbook-url",
        type=_absolute_url,
        metavar="URL",
        help="where the runbook_url annotations point (your copy of docs/runbooks.md); "
             "default: the /runbooks page slamon serves at server.external_url",
    )
    p.add_argument(
        "--format", choices=("prometheus", "prometheusrule"), default="prometheus",
        help="a Prometheus rule file, or a prometheus-operator PrometheusRule resource",
    )
    p.add_argument(
        "--label", action="append", type=_label, metavar="NAME=VALUE",
        help="prometheusrule: a label on the resource, e.g. release=prometheus (repeatable)",
    )
    p.add_argument(
        "--down-for", type=_duration, default=DOWN_FOR, metavar="DURATION",
        help="how long a target fails before SlamonTargetDown fires (default 5m)",
    )
    p.set_defaults(func=_cmd_rules)
