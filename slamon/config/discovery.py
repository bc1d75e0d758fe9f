"""Target discovery: Prometheus `file_sd` / `http_sd` target groups turned into
targets through a template, and SLOs that select targets by label.

Pure: parsing a target-group document, rendering an entry through a template
and building the running config from the file config plus what the sources
found. Reading files and polling URLs is slamon.app.discovery.

A target group is Prometheus' format, the same for both sources:

    [{"targets": ["10.0.0.1:9100", "https://shop.example.com/"],
      "labels": {"team": "shop", "__meta_zone": "a"}}]

Each string in `targets` becomes one slamon target: the template's strings may
hold `{{target}}`, `{{host}}`, `{{port}}` and `{{labels.NAME}}`. The group's
labels whose names do not start with `__` become the target's labels (over
the template's own).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from slamon.config.targets import KINDS, Target, target_problems
from slamon.util.durations import parse_duration
from slamon.util.schema import (
    Duration,
    Id,
    Loc,
    PathError,
    Problem,
    Strict,
    check_headers,
    check_url,
    format_path,
)

if TYPE_CHECKING:
    from slamon.config.root import Config

#: `{{ name }}` in a template string
PLACEHOLDER_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_NAME_RE = re.compile(r"target|url|host|port|labels\.[A-Za-z_][A-Za-z0-9_]*")
_ID_CHARS_RE = re.compile(r"[^A-Za-z0-9_.:-]")
_MAX_ID = 128

#: what placeholders stand for when the template is checked at load time
_SAMPLE = {"target": "sample.invalid:80", "url": "http://sample.invalid:80",
           "host": "sample.invalid", "port": "80"}


class FileSd(Strict):
    """Prometheus `file_sd_configs`: JSON or YAML files (globs allowed), re-read
    when one changes (checked every `refresh_interval`)."""

    files: list[str] = Field(min_length=1)
    refresh_interval: Duration = 5.0

    @field_validator("files")
    @classmethod
    def _files(cls, value: list[str]) -> list[str]:
        problems: list[Problem] = []
        for i, name in enumerate(value):
            if not name.strip():
                problems.append(((i,), "must not be empty"))
            elif not name.endswith((".json", ".yml", ".yaml")):
                problems.append(((i,), "must end in .json, .yml or .yaml (globs: *.json)"))
        if problems:
            raise PathError.many(problems)
        return value


class HttpSd(Strict):
    """Prometheus `http_sd_configs`: GET `url`, a JSON list of target groups."""

    url: str
    refresh_interval: Duration = 60.0
    timeout: Duration = 10.0
    #: e.g. {Authorization: "Bearer ${SD_TOKEN}"}; never logged
    headers: dict[str, str] = Field(default_factory=dict)
    tls_verify: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)


class Discovery(Strict):
    """One source of targets and the template that turns its entries into targets."""

    id: Id
    file_sd: FileSd | None = None
    http_sd: HttpSd | None = None
    #: target fields; `id` defaults to `<source id>:{{target}}`
    template: dict[str, Any]

    @model_validator(mode="after")
    def _checks(self) -> Discovery:
        problems: list[Problem] = []
        sources = [n for n in ("file_sd", "http_sd") if getattr(self, n) is not None]
        if len(sources) != 1:
            problems.append(((), "needs exactly one of file_sd or http_sd"))
        for name in sources:
            spec = getattr(self, name)
            if spec.refresh_interval < 0.1:
                problems.append(((name, "refresh_interval"), "must be at least 100ms"))
        problems += [(("template", *loc), msg) for loc, msg in template_problems(self.template)]
        if problems:
            raise PathError.many(problems)
        return self

    @property
    def source(self) -> FileSd | HttpSd:
        spec = self.file_sd or self.http_sd
        assert spec is not None
        return spec


# ------------------------------------------------------------------ templates


def _strings(value: Any, loc: Loc) -> Iterable[tuple[Loc, str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*loc, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*loc, i))


def template_problems(template: Mapping[str, Any]) -> list[Problem]:
    """Load-time checks: known placeholders, a kind, and every field that holds
    no placeholder valid as it stands (the others depend on each entry)."""
    problems: list[Problem] = []
    templated: set[Loc] = set()
    for loc, text in _strings(template, ()):
        for match in PLACEHOLDER_RE.finditer(text):
            templated.add(loc)
            if not _NAME_RE.fullmatch(match.group(1)):
                problems.append((loc, f"unknown placeholder {match.group(0)!r}: use "
                                      "{{target}}, {{url}}, {{host}}, {{port}} or "
                                      "{{labels.NAME}}"))
    if "kind" not in template:
        problems.append((("kind",), f"required: one of {', '.join(KINDS)}"))
    if problems:
        return problems
    sample = render_value(dict(template), _SAMPLE, _SampleLabels())
    sample.setdefault("id", "sample")
    try:
        Target.model_validate(sample)
    except ValidationError as exc:
        if not any(err["loc"] == () for err in exc.errors(include_url=False)):
            # field errors stop pydantic before the cross-field checks: run them here
            problems += _cross_field(sample)
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            if any(loc[: len(t)] == t for t in templated):
                continue
            ctx = err.get("ctx") or {}
            error = ctx.get("error")
            if isinstance(error, PathError):
                problems += [((*loc, *sub), msg) for sub, msg in error.items
                             if not any((*loc, *sub)[: len(t)] == t for t in templated)]
            else:
                problems.append((loc, str(err["msg"]).removeprefix("Value error, ")))
    return problems


def _cross_field(sample: Mapping[str, Any]) -> list[Problem]:
    def seconds(key: str, default: float) -> float | None:
        try:
            value = parse_duration(sample.get(key, default))
        except (TypeError, ValueError):
            return None
        return value if value > 0 else None

    kind = sample.get("kind")
    if not isinstance(kind, str):
        return []
    sections = {k for k in KINDS if sample.get(k) is not None}
    return target_problems(kind, seconds("interval", 30.0), seconds("timeout", 10.0), sections)


class _SampleLabels(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "sample"


class EntryError(ValueError):
    """One discovered entry cannot become a target; the others still do."""


def render_value(value: Any, values: Mapping[str, str], labels: Mapping[str, str]) -> Any:
    """`value` with every placeholder in every string replaced."""
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("labels."):
                label = name.removeprefix("labels.")
                try:
                    return labels[label]
                except KeyError:
                    raise EntryError(f"no label {label!r} for {{{{{name}}}}}") from None
            if name not in values:
                raise EntryError(f"{{{{{name}}}}} is unknown for this target")
            return values[name]
        return PLACEHOLDER_RE.sub(sub, value)
    if isinstance(value, dict):
        return {k: render_value(v, values, labels) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, values, labels) for v in value]
    return value


def placeholder_values(target: str) -> dict[str, str]:
    """`{{target}}`, `{{url}}`, `{{host}}`, `{{port}}` of one entry: host and port from
    a URL (`https://h/` → h, 443) or from `host:port`; `[v6]:port` as Prometheus
    writes it. `{{url}}` is the entry with `http://` in front when it has no scheme,
    as blackbox_exporter reads a bare `host[:port][/path]`."""
    values = {"target": target,
              "url": target if "://" in target else f"http://{target}"}
    try:
        parts = urlsplit(target if "://" in target else f"//{target}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return values
    if host:
        values["host"] = host
    if port is None and "://" in target:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    if port is not None:
        values["port"] = str(port)
    return values


def target_id(text: str) -> str:
    """A valid, stable target id from any string: characters outside the id set
    become `_`; an over-long id keeps its start and a hash of the whole."""
    out = _ID_CHARS_RE.sub("_", text).lstrip("_.:-") or "target"
    if len(out) > _MAX_ID:
        digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
        out = out[: _MAX_ID - 13] + "-" + digest
    return out


@dataclass(frozen=True, slots=True)
class Group:
    """One Prometheus target group."""

    targets: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]


def parse_groups(data: Any) -> list[Group]:
    """A decoded `file_sd` file or `http_sd` body; PathError names every bad item."""
    if not isinstance(data, list):
        raise PathError((), "must be a list of target groups ({targets: [...], labels: {...}})")
    groups: list[Group] = []
    problems: list[Problem] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            problems.append(((i,), "must be a mapping with `targets` and optional `labels`"))
            continue
        for key in item:
            if key not in ("targets", "labels"):
                problems.append(((i, str(key)), "unknown key (a group holds targets and labels)"))
        targets = item.get("targets")
        if not isinstance(targets, list):
            problems.append(((i, "targets"), "must be a list of strings"))
            continue
        bad = [j for j, t in enumerate(targets) if not isinstance(t, str) or not t.strip()]
        problems += [((i, "targets", j), "must be a non-empty string") for j in bad]
        labels = item.get("labels") or {}
        if not isinstance(labels, dict):
            problems.append(((i, "labels"), "must be a mapping of label name to string"))
            continue
        bad_labels = [k for k, v in labels.items()
                      if not isinstance(k, str) or not isinstance(v, str)]
        problems += [((i, "labels", str(k)), "label values must be strings") for k in bad_labels]
        if bad or bad_labels:
            continue
        groups.append(Group(tuple(targets), tuple(sorted(labels.items()))))
    if problems:
        raise PathError.many(problems)
    return groups


def render(source: Discovery, group: Group, entry: str) -> Target:
    """The target for one entry of one group; EntryError says why not."""
    labels = dict(group.labels)
    values = placeholder_values(entry)
    raw = dict(source.template)
    raw.setdefault("id", f"{source.id}:{{{{target}}}}")
    data = render_value(raw, values, labels)
    data["id"] = target_id(str(data["id"]))
    own = {k: v for k, v in labels.items() if not k.startswith("__")}
    if own:
        data["labels"] = {**(data.get("labels") or {}), **own}
    try:
        return Target.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc: Loc = tuple(err["loc"])
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, PathError):
            loc, message = (*loc, *error.items[0][0]), error.items[0][1]
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        raise EntryError(f"{format_path(loc)}: {message}") from None


# ------------------------------------------------------------ running config


def matches(selector: Mapping[str, str], target: Target) -> bool:
    return all(target.labels.get(k) == v for k, v in selector.items())


def selected_id(slo_id: str, target_id_: str) -> str:
    """The id of the SLO that a selector SLO makes for one target."""
    return f"{slo_id}:{target_id_}"


def resolve(
    config: Config, discovered: Mapping[str, Sequence[Target]]
) -> tuple[Config, list[str]]:
    """The running config: the file's targets plus the discovered ones, and every
    selector SLO replaced by one SLO per matching target (id `<slo>:<target>`).

    One SLO per target keeps each target's history when others come and go. A
    discovered target whose id is already taken is left out and reported.
    Routes and the status page's list that name a selector SLO cover its SLOs.
    """
    problems: list[str] = []
    targets = list(config.targets)
    taken = {t.id for t in targets}
    for source in config.discovery:
        for target in discovered.get(source.id, ()):
            if target.id in taken:
                problems.append(f"discovery {source.id}: target id {target.id!r} is already "
                                "defined; entry left out")
                continue
            taken.add(target.id)
            targets.append(target)
    if not any(s.selector is not None for s in config.slos) and len(targets) == len(
            config.targets):
        return config, problems
    slos = []
    expanded: dict[str, list[str]] = {}
    slo_ids = {s.id for s in config.slos}
    for slo in config.slos:
        if slo.selector is None:
            slos.append(slo)
            continue
        ids = expanded.setdefault(slo.id, [])
        for target in targets:
            if matches(slo.selector, target):
                sid = selected_id(slo.id, target.id)
                if sid in slo_ids:
                    problems.append(f"slos: {sid!r} from selector SLO {slo.id!r} is already an "
                                    "SLO id; left out")
                    continue
                slos.append(slo.model_copy(update={"id": sid, "targets": [target.id],
                                                   "selector": None}))
                ids.append(sid)

    def widen(ids: list[str]) -> list[str]:
        out: list[str] = []
        for sid in ids:
            out.append(sid)
            out.extend(expanded.get(sid, ()))
        return out

    update: dict[str, Any] = {"targets": targets, "slos": slos}
    if config.notify is not None and expanded:
        routes = [r.model_copy(update={"slos": widen(r.slos)}) if r.slos else r
                  for r in config.notify.routes]
        update["notify"] = config.notify.model_copy(update={"routes": routes})
    page = config.status_page
    if page.public_slos is not None and expanded:
        update["status_page"] = page.model_copy(update={"public_slos": widen(page.public_slos)})
    return config.model_copy(update=update), problems
