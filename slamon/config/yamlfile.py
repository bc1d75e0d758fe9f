"""The config file's text and its YAML: read once, parsed to plain data (maps, lists,
scalars), duplicate keys refused, every problem a `ConfigError` naming line and column.

A leaf: it imports no schema (pydantic, the models), so that `slamon run` can read and
parse a large file in a child forked before those imports (`read_ahead`), the two
overlapping on two cores.
"""

from __future__ import annotations

import pickle
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """The config is unusable. `errors` holds one `path: message` line per problem."""

    def __init__(self, errors: list[str], source: str = "<config>") -> None:
        self.errors = list(errors)
        self.source = source
        n = len(self.errors)
        head = f"{source}: {n} error{'s' if n != 1 else ''}"
        super().__init__(head + "".join(f"\n  {line}" for line in self.errors))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[str], str]]:
        # pickled by what it was made from (a child reading a config sends it whole);
        # the default would rebuild it from the message text alone
        return ConfigError, (self.errors, self.source)



def read_text(name: str) -> str:
    problem: str
    try:
        raw = Path(name).read_bytes()
    except IsADirectoryError:
        problem = "is a directory, not a config file"
    except FileNotFoundError:
        problem = "file not found"
    except PermissionError:
        problem = "permission denied"
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or type(exc).__name__}"
    else:
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problem = f"not valid UTF-8 text (byte {exc.start})"
    raise ConfigError([f"{name}: {problem}"], name)


class _UniqueKeys:
    """Mixin for a SafeLoader: rejects duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, Hashable):
                    continue  # the base class reports unhashable keys
                try:
                    first = seen.get(key)
                except TypeError:
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} "
                        f"(first defined at line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc,no-any-return]

    # provided by the loader class this is mixed into
    construct_object: Any


class _UniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    """Pure-Python SafeLoader: its error messages and marks are the reference."""


#: libyaml's parser (about 10x faster, and a lower memory peak on a 10,000-target file)
#: with the same SafeConstructor; None when PyYAML was built without libyaml
_FastLoader: Any = (
    type("_FastUniqueKeyLoader", (_UniqueKeys, yaml.CSafeLoader), {})
    if getattr(yaml, "__with_libyaml__", False)
    else None
)


_STR_TAG = "tag:yaml.org,2002:str"
#: the scalar types a plain scalar can resolve to (besides str) that the walk builds with
#: the stock constructor's own functions; "merge" (`<<`) and "value" (`=`) are not here
_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{t}"
                         for t in ("null", "bool", "int", "float", "timestamp"))
_NO_KEY = object()


class _Unusual(Exception):
    """The document needs the full composer and constructor: an anchor or alias, a merge
    key, a duplicate key or one that is not a string, an explicit tag, or more than one
    document."""


def _event_data(loader: Any) -> Any:
    """The value SafeConstructor builds, from libyaml's events without the node tree in
    between, for documents of plain maps, lists and scalars. At 10,000 targets with an
    SLA each (2 MB) the node tree took ~1 s to compose and walk; the events alone take
    ~0.26 s. Raises _Unusual on anything else, and the caller parses the document the
    stock way: one set of rules, the stock composer's and constructor's, for all that
    this walk does not take exactly. Scalars resolve by the loader's own resolver and
    construct with its own functions."""
    get = loader.get_event
    if type(get()) is not yaml.StreamStartEvent:
        raise _Unusual
    event = get()
    if type(event) is yaml.StreamEndEvent:
        return None
    if type(event) is not yaml.DocumentStartEvent:
        raise _Unusual
    resolve = loader.resolve
    constructors = loader.yaml_constructors
    tags: dict[str, str] = {}  # plain scalar -> its resolved tag
    built: dict[tuple[str, str], Any] = {}  # (tag, plain scalar) -> immutable value
    # open collections, innermost last: [the collection, the key awaiting its value]
    stack: list[list[Any]] = []
    root: Any = _NO_KEY
    while True:
        event = get()
        kind = type(event)
        if kind is yaml.ScalarEvent:
            if event.anchor is not None or event.tag not in (None, "!"):
                raise _Unusual
            text = event.value
            tag = _STR_TAG
            if event.implicit[0]:  # plain: the resolver decides (quoted is always str)
                tag = tags.get(text) or tags.setdefault(
                    text, resolve(yaml.ScalarNode, text, event.implicit))
            if tag == _STR_TAG:
                value: Any = text
            elif tag in _SCALAR_TAGS:
                try:
                    value = built[tag, text]
                except KeyError:
                    node = yaml.ScalarNode(tag, text)
                    value = built.setdefault((tag, text), constructors[tag](loader, node))
            else:
                raise _Unusual
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            if event.anchor is not None or event.tag not in (None, "!"):
                raise _Unusual
            value = {} if kind is yaml.MappingStartEvent else []
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            stack.pop()
            if stack:
                continue
            break
        else:  # an alias, or events out of the plain shape
            raise _Unusual
        if not stack:
            root = value
        else:
            top = stack[-1]
            into = top[0]
            if type(into) is list:
                into.append(value)
            elif top[1] is _NO_KEY:  # this is a key
                if kind is not yaml.ScalarEvent or tag != _STR_TAG:
                    raise _Unusual  # merge keys, `=`, non-string keys: the stock rules
                if value in into:
                    raise _Unusual  # the stock path reports it with both lines
                top[1] = value
            else:
                into[top[1]] = value
                top[1] = _NO_KEY
        if kind is not yaml.ScalarEvent:
            stack.append([value, _NO_KEY])
        elif not stack:
            break  # the document is one scalar
    if type(get()) is not yaml.DocumentEndEvent or type(get()) is not yaml.StreamEndEvent:
        raise _Unusual  # more than one document: the stock composer refuses it
    return root


def _fast_load(text: str) -> tuple[Any, bool]:
    """`_event_data` from libyaml's events, else libyaml's composer and the stock
    constructor; and whether the value came through that node tree (`_compact`)."""
    loader = _FastLoader(text)
    try:
        return _event_data(loader), False
    except _Unusual:
        pass
    finally:
        loader.dispose()
    return yaml.load(text, Loader=_FastLoader), True


def _mark(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _load_yaml(text: str) -> tuple[Any, bool]:
    """Parse with libyaml when available. On any error parse again with the pure-Python
    loader, whose messages, line and column numbers are the ones reported (libyaml
    words some problems differently). libyaml accepts a tab as separator where the
    Python loader rejects it: text with a tab takes the Python loader only, so both
    paths accept exactly the same files. Also says whether the value came through a
    node tree (`_compact`)."""
    if _FastLoader is not None and "\t" not in text:
        try:
            return _fast_load(text)
        except (yaml.YAMLError, RecursionError, ValueError):
            pass  # ValueError: e.g. a lone surrogate, which libyaml cannot encode
    return yaml.load(text, Loader=_UniqueKeyLoader), True  # a SafeLoader subclass


def _compact(data: Any) -> Any:
    """The same data in freshly allocated objects (sharing, e.g. YAML aliases, kept).

    Memory: the parser's node tree is freed after construction, but the
    constructed values are spread over the memory pages that tree used, so those
    pages can never be given back: at 10,000 targets the parsed data held ~100 MB
    of RSS for ~16 MB of objects. Dropping it after a pickle round trip frees those
    pages (-45 MB of RSS for the life of the process, ~0.1 s). Data built from the
    events alone is not scattered so: there the round trip added ~9 MB (2 MB file).
    """
    try:
        blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # e.g. too deeply nested: keep the original
        return data
    del data
    return pickle.loads(blob)  # our own bytes, made just above


#: how a '$' can be written in YAML: itself, or escaped in a double-quoted scalar (plain,
#: single-quoted and block scalars have no escapes)
_DOLLARS = ("$", "\\x24", "\\u0024", "\\U00000024")


def dollar_free(text: str) -> bool:
    """True when no string parsed from `text` can hold a '$', so none holds a `${NAME}`
    reference: a scan of the text (~4 ms for 2 MB) instead of a walk of every parsed
    value."""
    return not any(d in text for d in _DOLLARS)


def parse_yaml(text: str, source: str, compact: bool = True) -> dict[str, Any]:
    """The file's top-level mapping, or a ConfigError naming line and column. `compact`:
    copied out of the parser's memory (`_compact`) when it was built from a node tree; a
    child that pickles it to its parent need not."""
    try:
        data, tree = _load_yaml(text)
        if compact and tree:
            data = _compact(data)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context:
            where = f" at {_mark(exc.context_mark)}" if exc.context_mark is not None else ""
            problem = f"{exc.problem} ({exc.context}{where})"
        line = f"{_mark(mark)}: {problem}" if mark is not None else problem
        raise ConfigError([line], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"invalid YAML: {exc}"], source) from None
    except RecursionError:
        raise ConfigError(["config is nested too deeply"], source) from None
    if data is None:
        raise ConfigError(["config is empty"], source)
    if not isinstance(data, dict):
        raise ConfigError(
            [
                "top level must be a mapping of sections (server, logging, scheduler, "
                f"targets, slos), not {kind_of(data)}"
            ],
            source,
        )
    return data


def kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__
