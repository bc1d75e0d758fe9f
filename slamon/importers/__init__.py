"""Importers: other tools' configs -> slamon config text.

`blackbox` turns a blackbox_exporter module file and the Prometheus scrape jobs
that use it into slamon targets; `openslo` turns OpenSLO v1 SLO/SLI documents
into slamon SLOs and SLAs. Both are pure (text in, text out, no sockets): the
output is YAML with a `#` comment for every input option slamon has no
equivalent for, and it passes `parse_config`. Mistakes in the input raise
`InputError`, one `file: path: message` line per problem.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from slamon.util.schema import Loc, format_path

__all__ = ["InputError", "comment", "dump_item", "escape_env", "inline", "load_documents",
           "unique_id", "where"]


class InputError(Exception):
    """The input cannot be imported; `problems` holds one `file: path: message` per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def where(source: str, loc: Loc) -> str:
    """`blackbox.yml: modules.http_2xx.http.method` (the file alone for an empty path)."""
    path = format_path(loc)
    return f"{source}: {path}" if path else source


def load_documents(text: str, source: str) -> list[Any]:
    """Every YAML document of `text`; a syntax error becomes an InputError naming the line."""
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise InputError([f"{source}: {at}{exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise InputError([f"{source}: {exc}"]) from None


def escape_env(value: Any) -> Any:
    """slamon replaces `${NAME}` in string values: an imported literal `${` must stay one."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, list):
        return [escape_env(v) for v in value]
    if isinstance(value, dict):
        return {k: escape_env(v) for k, v in value.items()}
    return value


def inline(value: Any) -> str:
    """One line of YAML flow text for a comment (line breaks shown as \\n)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True,
                          width=float("inf"), sort_keys=False)
    text = text.strip()
    if text.endswith("\n..."):
        text = text[:-4].strip()
    if text.endswith("..."):
        text = text[:-3].strip()
    return text.replace("\n", "\\n")


def comment(text: str, indent: int = 0) -> str:
    """`text` as a YAML comment line; a line break inside cannot end the comment."""
    return " " * indent + "# " + text.replace("\r", "\\r").replace("\n", "\\n")


class _Dumper(yaml.SafeDumper):
    """Text with a line break or tab is written double-quoted, so it stays on one line."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(c in value for c in "\n\r\t") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_item(data: dict[str, Any], indent: int) -> list[str]:
    """`data` as one block-style YAML list item at `indent` spaces."""
    body = yaml.dump(escape_env(data), Dumper=_Dumper, default_flow_style=False,
                     allow_unicode=True, width=float("inf"), sort_keys=False)
    lines = body.rstrip("\n").split("\n")
    pad = " " * indent
    return [pad + "- " + lines[0]] + [pad + "  " + line for line in lines[1:]]


_NOT_ID = re.compile(r"[^A-Za-z0-9_.:-]+")


def unique_id(text: str, used: set[str]) -> str:
    """A slamon id made from `text`, not in `used` (which it is added to)."""
    base = _NOT_ID.sub("-", text).strip("-_.:")[:120] or "item"
    if not base[0].isalnum():
        base = "t" + base
    candidate, n = base, 2
    while candidate in used:
        candidate = f"{base}-{n}"
        n += 1
    used.add(candidate)
    return candidate
