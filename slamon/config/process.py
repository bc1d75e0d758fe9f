"""Process settings: listener, logging, scheduler, shard and state file."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from slamon.config.auth import ApiAuth
from slamon.util.schema import (
    Duration,
    PathError,
    Strict,
    check_listen,
    check_url,
    split_listen,
)


class ServerConfig(Strict):
    listen: str = "127.0.0.1:9115"
    #: the address people and Alertmanager reach slamon at (behind a proxy, a DNS
    #: name): the base of the alerts' runbook links. Default: http://<listen>
    external_url: str | None = None
    #: credentials for the API (and optionally /metrics) on this listener
    auth: ApiAuth | None = None

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            check_url(value)
        except ValueError:
            raise ValueError(
                "must be an absolute http(s) URL, e.g. https://slamon.example.com") from None
        parts = urlsplit(value)
        if parts.query or parts.fragment:
            raise ValueError("must have no ?query or #fragment")
        return value.rstrip("/")

    @property
    def base_url(self) -> str:
        """Where slamon's own pages are reached: `external_url`, else http://<listen>."""
        return self.external_url or f"http://{self.listen}"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return check_listen(value)

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


class MetricsConfig(Strict):
    #: also expose `slamon_sli_ratio` and `slamon_burn_rate` for every SLO and
    #: window. Off by default: both are good/valid arithmetic that the rules from
    #: `slamon rules` record in Prometheus (`slamon:slo_error_ratio`,
    #: `slamon:slo_burn_rate`), and they were 16 of a target's 47 lines per scrape
    window_ratios: bool = False
    #: also expose `slamon_sli_good_events` and `slamon_sli_valid_events` for every
    #: SLO and window (16 lines per SLO with the default alert windows). Off by
    #: default: slamon exposes two counters per SLO (`slamon_sli_good_total`,
    #: `slamon_sli_valid_total`) and the rules from `slamon rules` compute the
    #: windows from them in Prometheus, as Sloth does; on, the rules read the
    #: exact window counts instead
    window_series: bool = False
    #: gzip /metrics when the scraper asks for it (`Accept-Encoding: gzip`, which
    #: Prometheus sends), as the Go and Python client libraries do: at 10,000 targets
    #: ~10 MB a scrape becomes ~1.1 MB for ~3 ms of CPU a MB. Off: always plain text
    gzip: bool = True


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


#: the largest slot `auto` picks: the one of a fleet of up to 400 probes a second
DEFAULT_SLOT = 0.05


class SchedulerConfig(Strict):
    #: probes in flight at once, across all targets
    max_concurrency: int = Field(default=1000, ge=1, le=100_000)
    #: spread first probes over each target's interval by a stable hash of its id
    spread: bool = True
    #: phases fall on this grid: the targets whose phases share a slot start together,
    #: in one wake-up of the loop (0: every target on its own phase). None (`auto`):
    #: by the probes a second, `slamon.scheduler.auto_slot`
    slot: Duration | None = None

    @field_validator("slot", mode="before")
    @classmethod
    def _auto(cls, value: Any) -> Any:
        return None if value == "auto" else value

    @field_validator("slot")
    @classmethod
    def _slot(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError("must be auto, or from 0s (off) to 1s, the shortest interval")
        return value


class ShardConfig(Strict):
    """Scale-out: this instance probes only its share of the targets (stable hash)."""

    index: int = Field(default=0, ge=0)
    count: int = Field(default=1, ge=1, le=1024)

    @model_validator(mode="after")
    def _range(self) -> ShardConfig:
        if self.index >= self.count:
            raise PathError(("index",), f"must be below count ({self.count})")
        return self


class StateBackendError(Exception):
    """A command that reads the SQLite state file was run against another backend."""


#: latency cell bounds every target's events keep by default, in seconds (the upper
#: part of Prometheus' default histogram buckets)
DEFAULT_LATENCY_BOUNDS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StateConfig(Strict):
    """Durable state: a SQLite file (default; suits systemd's StateDirectory=) or a
    PostgreSQL database shared by several instances."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    #: sqlite: default $STATE_DIRECTORY/slamon.sqlite3 (systemd), else ./state/slamon.sqlite3
    path: str | None = None
    #: postgres: a libpq connection string or URI (it holds a password: use ${ENV} or
    #: dsn_file, never a literal in a shared config)
    dsn: str | None = None
    dsn_file: str | None = None
    #: postgres: this instance's name in the shared database; each running instance
    #: needs its own (default: shard-<index> with shard.count > 1, else "default")
    instance: str | None = Field(default=None, min_length=1, max_length=100)
    #: how often pending results are written (one transaction per flush)
    flush_interval: Duration = 1.0
    #: how often SLO windows are snapshotted (the journal covers the time between)
    snapshot_interval: Duration = 60.0
    #: how long evidence leaves of closed periods are kept
    evidence_retention: Duration = 400 * 86400.0
    #: latency cells of every target's events, next to the SLOs' thresholds: a
    #: threshold edited to one of them recounts the history exactly; each cell a
    #: target's latencies spread over costs a ring of memory (1.96 or 3.9 KB)
    latency_bounds: tuple[Duration, ...] = DEFAULT_LATENCY_BOUNDS

    @field_validator("flush_interval")
    @classmethod
    def _flush(cls, value: float) -> float:
        if not 0.05 <= value <= 60:
            raise ValueError("must be between 50ms and 1m")
        return value

    @field_validator("snapshot_interval")
    @classmethod
    def _snap(cls, value: float) -> float:
        if not 1 <= value <= 3600:
            raise ValueError("must be between 1s and 1h")
        return value

    @field_validator("latency_bounds")
    @classmethod
    def _bounds(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) > 32:
            raise ValueError("at most 32 bounds")
        if any(b <= 0 for b in value):
            raise ValueError("every bound must be positive")
        if any(a >= b for a, b in itertools.pairwise(value)):
            raise ValueError("bounds must be strictly increasing, e.g. [100ms, 250ms, 1s]")
        return value

    @model_validator(mode="after")
    def _backend(self) -> StateConfig:
        if self.backend == "postgres":
            if self.path is not None:
                raise PathError(("path",), "is for backend sqlite; backend postgres uses dsn")
            if (self.dsn is None) == (self.dsn_file is None):
                raise PathError(("dsn",), "backend postgres needs exactly one of dsn, dsn_file")
        else:
            for name in ("dsn", "dsn_file", "instance"):
                if getattr(self, name) is not None:
                    raise PathError((name,), "is for backend postgres (backend is sqlite)")
        return self

    def instance_name(self, shard: ShardConfig) -> str:
        if self.instance is not None:
            return self.instance
        return f"shard-{shard.index}" if shard.count > 1 else "default"

    def resolved_path(self, environ: Mapping[str, str] | None = None) -> Path:
        if self.backend != "sqlite":
            raise StateBackendError(
                "this command reads the SQLite state file, and state.backend is "
                f"{self.backend}: query the database instead")
        env = os.environ if environ is None else environ
        if self.path:
            return Path(self.path).expanduser()
        state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
        if state_dir:
            return Path(state_dir) / "slamon.sqlite3"
        return Path("state") / "slamon.sqlite3"
