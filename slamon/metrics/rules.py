"""`slamon rules`: Prometheus recording and alerting rules for every SLO.

Generated from the config, so the alert windows and burn rates are the SLO's
own `alert_windows` (Google SRE workbook, ch. 5: multiwindow, multi-burn-rate
alerts). Built only on slamon's own metrics:

- recording rules pool the good and valid events of every slamon instance that
  reports the SLO (`sum by (slo, window)`): with several instances measuring
  the same SLO (a k-of-n quorum) one alert fires per SLO, not one per
  instance, and a single instance with a bad network path cannot page alone;
- a burn-rate alert per alert window: the burn rate is above `burn_rate` over
  both the long and the short window;
- budget exhausted: the error budget over the SLO window is spent;
- no data: no valid events over a window that should hold several probes, or
  slamon's series are absent; and per target, a probe schedule gone stale.

Every alert carries `severity`, `slo` and a `runbook_url` annotation that
points at an anchor of docs/operations.md. Pure except `register`'s command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from slamon.config.root import Config
from slamon.config.slo import AlertWindow, Slo
from slamon.util.durations import format_duration

#: where `runbook_url` annotations point unless --runbook-url says otherwise
DEFAULT_RUNBOOK = "docs/operations.md"
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
#: p99 scheduling lag that opens a ticket: a bucket bound of slamon_scheduler_lag_seconds,
#: and the goal slamon meets alone at 10,000 targets on 2 cores (docs/benchmarks.md)
LAG_P99_LIMIT = 0.1

BURN_RATE = "slamon:slo_burn_rate"
ERROR_RATIO = "slamon:slo_error_ratio"
BUDGET = "slamon:slo_error_budget_remaining"


def _dur(seconds: float) -> str:
    """A Prometheus duration in whole seconds (at least 1s)."""
    return format_duration(max(1, round(seconds)))


def _window(seconds: float) -> str:
    """The `window` label slamon exports for a window length."""
    return format_duration(seconds)


def _sel(slo: Slo, **labels: str) -> str:
    inner = ",".join([f'slo="{slo.id}"', *(f'{k}="{v}"' for k, v in labels.items())])
    return "{" + inner + "}"


def _runbook(base: str, anchor: str) -> str:
    return f"{base}#{anchor}"


def recording_rules(slo: Slo) -> list[dict[str, Any]]:
    """Pooled error ratio and burn rate per window, and the budget left.

    The static `slo` label (already on every series) keeps each SLO's rules
    distinct for `promtool check rules`' duplicate-rule lint."""
    sel = _sel(slo)
    rules: list[dict[str, Any]] = [
        {
            "record": ERROR_RATIO,
            "expr": (
                f"1 - sum by (slo, window) (slamon_sli_good_events{sel})\n"
                f"  / (sum by (slo, window) (slamon_sli_valid_events{sel}) > 0)"
            ),
        },
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
        rule["labels"] = {"slo": slo.id}
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
            f"{BURN_RATE}{_sel(slo, window=short_w)} > {rate}"
        ),
        "for": _dur(min(cap, aw.short / 2)),
        "labels": {
            "severity": aw.severity,
            "slo": slo.id,
            "long_window": long_w,
            "short_window": short_w,
            "burn_rate": rate,
        },
        "annotations": {
            "summary": f"SLO {slo.id} is burning its error budget {rate}x too fast",
            "description": (
                f"The error budget of SLO {slo.id} (objective {slo.objective:g} over "
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
        "labels": {"severity": "ticket", "slo": slo.id},
        "annotations": {
            "summary": f"SLO {slo.id} has spent its whole error budget",
            "description": (
                f"Over the last {_window(slo.window)} SLO {slo.id} missed its objective "
                f"{slo.objective:g}: budget left {{{{ $value | humanizePercentage }}}}."
            ),
            "runbook_url": _runbook(runbook, "error-budget-exhausted"),
        },
    }


def no_data_window(slo: Slo, config: Config) -> float:
    """The shortest exported window that should hold several probes of every part."""
    intervals = [config.target(t).interval for t in slo.targets]
    need = NO_DATA_INTERVALS * max([*intervals, slo.slice or 0.0])
    windows = sorted({slo.window, *(aw.long for aw in slo.alert_windows),
                      *(aw.short for aw in slo.alert_windows)})
    for length in windows:
        if length >= need:
            return length
    return windows[-1]


def no_data_alerts(slo: Slo, config: Config, runbook: str) -> list[dict[str, Any]]:
    length = no_data_window(slo, config)
    valid = f"slamon_sli_valid_events{_sel(slo, window=_window(length))}"
    alerts: list[dict[str, Any]] = [
        {
            "alert": NO_DATA_ALERT,
            "expr": (
                f"sum by (slo) ({valid}) == 0\n"
                f"or\n"
                f"absent({valid})"
            ),
            "for": _dur(min(NO_DATA_FOR_MAX, length / 2)),
            "labels": {"severity": "page", "slo": slo.id},
            "annotations": {
                "summary": f"No data for SLO {slo.id}: slamon is blind",
                "description": (
                    f"No valid probe result for SLO {slo.id} over the last {_window(length)}, "
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


def generate_rules(config: Config, runbook_url: str = DEFAULT_RUNBOOK) -> dict[str, Any]:
    """Prometheus rule file content (YAML-ready): one group per SLO, one for slamon."""
    groups: list[dict[str, Any]] = []
    for slo in config.slos:
        rules: list[dict[str, Any]] = recording_rules(slo)
        rules.extend(burn_alert(slo, aw, runbook_url) for aw in slo.alert_windows)
        rules.append(budget_alert(slo, runbook_url))
        rules.extend(no_data_alerts(slo, config, runbook_url))
        groups.append({"name": f"slamon-slo-{slo.id}", "rules": rules})
    groups.append({"name": "slamon-self", "rules": [lag_alert(runbook_url)]})
    return {"groups": groups}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render_rules(config: Config, runbook_url: str = DEFAULT_RUNBOOK, source: str = "") -> str:
    header = "# Generated by `slamon rules`"
    header += f" from {source}" if source else ""
    header += ": regenerate after changing the SLOs, do not edit.\n"
    body = yaml.dump(
        generate_rules(config, runbook_url),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return header + body


def _cmd_rules(args: argparse.Namespace) -> int:
    from slamon.config.loader import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        n = len(exc.errors)
        print(f"{args.config}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return 2
    text = render_rules(config, args.runbook_url, source=args.config)
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


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `rules -c FILE [-o OUT] [--runbook-url URL]` to slamon's CLI."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "rules", help="print Prometheus recording and alerting rules for every SLO"
    )
    p.add_argument("-c", "--config", required=True, help="config file")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default stdout)")
    p.add_argument(
        "--runbook-url",
        default=DEFAULT_RUNBOOK,
        metavar="URL",
        help="where the runbook_url annotations point (your copy of docs/operations.md)",
    )
    p.set_defaults(func=_cmd_rules)
    return p
