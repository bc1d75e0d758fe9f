"""Config models for SLAs: periods, accounting policies, and the shared time types.

Pure pydantic: wired into `Config` as `slas: list[Sla]`. The arithmetic lives in
slamon.sla (periods, result, policy).
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from slamon.util.durations import format_duration
from slamon.util.keccak import keccak256
from slamon.util.schema import Duration, Id, PathError, Strict
from slamon.util.units import PPM, ratio_to_ppm
from slamon.wallclock import WEEKDAYS, Weekday, zone

#: longest recurring maintenance window; bounds the look-back when enumerating
MAX_MAINTENANCE = 31 * 86400.0


def _check_zone(value: str) -> str:
    zone(value)
    return value


def _weekday(value: Any) -> Any:
    if isinstance(value, str):
        low = value.strip().lower()
        return {d[:3]: d for d in WEEKDAYS}.get(low, low)
    return value


def _check_window_duration(value: float) -> float:
    if value != int(value) or value < 1:
        raise ValueError("must be whole seconds, at least 1s")
    if value > MAX_MAINTENANCE:
        raise ValueError("must be at most 31d")
    return value


#: an IANA zone name, checked when the config loads
Timezone = Annotated[str, AfterValidator(_check_zone)]
#: a weekday, also accepted as a three-letter abbreviation in any case
Day = Annotated[Weekday, BeforeValidator(_weekday)]
#: a recurring maintenance window's length: whole seconds, 1s..31d
WindowDuration = Annotated[Duration, AfterValidator(_check_window_duration)]


def parse_instant(value: Any) -> int:
    """Unix seconds from an int, or an ISO 8601 string/datetime *with* offset.

    Naive times are refused: an SLA boundary must not depend on the host's zone.
    """
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 time with offset or unix seconds")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != int(value):
            raise ValueError("unix time must be whole seconds")
        return int(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"invalid time {value!r}: use ISO 8601 with offset, e.g. 2024-01-01T00:00:00Z"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("time needs a UTC offset (e.g. Z or +01:00)")
        ts = value.timestamp()
        if ts != int(ts):
            raise ValueError("time must be whole seconds")
        return int(ts)
    raise ValueError("expected an ISO 8601 time with offset or unix seconds")


Instant = Annotated[int, BeforeValidator(parse_instant)]


class PeriodSpec(Strict):
    """Which periods an SLA is judged over. See slamon.periods for ids and DST rules."""

    kind: Literal["hourly", "daily", "weekly", "monthly", "fixed"]
    #: IANA zone for calendar periods (not allowed for fixed)
    timezone: Timezone = "UTC"
    week_start: Day = "monday"
    #: fixed periods only: length (whole seconds, >= 1m) and anchor (start of period 0)
    length: Duration | None = None
    anchor: Instant | None = None

    @model_validator(mode="after")
    def _checks(self) -> PeriodSpec:
        is_set = self.model_fields_set
        if self.kind == "fixed":
            if self.length is None:
                raise PathError(("length",), "required for fixed periods")
            if self.length != int(self.length) or self.length < 60:
                raise PathError(("length",), "must be whole seconds and at least 1m")
            if "timezone" in is_set:
                raise PathError(("timezone",), "not allowed for fixed periods (they are absolute)")
        else:
            for name in ("length", "anchor"):
                if name in is_set:
                    raise PathError((name,), "only allowed for fixed periods")
        if "week_start" in is_set and self.kind != "weekly":
            raise PathError(("week_start",), "only allowed for weekly periods")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    @property
    def length_s(self) -> int:
        """Fixed period length in seconds."""
        assert self.length is not None
        return int(self.length)

    @property
    def anchor_s(self) -> int:
        return 0 if self.anchor is None else self.anchor


class AccountingPolicy(Strict):
    """How events that are not plain good/bad probes count. Hashed into policy_digest."""

    #: semantics version; bump when the meaning of any field changes
    version: Literal[1] = 1
    #: probes slamon failed to run: neither good nor bad (exclude), or counted as bad/good
    no_data: Literal["exclude", "bad", "good"] = "exclude"
    #: maintenance windows: excluded from valid events, or counted like any other time
    maintenance: Literal["exclude", "count"] = "count"


_BYTES32_RE = re.compile(r"^0x[0-9a-fA-F]{64}$")


def default_resolution(period: PeriodSpec) -> int:
    """Evidence bucket length for a period kind: fine enough to show an outage,
    coarse enough that a month of 1,000 targets stays a few million leaves."""
    utc = period.timezone in ("UTC", "Etc/UTC")
    if period.kind == "fixed":
        return math.gcd(period.length_s, period.anchor_s, 60)
    return {
        "hourly": 60,
        "daily": 300,
        "weekly": 900,
        "monthly": 3600 if utc else 900,
    }[period.kind]


@lru_cache(maxsize=1 << 16)
def _id_hash(sla_id: str) -> bytes:
    """keccak256(utf8(id)), asked for by validation, each policy digest and each report:
    kept by id rather than on the (frozen, copyable) model so no copy holds a stale one."""
    return keccak256(sla_id.encode("utf-8"))


class Sla(Strict):
    id: Id
    #: the SLO whose targets (and objective, by default) this SLA is judged on
    slo: Id
    period: PeriodSpec
    #: fraction in (0, 1) with at most 6 decimals (it becomes parts per million); None = the SLO's
    objective: float | None = Field(default=None, gt=0, lt=1)
    #: fewer valid events than this in a period gives no verdict ("insufficient data")
    min_valid_samples: int = Field(default=0, ge=0)
    #: a period closes at end + grace, so late probe results still land in it
    grace: Duration = 300.0
    #: bucket length of the evidence leaves (see docs/evidence.md); default by period
    #: kind so a period holds at most a few thousand leaves per target
    evidence_resolution: Duration | None = None
    policy: AccountingPolicy = Field(default_factory=AccountingPolicy)
    #: explicit bytes32 on-chain id (0x + 64 hex); default keccak256(utf8(id))
    onchain_id: str | None = None
    description: str = ""

    @field_validator("objective")
    @classmethod
    def _objective(cls, value: float | None) -> float | None:
        if value is not None and abs(value * PPM - ratio_to_ppm(value)) > 1e-6:
            raise ValueError("at most 6 decimals (it is stored in parts per million)")
        return value

    @field_validator("onchain_id")
    @classmethod
    def _onchain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _BYTES32_RE.match(value):
            raise ValueError("must be 0x followed by 64 hex digits (a bytes32)")
        return value.lower()

    @field_validator("grace")
    @classmethod
    def _grace(cls, value: float) -> float:
        if value > 7 * 86400:
            raise ValueError("must be at most 7d")
        return value

    @model_validator(mode="after")
    def _resolution(self) -> Sla:
        if self.evidence_resolution is None:
            object.__setattr__(self, "evidence_resolution", float(default_resolution(self.period)))
        res = self.evidence_resolution
        assert res is not None
        if res != int(res) or res < 1:
            raise PathError(("evidence_resolution",), "must be whole seconds, at least 1s")
        r = int(res)
        p = self.period
        if p.kind == "fixed":
            if p.length_s % r:
                raise PathError(
                    ("evidence_resolution",),
                    f"must divide the period length ({format_duration(p.length_s)})",
                )
            if p.anchor_s % r:
                raise PathError(("evidence_resolution",), "must divide the anchor (unix seconds)")
        else:
            limit = 3600 if p.timezone in ("UTC", "Etc/UTC") else 900
            if limit % r:
                raise PathError(
                    ("evidence_resolution",),
                    f"must divide {format_duration(limit)}: buckets must not straddle periods",
                )
        return self

    @property
    def exclude_maintenance(self) -> bool:
        """Whether this SLA's contract excludes maintenance from the valid events."""
        return self.policy.maintenance == "exclude"

    @property
    def resolution_s(self) -> int:
        assert self.evidence_resolution is not None  # set by the validator
        return int(self.evidence_resolution)

    @property
    def onchain_id_bytes(self) -> bytes:
        """bytes32 id used on-chain: explicit `onchain_id`, else keccak256(utf8(id))."""
        if self.onchain_id is not None:
            return bytes.fromhex(self.onchain_id[2:])
        return _id_hash(self.id)

    def objective_ppm(self, slo_objective: float | None = None) -> int:
        """Objective in parts per million (this SLA's, else the SLO's)."""
        obj = self.objective if self.objective is not None else slo_objective
        if obj is None:
            raise ValueError(f"sla {self.id!r} has no objective and none was given")
        return ratio_to_ppm(obj)
