"""Config file -> validated `Config`, with every mistake reported by path.

Steps: read the file, parse YAML (rejecting duplicate keys: `yamlfile`), interpolate
`${VAR}` / `${VAR:-default}` in string values, validate with pydantic, and
turn every problem into one line `path: message` (e.g.
`targets[3].timeout: must be shorter than interval (10s)`).

Secrets: values that came from the environment are never shown in a message.
pydantic's `input` is never used in messages except through `_show`, which
hides interpolated values; messages of our own validators are scrubbed of any
interpolated value as well. The original `ValidationError` (which holds the
inputs) is not chained to the `ConfigError`.
"""

from __future__ import annotations

import glob
import math
import os
import re
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from slamon.config import read_ahead
from slamon.config.read_ahead import ReadAhead
from slamon.config.root import Config, reference_problems
from slamon.config.slo import alert_window_problems, selector_problems, slo_problems
from slamon.config.targets import KINDS, HttpSpec, Target, TcpSpec, target_problems
from slamon.config.yamlfile import ConfigError, dollar_free, kind_of, parse_yaml, read_text
from slamon.util.args import CONFIG_ENV, DEFAULT_CONFIG_PATH
from slamon.util.durations import parse_duration
from slamon.util.schema import Loc, PathError, Problem, did_you_mean, format_path

__all__ = ["ConfigError", "format_path", "load_config", "load_config_for_cli", "parse_config"]


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None,
                ahead: ReadAhead | None = None) -> Config:
    """Read and validate a config file. `env` defaults to `os.environ`. `ahead`: the file
    read and parsed by a child (`read_ahead.start(path)`); the file is read here only
    when the child gave nothing.

    Raises ConfigError (never OSError, YAMLError or ValidationError).
    """
    name = os.fspath(path)
    got = read_ahead.parsed(ahead) if ahead is not None else None
    if got is None:
        text = read_text(name)
        got = parse_yaml(text, name), dollar_free(text)
    data, plain = got
    return _validated(data, name, os.environ if env is None else env, Path(name).parent,
                      plain)


def load_config_for_cli(path: str | os.PathLike[str], *, count: bool = True,
                        ahead: ReadAhead | None = None) -> Config | None:
    """`load_config` for a command: on errors, print each to stderr (then, with `count`,
    a "<path>: N errors" line) and return None; the command picks its exit code."""
    if os.fspath(path) == DEFAULT_CONFIG_PATH and not os.path.exists(path):
        print(f"error: no config: {DEFAULT_CONFIG_PATH} does not exist; give -c FILE or set "
              f"{CONFIG_ENV}", file=sys.stderr)
        return None
    try:
        return load_config(path, ahead=ahead)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        if count:
            n = len(exc.errors)
            print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return None


def parse_config(
    text: str, source: str = "<config>", env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate config text. `env` (default: empty) feeds `${VAR}` interpolation;
    `include:` paths are relative to `base_dir` (default: the working directory)."""
    return _validated(parse_yaml(text, source), source, {} if env is None else env, base_dir,
                      dollar_free(text))


def _validated(data: dict[str, Any], source: str, env: Mapping[str, str],
               base_dir: Path | None, plain: bool = False) -> Config:
    """The config of a file's parsed YAML: includes, defaults, `${VAR}`, validation.
    `plain`: the file's text is `dollar_free`, so its values need no interpolation (the
    walk over every value took ~0.1 s at 10,000 targets); an included file's may."""
    plain = plain and "include" not in data
    data, origin = _include(data, base_dir or Path("."), source)
    _anchor_sd_files(data, base_dir)
    _apply_defaults(data, source)
    interp = _Interpolator(env)
    try:
        resolved = data if plain else interp.walk(data, ())
    except _TooLarge:
        raise ConfigError(
            ["config is too large (YAML aliases expand to over a million values)"], source
        ) from None
    except RecursionError:
        raise ConfigError(["config is nested too deeply"], source) from None
    result: Config | None = None
    errors: list[_Err] = []
    try:
        result = Config.model_validate(resolved)
    except ValidationError as exc:
        errors = _convert(exc, resolved, interp)
        # pydantic skips model validators when a field is invalid: run the
        # cross-field and cross-reference checks on the raw data too.
        errors += [_Err(loc, msg) for loc, msg in _cross_check(resolved)]
    except RecursionError:
        raise ConfigError(["config is nested too deeply"], source) from None
    errors = [e for e in errors if not _under_any(e.loc, interp.failed)]
    errors += [_Err(loc, msg) for loc, msg in interp.errors]
    if result is not None and not errors:
        return result
    raise ConfigError(_render(errors, resolved, interp, origin), source)


# --------------------------------------------------------------- include/defaults

#: sections an included file may add to (lists, appended in include order)
INCLUDABLE = ("targets", "slos", "slas", "maintenance")
#: (section, index in the merged list) -> (file, index in that file)
Origin = dict[tuple[str, int], tuple[str, int]]


def _include(data: dict[str, Any], base: Path, source: str) -> tuple[dict[str, Any], Origin]:
    """Append the lists of each file `include:` names (paths or globs, relative to
    the config's directory) to the config's own. One level: an included file
    holds only the INCLUDABLE lists."""
    spec = data.pop("include", None)
    origin: Origin = {}
    if spec is None:
        return data, origin
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, list) or not all(isinstance(x, str) and x for x in spec):
        raise ConfigError(["include: must be a path or a list of paths (globs allowed)"],
                          source)
    problems: list[str] = []
    files: list[Path] = []
    for i, pattern in enumerate(spec):
        path = Path(pattern).expanduser()
        path = path if path.is_absolute() else base / path
        if any(ch in pattern for ch in "*?["):
            # a glob may match nothing yet (a directory filled by other tools)
            files.extend(sorted(Path(p) for p in glob.glob(str(path))))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"include[{i}]: {pattern}: file not found")
    for path in files:
        name = str(path)
        try:
            part = parse_yaml(read_text(name), name)
        except ConfigError as exc:
            problems.extend(f"{name}: {e}" if not e.startswith(name) else e for e in exc.errors)
            continue
        for key, value in part.items():
            if key not in INCLUDABLE:
                problems.append(f"{name}: {key}: an included file holds only "
                                f"{', '.join(INCLUDABLE)}")
            elif not isinstance(value, list):
                problems.append(f"{name}: {key}: must be a list")
            else:
                merged = data.setdefault(key, [])
                if not isinstance(merged, list):
                    problems.append(f"{source}: {key}: must be a list")
                    continue
                for j, item in enumerate(value):
                    origin[(key, len(merged))] = (name, j)
                    merged.append(item)
    if problems:
        raise ConfigError(problems, source)
    return data, origin


def _anchor_sd_files(data: dict[str, Any], base: Path | None) -> None:
    """file_sd paths are relative to the config's directory, like `include:`."""
    sources = data.get("discovery")
    if base is None or not isinstance(sources, list):
        return
    for source in sources:
        spec = source.get("file_sd") if isinstance(source, dict) else None
        if isinstance(spec, dict) and isinstance(files := spec.get("files"), list):
            spec["files"] = [str(base / Path(f).expanduser()) if isinstance(f, str) and f.strip()
                             else f for f in files]


def _apply_defaults(data: dict[str, Any], source: str) -> None:
    """`defaults: {targets: {...}}`: values every target has unless it sets its own
    (mappings merged key by key, anything else replaced). A protocol section
    (`http:`, `tcp:`) applies only to targets of that kind."""
    spec = data.pop("defaults", None)
    if spec is None:
        return
    if not isinstance(spec, dict) or set(spec) - {"targets"}:
        raise ConfigError(["defaults: may only hold `targets: {...}`"], source)
    base = spec.get("targets") or {}
    if not isinstance(base, dict):
        raise ConfigError(["defaults.targets: must be a mapping of target fields"], source)
    if "id" in base:
        raise ConfigError(["defaults.targets.id: every target needs its own id"], source)
    targets = data.get("targets")
    if isinstance(targets, list):
        for i, target in enumerate(targets):
            if isinstance(target, dict):
                targets[i] = _with_defaults(base, target)
    # a discovery template is a target too
    sources = data.get("discovery")
    for source in sources if isinstance(sources, list) else []:
        if isinstance(source, dict) and isinstance(source.get("template"), dict):
            source["template"] = _with_defaults(base, source["template"])


def _with_defaults(base: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    kind = target.get("kind", base.get("kind"))
    own = {k: v for k, v in base.items() if k not in KINDS or k == kind}
    return _merge(own, target)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------ interpolation

_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


_MAX_NODES = 1_000_000


class _TooLarge(Exception):
    pass


@dataclass
class _Interp:
    """One interpolated string value."""

    template: str
    value: str
    #: (variable name, value it contributed) for each reference
    parts: list[tuple[str, str]] = field(default_factory=list)

    def placeholder(self) -> str:
        names = ", ".join(dict.fromkeys(f"${{{name}}}" for name, _ in self.parts))
        return f"(value from {names} not shown)"


class _Interpolator:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.done: dict[Loc, _Interp] = {}
        self.errors: list[Problem] = []
        self.failed: list[Loc] = []
        self._memo: dict[int, Any] = {}
        self._count = 0

    def walk(self, value: Any, loc: Loc) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            raise _TooLarge
        if isinstance(value, str):
            return self._string(value, loc)
        if isinstance(value, dict | list):
            # YAML aliases share objects: a value without any `${` is reused as
            # is, so an alias bomb is not expanded here.
            key = id(value)
            if key in self._memo:
                return self._memo[key]
            if isinstance(value, dict):
                out: Any = {k: self.walk(v, (*loc, _loc_key(k))) for k, v in value.items()}
            else:
                out = [self.walk(v, (*loc, i)) for i, v in enumerate(value)]
            if out == value:
                self._memo[key] = value
                return value
            return out
        return value

    def _string(self, text: str, loc: Loc) -> str:
        if "${" not in text:
            return text
        pieces: list[str] = []
        record = _Interp(text, "")
        pos = 0
        failed = False
        for match in _REF.finditer(text):
            pieces.append(text[pos : match.start()])
            pos = match.end()
            token = match.group(0)
            if token == "$${":
                pieces.append("${")
                continue
            body = match.group(1)
            if body is None:
                self._fail(
                    loc, "unclosed ${: write ${NAME} or ${NAME:-default}, or $${ for a literal ${"
                )
                failed = True
                break
            name, sep, default = body.partition(":-")
            if not _VAR_NAME.fullmatch(name):
                self._fail(
                    loc,
                    f"invalid reference ${{{body}}}: write ${{NAME}} or ${{NAME:-default}}, "
                    "or $${ for a literal ${",
                )
                failed = True
                continue
            env_value = self.env.get(name)
            if env_value is None or (sep and env_value == ""):
                if not sep:
                    self._fail(loc, f"environment variable {name} is not set")
                    failed = True
                    continue
                pieces.append(default)
            else:
                pieces.append(env_value)
                record.parts.append((name, env_value))
        if failed:
            return text
        pieces.append(text[pos:])
        record.value = "".join(pieces)
        self.done[loc] = record
        return record.value

    def _fail(self, loc: Loc, message: str) -> None:
        self.errors.append((loc, message))
        if loc not in self.failed:
            self.failed.append(loc)


def _loc_key(key: Any) -> str | int:
    return key if isinstance(key, str | int) and not isinstance(key, bool) else str(key)


# ------------------------------------------------------------ pydantic -> lines


@dataclass
class _Err:
    loc: Loc
    message: str
    #: the message may quote a value (a validator's own message): scrub it
    scrub: bool = True


def _under_any(loc: Loc, prefixes: Iterable[Loc]) -> bool:
    return any(loc[: len(p)] == p for p in prefixes)


_TAG = re.compile(r"^[a-z][a-z0-9_-]*\[.*\]$")
_TYPE_NAMES = {"int", "float", "str", "bool", "bytes", "none", "list", "dict"}


def _clean_loc(loc: tuple[Any, ...], data: Any) -> Loc:
    """Drop pydantic's union/validator tags; keep real keys and indexes."""
    out: list[str | int] = []
    node: Any = data
    for part in loc:
        present = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if present:
            out.append(part)
            node = node[part]
            continue
        if isinstance(part, str) and (
            _TAG.match(part) or part in _TYPE_NAMES or (part[:1].isupper() and node is not None)
        ):
            continue
        out.append(part)
        node = None
    return tuple(out)


def _convert(exc: ValidationError, data: Any, interp: _Interpolator) -> list[_Err]:
    out: list[_Err] = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err["loc"]), data)
        typ = err["type"]
        ctx = err.get("ctx") or {}
        if typ in ("value_error", "assertion_error"):
            cause = ctx.get("error")
            if isinstance(cause, PathError):
                out += [_Err((*loc, *sub), msg) for sub, msg in cause.items]
                continue
            text = str(cause) if cause is not None else _strip_prefix(err["msg"])
            out.append(_Err(loc, text))
            continue
        out.append(_Err(*_describe(typ, loc, err, data, interp), scrub=True))
    return out


def _strip_prefix(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def _show(loc: Loc, interp: _Interpolator, value: Any) -> str:
    """repr of an input value, unless it came from the environment."""
    record = interp.done.get(loc)
    if record is not None and record.parts:
        return record.placeholder()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(typ: str, loc: Loc, err: Any, data: Any, interp: _Interpolator) -> tuple[Loc, str]:
    msg: str = err["msg"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
        return loc, "key " + msg.replace("Input should be", "must be")
    if typ == "extra_forbidden":
        return loc, _unknown_key(loc)
    if typ == "missing":
        return loc, "missing required key"
    if value is None and (typ.endswith("_type") or typ.endswith("_parsing")):
        return loc, "has no value: give one or remove the key"
    if typ == "literal_error":
        expected = ctx.get("expected", "")
        what = "kind" if loc and loc[-1] == "kind" else "value"
        return loc, f"unknown {what} {_show(loc, interp, value)}: must be one of {expected}"
    if typ in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"must be a mapping (key: value), not {kind_of(value)}"
    if typ == "list_type":
        return loc, f"must be a list, not {kind_of(value)}"
    if typ in ("string_type",):
        hint = ""
        if isinstance(value, bool):
            hint = " (YAML reads yes/no/on/off/true/false as booleans: quote it)"
        elif isinstance(value, int | float):
            hint = " (quote numbers meant as text)"
        return loc, f"must be a string, not {kind_of(value)}{hint}"
    if typ in ("too_short", "string_too_short") and ctx.get("min_length") == 1:
        return loc, "must not be empty"
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return loc, "must be a whole number"
    if typ in ("float_type", "float_parsing", "finite_number"):
        return loc, "must be a number"
    if typ in ("bool_type", "bool_parsing"):
        return loc, "must be true or false"
    return loc, msg.replace("Input should be", "must be")


def _unknown_key(loc: Loc) -> str:
    key = str(loc[-1]) if loc else ""
    model = _model_at(loc[:-1])
    if model is None:
        return "unknown key"
    fields = list(model.model_fields)
    close = did_you_mean(key, fields)
    if close:
        return f"unknown key; did you mean {close!r}?"
    if model is Target:
        for section, spec in (("http", HttpSpec), ("tcp", TcpSpec)):
            if key in spec.model_fields:
                return f"unknown key; {key!r} goes inside the {section!r} section"
    if len(fields) <= 12:
        return f"unknown key (valid keys: {', '.join(fields)})"
    return "unknown key"


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin is Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(args) == 1:
                tp = args[0]
                continue
            if len(models) == 1:
                tp = models[0]
                continue
        return tp


def _model_at(loc: Loc) -> type[BaseModel] | None:
    tp: Any = Config
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if not isinstance(part, str) or part not in tp.model_fields:
                return None
            tp = tp.model_fields[part].annotation
            continue
        origin = get_origin(tp)
        if origin is list and isinstance(part, int):
            tp = get_args(tp)[0]
        elif origin is dict:
            tp = get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


# ---------------------------------------------------------------- raw cross-check


def _duration(
    section: Mapping[Any, Any], key: str, default: float | None, low: float
) -> float | None:
    """The duration at `key` if it is valid on its own, else None."""
    if key not in section:
        return default
    try:
        value = parse_duration(section[key])
    except ValueError:
        return None
    if math.isnan(value) or math.isinf(value) or value < low:
        return None
    return value


def _prefixed(prefix: Loc, problems: list[Problem]) -> list[Problem]:
    return [((*prefix, *sub), msg) for sub, msg in problems]


def _cross_check(data: Mapping[str, Any]) -> list[Problem]:
    """Model-validator checks, run on the raw data so they report even when
    pydantic stopped at a field error. Same functions, same messages."""
    problems: list[Problem] = []
    targets: list[tuple[str | None, float | None]] = []
    complete = True
    raw_targets = data.get("targets", [])
    if not isinstance(raw_targets, list):
        raw_targets, complete = [], False
    for i, t in enumerate(raw_targets):
        if not isinstance(t, dict):
            targets.append((None, None))
            complete = False
            continue
        tid = t.get("id") if isinstance(t.get("id"), str) else None
        complete = complete and tid is not None
        interval = _duration(t, "interval", 30.0, 1.0)
        timeout = _duration(t, "timeout", 10.0, 1e-9)
        kind = t.get("kind")
        if isinstance(kind, str):
            sections = {k for k in KINDS if t.get(k) is not None}
            problems += _prefixed(
                ("targets", i), target_problems(kind, interval, timeout, sections)
            )
        targets.append((tid, interval))
    slos: list[tuple[str | None, list[str | None], float | None]] = []
    raw_slos = data.get("slos", [])
    for i, s in enumerate(raw_slos if isinstance(raw_slos, list) else []):
        if not isinstance(s, dict):
            continue
        sid = s.get("id") if isinstance(s.get("id"), str) else None
        raw_refs = s.get("targets")
        refs: list[str | None] = (
            [r if isinstance(r, str) else None for r in raw_refs]
            if isinstance(raw_refs, list)
            else []
        )
        sli = s.get("sli", "availability")
        problems += _prefixed(
            ("slos", i),
            slo_problems(
                refs,
                sli if sli in ("availability", "latency") else None,
                s.get("latency_threshold") is not None,
                _duration(s, "window", 30 * 86400.0, 0.0),
            ),
        )
        selector = s.get("selector")
        if selector is None or isinstance(selector, dict):
            problems += _prefixed(("slos", i), selector_problems(
                bool(refs) or "targets" in s, selector, _duration(s, "slice", None, 0.0)))
        windows = s.get("alert_windows")
        for j, w in enumerate(windows if isinstance(windows, list) else []):
            if isinstance(w, dict):
                problems += _prefixed(
                    ("slos", i, "alert_windows", j),
                    alert_window_problems(
                        _duration(w, "long", None, 1e-9), _duration(w, "short", None, 1e-9)
                    ),
                )
        slos.append((sid, refs, _duration(s, "slice", None, 0.0)))
    problems += reference_problems(targets, slos, targets_complete=complete)
    return problems


# ---------------------------------------------------------------------- output


def _order_key(data: Any, loc: Loc) -> tuple[int, ...]:
    """Position of `loc` in the document, so errors come out in file order."""
    key: list[int] = []
    node: Any = data
    for part in loc:
        if isinstance(node, dict):
            keys = list(node)
            if part in node:
                key.append(keys.index(part))
                node = node[part]
                continue
            key.append(len(keys))
        elif isinstance(node, list) and isinstance(part, int):
            key.append(part)
            node = node[part] if 0 <= part < len(node) else None
            continue
        node = None
    return tuple(key)


def _scrub(message: str, loc: Loc, interp: _Interpolator) -> str:
    """Remove interpolated values from a message: whole values at or around `loc`
    first, then any variable's value (long ones anywhere in the message)."""
    records = [r for r in interp.done.items() if r[1].parts]
    related = [r for w, r in records if loc[: len(w)] == w or w[: len(loc)] == loc]
    for record in related:
        message = _replace(message, [record.value], record.placeholder())
    for record in related:
        message = _replace(message, [v for _, v in record.parts], record.placeholder())
    for _, record in records:
        long_values = [v for _, v in record.parts if len(v) >= 8]
        message = _replace(message, long_values, record.placeholder())
    return message


def _replace(message: str, secrets: list[str], placeholder: str) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            for form in (repr(secret), secret):
                message = message.replace(form, placeholder)
    return message


def _render(
    errors: list[_Err], data: Any, interp: _Interpolator, origin: Origin | None = None
) -> list[str]:
    ordered = sorted(enumerate(errors), key=lambda p: (_order_key(data, p[1].loc), p[0]))
    lines: list[str] = []
    for _, err in ordered:
        message = _scrub(err.message, err.loc, interp) if err.scrub else err.message
        path = format_path(err.loc)
        where = origin.get((str(err.loc[0]), err.loc[1])) if (
            origin and len(err.loc) >= 2 and isinstance(err.loc[1], int)) else None
        if where is not None:
            path = f"{where[0]}: " + format_path((err.loc[0], where[1], *err.loc[2:]))
        line = f"{path}: {message}" if path else message
        if line not in lines:
            lines.append(line)
    return lines
