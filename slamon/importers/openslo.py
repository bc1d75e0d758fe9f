"""OpenSLO v1 SLO/SLI documents -> slamon SLOs and SLAs.

An OpenSLO SLI says how to read metrics from some data source; slamon measures
its own targets. An SLO is imported when it names the slamon targets it is
about, found in this order:

1. the command line: `--target NAME=ID[,ID...]` (NAME: the SLO's or its SLI's name);
2. the annotation `slamon/targets: "ID[,ID...]"` on the SLO or its SLI;
3. its SLI's queries over slamon's own metrics: a ratio metric whose good
   (or bad) and total queries select `slamon_probes_total{target="ID"}` (good:
   `result="success"`, bad: `result="failure"`) or `probe_success{target="ID"}`,
   with `target=~"a|b"` for a composite SLO; a threshold metric over
   `probe_duration_seconds{target="ID"}` with `op: lt`/`lte` becomes a latency SLI.

Rolling time windows become the SLO's `window`; calendar-aligned ones become an
SLA (1h/1d/1w/1M: hourly/daily/weekly/monthly periods in the window's time
zone; other lengths in m/h/d/w: fixed periods anchored at `startTime`) over an
SLO with the same objective. Whatever cannot be mapped is listed in a `#`
comment with the reason (an SLO that cannot be imported at all, with its
name); malformed documents raise InputError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slamon.config.loader import ConfigError, parse_config
from slamon.config.root import Config
from slamon.importers import (
    InputError,
    comment,
    dump_item,
    inline,
    load_documents,
    unique_id,
    where,
)
from slamon.util.durations import format_duration
from slamon.util.schema import Loc

__all__ = ["ANNOTATION", "import_openslo"]

#: the annotation naming an SLO's (or SLI's) slamon targets
ANNOTATION = "slamon/targets"
API_VERSION = "openslo/v1"
MAX_WINDOW = 90 * 86400
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CALENDAR = {("h", 1): "hourly", ("d", 1): "daily", ("w", 1): "weekly", ("M", 1): "monthly"}
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ID_LIST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*(?:\|[A-Za-z0-9][A-Za-z0-9_.:-]*)*")
_SELECTOR = re.compile(
    r"\b(slamon_probes_total|slamon_probes|probe_success|probe_duration_seconds)\s*\{([^}]*)\}"
)
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


@dataclass
class _Obj:
    kind: str
    name: str
    data: dict[str, Any]
    source: str
    loc: Loc


@dataclass
class _Mapped:
    """What an SLI measures in slamon terms."""

    targets: list[str]
    sli: str  # availability | latency
    notes: list[str] = field(default_factory=list)


class _Skip(Exception):
    """This SLO (or objective) cannot be imported; the message says why."""


# ------------------------------------------------------------------ reading


def _objects(files: list[tuple[str, str]], problems: list[str]) -> list[_Obj]:
    out: list[_Obj] = []
    for source, text in files:
        try:
            docs = load_documents(text, source)
        except InputError as exc:
            problems += exc.problems
            continue
        multi = len(docs) > 1
        for d, doc in enumerate(docs):
            # a file of several YAML documents: errors name the document, counted from 1
            name = f"{source} (document {d + 1})" if multi else source
            items = list(enumerate(doc)) if isinstance(doc, list) else [(None, doc)]
            for i, item in items:
                loc: Loc = () if i is None else (i,)
                obj = _object(item, name, loc, problems)
                if obj is not None:
                    out.append(obj)
    return out


def _object(item: Any, source: str, loc: Loc, problems: list[str]) -> _Obj | None:
    if not isinstance(item, dict):
        problems.append(f"{where(source, loc) or source}: must be an OpenSLO object "
                        "(apiVersion, kind, metadata, spec)")
        return None
    version = item.get("apiVersion")
    if version != API_VERSION:
        problems.append(f"{where(source, (*loc, 'apiVersion'))}: "
                        f"{inline(version)} is not supported (only {API_VERSION})")
        return None
    kind = item.get("kind")
    meta = item.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(kind, str):
        problems.append(f"{where(source, (*loc, 'kind'))}: required (SLO, SLI, ...)")
        return None
    if not isinstance(name, str) or not name:
        problems.append(f"{where(source, (*loc, 'metadata', 'name'))}: required")
        return None
    spec = item.get("spec")
    if not isinstance(spec, dict):
        problems.append(f"{where(source, (*loc, 'spec'))}: must be a mapping")
        return None
    return _Obj(kind, name, item, source, loc)


def _annotation(meta: Any) -> list[str] | None:
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    value = ann.get(ANNOTATION) if isinstance(ann, dict) else None
    if not isinstance(value, str):
        return None
    return [t.strip() for t in value.split(",") if t.strip()] or None


# ------------------------------------------------------------------ SLI -> targets


def _query_text(metric: Any) -> str:
    """Every text in a metric's `metricSource.spec` (the query key differs by source type)."""
    source = metric.get("metricSource") if isinstance(metric, dict) else None
    spec = source.get("spec") if isinstance(source, dict) else None
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        return "\n".join(v for v in spec.values() if isinstance(v, str))
    return ""


def _selectors(query: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    found = []
    for m in _SELECTOR.finditer(query):
        matchers = {name: (op, value) for name, op, value in _MATCHER.findall(m.group(2))}
        found.append((m.group(1), matchers))
    return found


def _targets_of(selectors: list[tuple[str, dict[str, tuple[str, str]]]]) -> set[str]:
    out: set[str] = set()
    for metric, matchers in selectors:
        op, value = matchers.get("target", ("", ""))
        if op == "=" and value:
            out.add(value)
        elif op == "=~" and _ID_LIST.fullmatch(value):
            out.update(value.split("|"))
        else:
            raise _Skip(f"its {metric} selector names no target (use target=\"ID\" or "
                        "target=~\"a|b\")")
    return out


def _from_ratio(ratio: dict[str, Any]) -> _Mapped | None:
    """A ratio metric over slamon's metrics, or None when it names none."""
    if "raw" in ratio:
        text = _query_text(ratio.get("raw"))
        if _selectors(text):
            raise _Skip("a raw (precomputed) ratio: slamon computes the ratio from its "
                        "probes; use good/total over slamon_probes_total")
        return None
    bad = "bad" in ratio
    num = _selectors(_query_text(ratio.get("bad" if bad else "good")))
    total = _selectors(_query_text(ratio.get("total")))
    if not num and not total:
        return None
    if not num or not total:
        raise _Skip("only one of its numerator and total queries is over slamon metrics")
    num_t, total_t = _targets_of(num), _targets_of(total)
    if num_t != total_t:
        raise _Skip(f"its {'bad' if bad else 'good'} query names targets "
                    f"{sorted(num_t)} but its total query {sorted(total_t)}")
    want = "failure" if bad else "success"
    for metric, matchers in num:
        ok = (metric in ("slamon_probes_total", "slamon_probes")
              and matchers.get("result") == ("=", want))
        if not ok and not (metric == "probe_success" and not bad):
            raise _Skip(f"its {'bad' if bad else 'good'} query must count "
                        f"slamon_probes_total{{result=\"{want}\"}}"
                        + ("" if bad else " or probe_success"))
    notes: list[str] = []
    for metric, matchers in total:
        if metric == "probe_duration_seconds":
            raise _Skip("its total query counts probe_duration_seconds, not probes")
        if metric != "probe_success" and "result" not in matchers:
            notes.append("its total query also counts result=\"missed\" ticks; slamon's SLO "
                         "counts them as no data (neither good nor bad)")
    return _Mapped(sorted(num_t), "availability", notes)


def _from_threshold(metric: Any) -> _Mapped | None:
    sel = _selectors(_query_text(metric))
    if not sel:
        return None
    if any(m != "probe_duration_seconds" for m, _ in sel):
        raise _Skip("a threshold metric over slamon is read from probe_duration_seconds "
                    "(a latency SLI)")
    return _Mapped(sorted(_targets_of(sel)), "latency")


def _map_sli(slo: _Obj, sli_meta: Any, sli_name: str, sli_spec: dict[str, Any],
             given: dict[str, list[str]]) -> _Mapped:
    ratio = sli_spec.get("ratioMetric")
    threshold = sli_spec.get("thresholdMetric")
    if isinstance(ratio, dict):
        kind = "availability"
    elif isinstance(threshold, dict):
        kind = "latency"
    else:
        raise _Skip("its SLI has neither ratioMetric nor thresholdMetric")
    explicit = (given.get(slo.name) or given.get(sli_name)
                or _annotation(slo.data.get("metadata")) or _annotation(sli_meta))
    if explicit:
        mapped = _Mapped(list(dict.fromkeys(explicit)), kind)
        mapped.notes.append(f"SLI {sli_name}: its queries are not used; slamon measures its "
                            f"own probes of {', '.join(mapped.targets)}")
        if isinstance(ratio, dict) and "raw" in ratio:
            mapped.notes.append("ratioMetric.raw: slamon computes the ratio from its probes")
        return mapped
    found = _from_ratio(ratio) if isinstance(ratio, dict) else _from_threshold(threshold)
    if found is None:
        raise _Skip(f"its SLI ({sli_name}) queries no slamon metric "
                    "(slamon_probes_total{target=\"ID\"}, probe_success, "
                    f"probe_duration_seconds); map it with --target {slo.name}=ID or the "
                    f"annotation {ANNOTATION}")
    return found


# ------------------------------------------------------------------ windows


def _shorthand(value: Any) -> tuple[int, str]:
    m = re.fullmatch(r"([1-9]\d*)([mhdwMQY])", str(value).strip()) \
        if isinstance(value, str | int) and not isinstance(value, bool) else None
    if m is None:
        raise ValueError("must be a duration shorthand like 28d, 1w, 1M (m, h, d, w, M, Q, Y)")
    return int(m.group(1)), m.group(2)


def _start(value: Any, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("must be a date and time like 2022-01-01 00:00:00") from None
    else:
        raise ValueError("must be a date and time like 2022-01-01 00:00:00")
    if dt.tzinfo is not None:
        return dt.astimezone(tz)
    return dt.replace(tzinfo=tz)


@dataclass
class _Window:
    window: float
    period: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _time_window(spec: dict[str, Any], source: str, loc: Loc, problems: list[str]) -> _Window:
    raw = spec.get("timeWindow")
    if raw is None:
        return _Window(30 * 86400.0, notes=["no timeWindow: slamon's default rolling 30d"])
    if not isinstance(raw, list) or len(raw) != 1 or not isinstance(raw[0], dict):
        problems.append(f"{where(source, (*loc, 'timeWindow'))}: must be a list of exactly "
                        "one time window")
        raise _Skip("invalid timeWindow")
    tw = raw[0]
    at: Loc = (*loc, "timeWindow", 0)
    try:
        count, unit = _shorthand(tw.get("duration"))
    except ValueError as exc:
        problems.append(f"{where(source, (*at, 'duration'))}: {exc}")
        raise _Skip("invalid timeWindow") from None
    calendar = tw.get("calendar")
    rolling = tw.get("isRolling", calendar is None)
    if not isinstance(rolling, bool):
        problems.append(f"{where(source, (*at, 'isRolling'))}: must be true or false")
        raise _Skip("invalid timeWindow")
    text = f"{count}{unit}"
    if rolling:
        if unit not in _UNITS:
            raise _Skip(f"a rolling window of {text} has no fixed length in slamon (use days, "
                        "e.g. 30d)")
        length = count * _UNITS[unit]
        if not 60 <= length <= MAX_WINDOW:
            raise _Skip(f"a rolling window of {text}: slamon's windows are 1m to 90d")
        return _Window(float(length))
    if calendar is None:
        calendar = {}
    if not isinstance(calendar, dict):
        problems.append(f"{where(source, (*at, 'calendar'))}: must be a mapping")
        raise _Skip("invalid timeWindow")
    zone_name = calendar.get("timeZone", "UTC")
    try:
        tz = ZoneInfo(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{where(source, (*at, 'calendar', 'timeZone'))}: unknown time zone "
                        f"{inline(zone_name)} (use an IANA name like Europe/Berlin)")
        raise _Skip("invalid timeWindow") from None
    start: datetime | None = None
    if "startTime" in calendar:
        try:
            start = _start(calendar["startTime"], tz)
        except ValueError as exc:
            problems.append(f"{where(source, (*at, 'calendar', 'startTime'))}: {exc}")
            raise _Skip("invalid timeWindow") from None
    out = _Window(0.0)
    kind = _CALENDAR.get((unit, count))
    if kind is not None:
        period: dict[str, Any] = {"kind": kind, "timezone": str(zone_name)}
        length = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400,
                  "monthly": 30 * 86400}[kind]
        if start is not None:
            if kind == "weekly":
                period["week_start"] = _WEEKDAYS[start.weekday()]
            boundary = start.minute == 0 and start.second == 0 and (
                kind == "hourly" or (start.hour == 0 and (kind != "monthly" or start.day == 1)))
            if not boundary:
                out.notes.append(f"calendar.startTime {start.isoformat()}: slamon's {kind} "
                                 "periods start at the calendar boundary (midnight, the "
                                 "1st of the month) in the time zone")
        out.window, out.period = float(min(length, MAX_WINDOW)), period
        return out
    if unit not in _UNITS:
        raise _Skip(f"a calendar window of {text}: slamon's periods are hourly, daily, weekly, "
                    "monthly or a fixed length in m/h/d/w (no quarters or years)")
    if start is None:
        raise _Skip(f"a calendar window of {text} needs calendar.startTime (the start of "
                    "its first period)")
    length = count * _UNITS[unit]
    out.period = {"kind": "fixed", "length": text, "anchor": start.isoformat()}
    out.notes.append(f"calendar {text} from {start.isoformat()}: fixed periods of exactly "
                     f"{text} (absolute time: daylight saving time does not move them)")
    out.window = float(max(60, min(length, MAX_WINDOW)))
    return out


# ------------------------------------------------------------------ SLOs


@dataclass
class _Result:
    slos: list[tuple[dict[str, Any], list[str], str]] = field(default_factory=list)
    slas: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    referenced: list[str] = field(default_factory=list)


def _ratio(obj: dict[str, Any], source: str, loc: Loc, problems: list[str]) -> float:
    if "target" in obj and "targetPercent" in obj:
        problems.append(f"{where(source, loc)}: give target or targetPercent, not both")
        raise _Skip("invalid objective")
    value = obj.get("target", obj.get("targetPercent"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{where(source, loc)}: needs target (0-1) or targetPercent (0-100)")
        raise _Skip("invalid objective")
    ratio = float(value) / (100 if "targetPercent" in obj else 1)
    if not 0 < ratio < 1:
        raise _Skip(f"objective {value}: slamon's objectives are ratios between 0 and 1 "
                    "(exclusive)")
    return round(ratio, 9)


def _convert(slo: _Obj, slis: dict[str, _Obj], given: dict[str, list[str]], used: set[str],
             used_sla: set[str], problems: list[str], result: _Result) -> None:
    spec, source, loc = slo.data["spec"], slo.source, slo.loc
    label = f"SLO {slo.name} ({where(source, loc)})"
    notes: list[str] = []
    indicator, ref = spec.get("indicator"), spec.get("indicatorRef")
    if isinstance(indicator, dict) and isinstance(indicator.get("spec"), dict):
        meta = indicator.get("metadata")
        sli_name = str(meta.get("name", slo.name)) if isinstance(meta, dict) else slo.name
        sli_meta, sli_spec = meta, indicator["spec"]
    elif isinstance(ref, str):
        if ref not in slis:
            problems.append(f"{where(source, (*loc, 'spec', 'indicatorRef'))}: unknown SLI "
                            f"{ref!r} (give the file that defines it too)")
            return
        sli_name, sli_meta = ref, slis[ref].data.get("metadata")
        sli_spec = slis[ref].data["spec"]
    else:
        problems.append(f"{where(source, (*loc, 'spec'))}: needs indicator (with spec) or "
                        "indicatorRef")
        return
    objectives = spec.get("objectives")
    if not isinstance(objectives, list) or not objectives \
            or not all(isinstance(o, dict) for o in objectives):
        problems.append(f"{where(source, (*loc, 'spec', 'objectives'))}: must be a list of "
                        "objectives")
        return
    try:
        mapped = _map_sli(slo, sli_meta, sli_name, sli_spec, given)
        window = _time_window(spec, source, (*loc, "spec"), problems)
    except _Skip as exc:
        result.skipped.append(f"{label}: {exc}")
        return
    notes += mapped.notes + window.notes
    method = spec.get("budgetingMethod", "Occurrences")
    if method in ("Timeslices", "RatioTimeslices"):
        notes.append(f"budgetingMethod {method}: slamon counts each probe (one per target "
                     "interval) as an event, and for a composite SLO judges time slices")
    elif method != "Occurrences":
        notes.append(f"budgetingMethod {inline(method)}: unknown; slamon counts probes")
    if spec.get("alertPolicies"):
        notes.append("alertPolicies: not imported; slamon alerts on burn rates "
                     "(alert_windows, SRE workbook defaults)")
    description = spec.get("description") or slo.data["metadata"].get("displayName") or ""
    if spec.get("service"):
        description = f"{description} (service {spec['service']})".strip()
    for i, obj in enumerate(objectives):
        at: Loc = (*loc, "spec", "objectives", i)
        obj_notes = list(notes)
        try:
            objective = _ratio(obj, source, at, problems)
            threshold = _threshold(obj, mapped.sli)
        except _Skip as exc:
            result.skipped.append(f"{label}, objectives[{i}]: {exc}")
            continue
        for key in ("timeSliceTarget", "timeSliceWindow"):
            if key in obj:
                obj_notes.append(f"objectives[{i}].{key}: {inline(obj[key])}: no slamon "
                                 "equivalent (a probe is the unit of measurement)")
        if mapped.sli == "availability" and ("op" in obj or "value" in obj):
            obj_notes.append(f"objectives[{i}] op/value: only used with threshold metrics")
        suffix = "" if len(objectives) == 1 else f"-{obj.get('displayName') or i}"
        sid = unique_id(f"{slo.name}{suffix}", used)
        item: dict[str, Any] = {"id": sid, "targets": mapped.targets, "objective": objective}
        if threshold is not None:
            item["sli"] = "latency"
            item["latency_threshold"] = format_duration(threshold)
        item["window"] = format_duration(window.window)
        if description:
            item["description"] = str(description)
        result.slos.append((item, obj_notes, label))
        result.referenced += [t for t in mapped.targets if t not in result.referenced]
        if window.period is not None:
            sla = {"id": unique_id(sid, used_sla), "slo": sid, "period": window.period}
            result.slas.append((sla, label))


def _threshold(obj: dict[str, Any], sli: str) -> float | None:
    if sli != "latency":
        return None
    op, value = obj.get("op"), obj.get("value")
    if op not in ("lt", "lte"):
        raise _Skip(f"op {inline(op)}: a latency objective must be lt or lte (a probe is good "
                    "when faster than the value)")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _Skip("a latency objective needs value: the threshold in seconds (> 0)")
    return float(value)


# ------------------------------------------------------------------ output


def _stub_targets(ids: list[str], base: Config | None) -> list[str]:
    """Targets for validating the fragment: the base config's (ids and intervals) or stubs."""
    lines = ["targets:"]
    known = [(t.id, t.interval) for t in base.targets] if base is not None \
        else [(t, 30.0) for t in ids]
    for tid, interval in known:
        lines += dump_item({"id": tid, "kind": "tcp", "interval": format_duration(interval),
                            "timeout": format_duration(interval / 2),
                            "tcp": {"host": "stub.invalid", "port": 1}}, 2)
    return lines if known else ["targets: []"]


def import_openslo(
    files: list[tuple[str, str]],
    *,
    targets: dict[str, list[str]] | None = None,
    base: Config | None = None,
) -> str:
    """The `slos:` and `slas:` sections for OpenSLO v1 documents, as YAML text.

    `files` are (name, text); `targets` maps an SLO or SLI name to slamon target
    ids; `base` is the config the sections are for (its targets are checked,
    and its SLO/SLA ids avoided). Raises InputError naming file and path.
    """
    problems: list[str] = []
    objs = _objects(files, problems)
    slis: dict[str, _Obj] = {}
    for obj in objs:
        if obj.kind == "SLI":
            slis.setdefault(obj.name, obj)
    result = _Result()
    used = {s.id for s in base.slos} if base is not None else set()
    used_sla = {s.id for s in base.slas} if base is not None else set()
    others: list[str] = []
    for obj in objs:
        if obj.kind == "SLO":
            _convert(obj, slis, targets or {}, used, used_sla, problems, result)
        elif obj.kind == "SLI":
            continue
        else:
            others.append(f"{obj.kind} {obj.name} ({where(obj.source, obj.loc)}): not "
                          "imported (slamon reads SLOs and SLIs only)")
    if problems:
        raise InputError(problems)
    names = ", ".join(name for name, _ in files)
    out = [comment(f"SLOs and SLAs generated by `slamon import openslo` from {names}."),
           comment("Add them to a slamon config that defines the targets they name"
                   + (f": {', '.join(result.referenced)}." if result.referenced else ".")),
           comment("What has no slamon equivalent is listed in comments; nothing was dropped."),
           ""]
    if result.skipped:
        out.append(comment("not imported:"))
        out += [comment(f"  {s}") for s in result.skipped]
    out += [comment(line) for line in others]
    if result.skipped or others:
        out.append("")
    fragment: list[str] = []
    fragment.append("slos:" if result.slos else "slos: []")
    for item, notes, label in result.slos:
        fragment.append(comment(f"from {label}", 2))
        fragment += [comment(n, 2) for n in notes]
        fragment += dump_item(item, 2)
    if result.slas:
        fragment.append("slas:")
        for sla, label in result.slas:
            fragment.append(comment(f"from {label}: its calendar time window", 2))
            fragment += dump_item(sla, 2)
    text = "\n".join(out + fragment) + "\n"
    check = "\n".join(_stub_targets(result.referenced, base) + fragment) + "\n"
    try:
        parse_config(check, source="<generated>")
    except ConfigError as exc:
        raise InputError([_origin(line, result) for line in exc.errors]) from None
    return text


def _origin(line: str, result: _Result) -> str:
    """A validation error of the generated sections, told by the SLO it came from."""
    m = re.match(r"(slos|slas)\[(\d+)\]\.?(.*)", line)
    if m is None:
        return f"generated config: {line}"
    i = int(m.group(2))
    items = result.slos if m.group(1) == "slos" else result.slas
    label = items[i][-1] if i < len(items) else "?"
    return f"{label}: {m.group(3)}"
