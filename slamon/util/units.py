"""Parts per million: how SLIs and objectives are stored, and how people and tools see them.

An SLI is kept as an integer ppm (floored, as signed on-chain), so every view
derives from that one integer instead of recomputing good / valid: the API,
the exports, the metrics and the messages then all agree with the signed value.
"""

from __future__ import annotations

from typing import Final, overload

PPM: Final = 1_000_000
#: ppm per percent
_PER_PERCENT: Final = 10_000


@overload
def ppm_to_ratio(ppm: int) -> float: ...


@overload
def ppm_to_ratio(ppm: None) -> None: ...


@overload
def ppm_to_ratio(ppm: int | None) -> float | None: ...


def ppm_to_ratio(ppm: int | None) -> float | None:
    """ppm as a ratio (999_500 -> 0.9995); None (no verdict) stays None."""
    # int(): values read back from stored JSON are typed Any at the call sites
    return None if ppm is None else int(ppm) / PPM


def ratio_to_ppm(ratio: float) -> int:
    """A ratio as whole ppm, rounded to the nearest (0.9995 -> 999_500)."""
    return round(ratio * PPM)


def ppm_percent(ppm: int | None) -> str:
    """ppm as a percentage with 4 decimals, exact for whole ppm (999_500 -> "99.9500%").

    None (no verdict) reads "n/a".
    """
    return "n/a" if ppm is None else f"{int(ppm) / _PER_PERCENT:.4f}%"
