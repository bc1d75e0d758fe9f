"""No accepted-and-ignored config keys: every field of every config model is read
somewhere in slamon's code.

A key that validates but that no code reads is a silent lie to the user (an
option that does nothing). This walks the whole schema from `Config` down
(nested models, unions, lists, mappings) and looks for a read of each field in
the package's source: an attribute access (`.name`), a subscript (`["name"]`)
or a `getattr(..., "name")`. A field's own definition is none of these.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from slamon.config.root import Config

PACKAGE = Path(__file__).resolve().parent.parent / "slamon"


def models(tp: object, seen: set[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    if typing.get_origin(tp) is not None:
        for arg in typing.get_args(tp):
            yield from models(arg, seen)
        return
    if isinstance(tp, type) and issubclass(tp, BaseModel) and tp not in seen:
        seen.add(tp)
        yield tp
        for field in tp.model_fields.values():
            yield from models(field.annotation, seen)


def test_one_value_fields_refuse_the_others() -> None:
    import pytest

    from slamon.config.loader import ConfigError, parse_config

    text = ('targets: [{id: w, kind: http, http: {url: "http://127.0.0.1:9/", '
            "fresh_connection: false}}]\n")
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert any(e.startswith("targets[0].http.fresh_connection: only true is supported")
               for e in exc.value.errors), exc.value.errors


def test_the_walk_reaches_nested_models() -> None:
    names = {m.__name__ for m in models(Config, set())}
    assert {"Config", "Target", "HttpSpec", "TcpSpec", "Slo", "AlertWindow", "Sla",
            "MaintenanceWindow", "Discovery", "FileSd", "HttpSd", "Route"} <= names


#: fields that accept one value only (the others are refused with a reason), so
#: nothing is accepted and ignored although no code needs to read them
ONE_VALUE = {("HttpSpec", "fresh_connection")}


def test_every_config_field_is_read_by_some_code() -> None:
    source = "\n".join(p.read_text() for p in sorted(PACKAGE.rglob("*.py")))
    unread = []
    for model in models(Config, set()):
        for name in model.model_fields:
            if (model.__name__, name) in ONE_VALUE:
                continue
            read = re.compile(rf'\.{name}\b|\["{name}"\]|getattr\([^)]*"{name}"')
            if not read.search(source):
                unread.append(f"{model.__module__}.{model.__name__}.{name}")
    assert unread == [], f"config keys that no code reads: {unread}"
