"""Building blocks of every config model: strict models, typed scalars, path errors.

A leaf module (nothing from slamon but util): config sections and notification
channels both build their models from it, so neither has to import the other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    model_validator,
)

from slamon.util.durations import parse_duration, parse_size

Loc = tuple[str | int, ...]


#: (sub-path, message) pairs, as carried by PathError
Problem = tuple[Loc, str]


def _finite(value: float) -> float:
    if math.isnan(value) or math.isinf(value):
        raise ValueError("must be a finite duration like 30s")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_finite)]


Size = Annotated[int, BeforeValidator(parse_size)]


_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _check_id(value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ValueError(
            f"invalid id {value!r}: use letters, digits and _ . : - (max 128), "
            "starting with a letter or digit"
        )
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Id = Annotated[str, AfterValidator(_check_id)]


Regex = Annotated[str, AfterValidator(_check_regex)]


#: one shared ``__pydantic_fields_set__`` per distinct set of explicitly given fields
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    @model_validator(mode="after")
    def _share_fields_set(self) -> Any:
        # Memory: every instance carries a set of the fields given in the
        # input (216-728 bytes); models are frozen and pydantic copies that set
        # before changing it (model_copy), so instances with the same set share one.
        # pydantic has no public setter for this set (model_fields_set is read-only):
        # the attribute is internal, so pyproject.toml pins pydantic to 2.14.x and
        # tests/test_config.py checks that the sharing still happens.
        mine = self.__pydantic_fields_set__
        shared = _FIELDS_SETS.setdefault(frozenset(mine), mine)
        if shared is not mine:
            object.__setattr__(self, "__pydantic_fields_set__", shared)
        return self


def check_headers(value: dict[str, str]) -> dict[str, str]:
    """HTTP header names and values that cannot smuggle a second header or request."""
    problems: list[Problem] = []
    for name, val in value.items():
        if not HEADER_NAME_RE.fullmatch(name):
            problems.append(((name,), "invalid header name"))
        elif "\r" in val or "\n" in val or "\0" in val:
            problems.append(((name,), "header value contains a line break or NUL"))
    if problems:
        raise PathError.many(problems)
    return value


class PathError(ValueError):
    """A validation error that knows the sub-path(s) it is about.

    pydantic reports validator errors at the validated value's own location; the
    loader appends each item's sub-path so users see e.g. `targets[3].timeout`,
    and reports every item, so one validator can report several problems.
    """

    def __init__(self, subpath: Loc, message: str) -> None:
        super().__init__(message)
        self.subpath = subpath
        self.message = message
        self.items: list[Problem] = [(subpath, message)]

    @classmethod
    def many(cls, items: list[Problem]) -> PathError:
        assert items
        err = cls(items[0][0], items[0][1])
        err.items = list(items)
        if len(items) > 1:
            err.args = (
                "; ".join(f"{format_path(sub)}: {msg}" if sub else msg for sub, msg in items),
            )
        return err


def format_path(loc: Loc) -> str:
    """('targets', 3, 'http', 'url') -> targets[3].http.url"""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            quoted = part.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{quoted}"]'
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` most likely meant: the same in another case, else a close match."""
    import difflib

    options = list(choices)
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered:
        return lowered[word.lower()]
    close = difflib.get_close_matches(word, options, n=1)
    return close[0] if close else None


def check_url(value: str) -> str:
    # never quote the URL in a message: Slack/webhook URLs are credentials
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError("invalid URL: bad port or IPv6 address") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if has_space(value):
        raise ValueError("invalid URL: contains whitespace")
    return value


#: `\s` of a str pattern matches exactly what `str.isspace` calls whitespace; one search
#: is ~5x cheaper than a generator over the characters (every target's URL is checked)
_SPACE = re.compile(r"\s")
_NOT_IN_HOST = re.compile(r"[\s/\[\]]")


def has_space(text: str) -> bool:
    """Whether `text` holds any whitespace (as `str.isspace` has it)."""
    return _SPACE.search(text) is not None


def bad_host(text: str) -> bool:
    """Whether `text` holds what no host name or bare IP address holds: whitespace, a
    slash or a bracket."""
    return _NOT_IN_HOST.search(text) is not None


def check_secret_source(
    value: str | None, file: str | None, name: str, *, required: bool = False
) -> None:
    """A secret comes inline (``${ENV}``) or from a file, never both and never empty."""
    if value is not None and file is not None:
        raise PathError((f"{name}_file",), f"use either {name} or {name}_file, not both")
    if required and value is None and file is None:
        raise PathError((name,), f"set one of {name} or {name}_file")
    if value is not None and not value:
        raise PathError((name,), "must not be empty")


def check_listen(value: str) -> str:
    """`host:port` for a listener; IPv6 in brackets."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9115 or [::1]:9115")
    if not host:
        raise ValueError("host missing: use 0.0.0.0:PORT to listen on all addresses")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError("an IPv6 address must be in brackets, e.g. [::1]:9115")
    if has_space(host) or host in ("[]",):
        raise ValueError("must be host:port, e.g. 127.0.0.1:9115 or [::1]:9115")
    return value


def split_listen(value: str) -> tuple[str, int]:
    """(host, port) of a checked `host:port`; the brackets of IPv6 removed."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)
