"""Config models for maintenance windows (once, weekly, cron).

The arithmetic (when a window is active) lives in slamon.sla.maintenance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from slamon.config.sla import Day, Instant, Timezone, WindowDuration
from slamon.util.schema import Id, PathError, Strict
from slamon.wallclock import parse_cron, parse_hhmm


class OnceWindow(Strict):
    start: Instant
    end: Instant

    @model_validator(mode="after")
    def _order(self) -> OnceWindow:
        if self.end <= self.start:
            raise PathError(("end",), "must be after start")
        return self


class WeeklyWindow(Strict):
    days: list[Day] = Field(min_length=1)
    #: local start time HH:MM
    start: str
    duration: WindowDuration
    timezone: Timezone = "UTC"

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        parse_hhmm(value)
        return value


class CronWindow(Strict):
    #: 5-field cron expression (minute hour day-of-month month day-of-week), local time
    schedule: str
    duration: WindowDuration
    timezone: Timezone = "UTC"

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parse_cron(value)
        return value


class MaintenanceWindow(Strict):
    """A declared maintenance window; scope lists are ANDed, an empty list = all."""

    id: Id | None = None
    kind: Literal["once", "weekly", "cron"]
    once: OnceWindow | None = None
    weekly: WeeklyWindow | None = None
    cron: CronWindow | None = None
    #: targets it applies to (empty = every target)
    targets: list[Id] = Field(default_factory=list)
    #: SLAs it applies to (empty = every SLA)
    slas: list[Id] = Field(default_factory=list)
    description: str = ""

    @model_validator(mode="after")
    def _sections(self) -> MaintenanceWindow:
        present = {n for n in ("once", "weekly", "cron") if getattr(self, n) is not None}
        if self.kind not in present:
            raise PathError((self.kind,), f"section required for kind {self.kind!r}")
        for other in sorted(present - {self.kind}):
            raise PathError((other,), f"not allowed for kind {self.kind!r}")
        return self
