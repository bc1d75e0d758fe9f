"""SLOs: objectives over rolling windows, with burn-rate alert windows."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from slamon.util.durations import format_duration
from slamon.util.schema import (
    Duration,
    Id,
    PathError,
    Problem,
    Strict,
)

MAX_WINDOW = 90 * 86400.0


def alert_window_problems(long: float | None, short: float | None) -> list[Problem]:
    problems: list[Problem] = []
    if long is not None and long > MAX_WINDOW:
        problems.append((("long",), "must be at most 90d"))
    if long is not None and short is not None and short >= long:
        problems.append((("short",), f"must be shorter than long ({format_duration(long)})"))
    return problems


class AlertWindow(Strict):
    """One multiwindow burn-rate pair (SRE workbook ch. 5)."""

    long: Duration
    short: Duration
    burn_rate: float = Field(gt=0)
    severity: Literal["page", "ticket"] = "page"

    @field_validator("long", "short")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @model_validator(mode="after")
    def _order(self) -> AlertWindow:
        problems = alert_window_problems(self.long, self.short)
        if problems:
            raise PathError.many(problems)
        return self


#: the SRE workbook pairs; immutable, so every SLO that uses the defaults shares them
_DEFAULT_ALERT_WINDOWS = (
    AlertWindow(long=3600, short=300, burn_rate=14.4, severity="page"),
    AlertWindow(long=6 * 3600, short=1800, burn_rate=6.0, severity="page"),
    AlertWindow(long=86400, short=7200, burn_rate=3.0, severity="ticket"),
    AlertWindow(long=3 * 86400, short=6 * 3600, burn_rate=1.0, severity="ticket"),
)


def default_alert_windows() -> list[AlertWindow]:
    return list(_DEFAULT_ALERT_WINDOWS)


def slo_problems(
    targets: list[str | None], sli: str | None, has_threshold: bool, window: float | None
) -> list[Problem]:
    """Cross-field checks of one SLO (None = that field is itself invalid)."""
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for j, tid in enumerate(targets):
        if tid is None:
            continue
        if tid in first:
            problems.append(
                (("targets", j), f"target {tid!r} listed twice (also targets[{first[tid]}])")
            )
        else:
            first[tid] = j
    if sli == "latency" and not has_threshold:
        problems.append((("latency_threshold",), "required when sli is latency (e.g. 300ms)"))
    if sli == "availability" and has_threshold:
        problems.append((("latency_threshold",), "only allowed when sli is latency"))
    if window is not None and window > MAX_WINDOW:
        problems.append((("window",), "must be at most 90d"))
    if window is not None and window < 60:
        problems.append((("window",), "must be at least 1m"))
    return problems


def selector_problems(
    has_targets: bool, selector: dict[str, str] | None, slice_: float | None
) -> list[Problem]:
    """An SLO names its targets or selects them by label, one or the other."""
    if selector is None:
        if not has_targets:
            return [(("targets",), "must not be empty: list the SLO's targets, or select them by "
                                   "label with `selector: {team: shop}`")]
        return []
    problems: list[Problem] = []
    if has_targets:
        problems.append((("selector",), "not with `targets`: an SLO lists its targets or "
                                        "selects them by label"))
    if not selector:
        problems.append((("selector",), "must hold at least one label: value"))
    if slice_ is not None:
        problems.append((("slice",), "only for composite SLOs (a selector makes one SLO "
                                     "per target)"))
    return problems


class Slo(Strict):
    id: Id
    #: the targets this SLO is over (several: a composite SLO, good when all are)
    targets: list[Id] = Field(default_factory=list)
    #: instead of `targets`: one SLO per target whose labels hold all of these
    #: (discovered or listed), with the id `<id>:<target id>`
    selector: dict[str, str] | None = None
    objective: float
    sli: Literal["availability", "latency"] = "availability"
    latency_threshold: Duration | None = None
    window: Duration = 30 * 86400.0
    alert_windows: list[AlertWindow] = Field(default_factory=default_alert_windows)
    #: composite SLOs: length of a time slice; default = the longest part interval
    slice: Duration | None = None
    description: str = ""

    @field_validator("objective")
    @classmethod
    def _objective(cls, value: float) -> float:
        if 1 < value <= 100:
            # a fixed example: the message must not echo a value (it may come from ${ENV})
            raise ValueError("objective is a ratio: use 0.999 for 99.9%")
        if value == 1:
            raise ValueError("must be less than 1: an objective of 100% leaves no error budget")
        if not 0 < value < 1:
            raise ValueError("must be a ratio between 0 and 1 (exclusive), e.g. 0.999")
        return value

    @field_validator("latency_threshold")
    @classmethod
    def _threshold(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @property
    def windows(self) -> list[float]:
        """Its window and every alert window's two, shortest first, no repeats: the
        windows slamon exports and the generated rules compute."""
        return sorted({self.window, *(aw.long for aw in self.alert_windows),
                       *(aw.short for aw in self.alert_windows)})

    @model_validator(mode="after")
    def _checks(self) -> Slo:
        if "alert_windows" not in self.model_fields_set:
            # the workbook pairs are for a 30d SLO: drop those longer than this SLO's window
            fitting = [aw for aw in self.alert_windows if aw.long <= self.window]
            object.__setattr__(self, "alert_windows", fitting)
        problems = slo_problems(
            list[str | None](self.targets),
            self.sli,
            self.latency_threshold is not None,
            self.window,
        )
        problems += selector_problems(bool(self.targets), self.selector, self.slice)
        if problems:
            raise PathError.many(problems)
        return self
