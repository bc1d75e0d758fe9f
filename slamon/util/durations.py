"""Parsing of human durations and sizes used in config ("30s", "1h30m", "1MiB")."""

from __future__ import annotations

import re
from functools import lru_cache

_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}


def parse_duration(value: object) -> float:
    """Return seconds for "30s", "1h30m", "500ms" or a bare number of seconds.

    Raises ValueError with a message fit for a config error.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 1h, got a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("duration must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got {type(value).__name__}")
    return _seconds_of(value)


@lru_cache(maxsize=1024)
def _seconds_of(value: str) -> float:
    """`parse_duration` of a text: a config writes the same few durations on thousands of
    targets (two each: ~0.06 s of a start at 10,000 targets, parsed one by one)."""
    text = value.strip()
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"invalid duration {value!r}: use a number with a unit "
            "(ms, s, m, h, d, w), e.g. 30s or 1h30m"
        )
    return total


def format_duration(seconds: float) -> str:
    """Shortest exact rendering: 90 -> "1m30s", 0.5 -> "500ms"."""
    if seconds == 0:
        return "0s"
    ms = round(seconds * 1000)
    if ms % 1000:
        if ms >= 1000:
            return f"{seconds:g}s"
        return f"{ms}ms"
    rest = ms // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def parse_size(value: object) -> int:
    """Return bytes for 1048576, "1MiB", "512KB"."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 1MiB, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("size must not be negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size like 1MiB, got {type(value).__name__}")
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"invalid size {value!r}: use bytes or a unit (KB, KiB, MB, MiB, GB, GiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def format_size(n: int) -> str:
    """Bytes in the largest binary unit that divides them: 1048576 -> "1MiB"."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"
