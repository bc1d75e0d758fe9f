"""The whole config: every section, and the checks across sections."""

from __future__ import annotations

from pydantic import (
    Field,
    model_validator,
)

from slamon.config.discovery import Discovery
from slamon.config.maintenance import MaintenanceWindow
from slamon.config.notify import NotifyConfig
from slamon.config.oracle import OracleConfig
from slamon.config.process import (
    LoggingConfig,
    MetricsConfig,
    SchedulerConfig,
    ServerConfig,
    ShardConfig,
    StateConfig,
)
from slamon.config.sla import Sla
from slamon.config.slo import Slo
from slamon.config.status_page import StatusPageConfig
from slamon.config.targets import Target
from slamon.util.durations import format_duration
from slamon.util.schema import (
    PathError,
    Problem,
    Strict,
    did_you_mean,
    split_listen,
)


def reference_problems(
    targets: list[tuple[str | None, float | None]],
    slos: list[tuple[str | None, list[str | None], float | None]],
    targets_complete: bool = True,
) -> list[Problem]:
    """Checks across sections. Pure, shared with the loader's raw pass.

    `targets`: (id, interval) per target, None where unknown/invalid;
    `slos`: (id, target ids, slice) per SLO. With `targets_complete` False
    (some target entry is unreadable) unknown references are not reported.
    """
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    intervals: dict[str, float | None] = {}
    for i, (tid, interval) in enumerate(targets):
        if tid is None:
            continue
        if tid in seen:
            problems.append(
                (("targets", i, "id"), f"duplicate id {tid!r} (also targets[{seen[tid]}])")
            )
        else:
            seen[tid] = i
            intervals[tid] = interval
    slo_seen: dict[str, int] = {}
    for i, (sid, refs, slice_) in enumerate(slos):
        if sid is not None:
            if sid in slo_seen:
                problems.append(
                    (("slos", i, "id"), f"duplicate id {sid!r} (also slos[{slo_seen[sid]}])")
                )
            else:
                slo_seen[sid] = i
        unknown = False
        for j, tid in enumerate(refs):
            if tid is None:
                unknown = True
            elif tid not in seen:
                unknown = True
                if targets_complete:
                    problems.append((("slos", i, "targets", j), _unknown_target(tid, seen)))
        if slice_ is not None and refs and not unknown:
            known = [intervals[t] for t in refs if t is not None]
            if all(v is not None for v in known):
                longest = max(v for v in known if v is not None)
                if slice_ < longest:
                    problems.append(
                        (
                            ("slos", i, "slice"),
                            "must be at least the longest part interval "
                            f"({format_duration(longest)})",
                        )
                    )
    return problems


def _unknown_target(tid: str, known: dict[str, int]) -> str:
    message = f"unknown target {tid!r}"
    close = did_you_mean(tid, known)
    if close:
        message += f"; did you mean {close!r}?"
    elif not known:
        message += " (no targets are defined)"
    return message


def sla_problems(
    slas: list[Sla],
    slos: list[Slo],
    targets: list[Target],
    maintenance: list[MaintenanceWindow],
) -> list[Problem]:
    """References from `slas` and `maintenance` to SLOs, targets and each other."""
    problems: list[Problem] = []
    slo_by_id = {s.id: s for s in slos}
    target_by_id = {t.id: t for t in targets}
    seen: dict[str, int] = {}
    onchain: dict[bytes, int] = {}
    for i, sla in enumerate(slas):
        if sla.id in seen:
            problems.append(
                (("slas", i, "id"), f"duplicate id {sla.id!r} (also slas[{seen[sla.id]}])")
            )
        else:
            seen[sla.id] = i
        slo = slo_by_id.get(sla.slo)
        if slo is None:
            message = f"unknown SLO {sla.slo!r}"
            close = did_you_mean(sla.slo, slo_by_id)
            if close:
                message += f"; did you mean {close!r}?"
            problems.append((("slas", i, "slo"), message))
            continue
        if slo.selector is not None:
            problems.append((("slas", i, "slo"), f"SLO {sla.slo!r} selects its targets by "
                             "label: an SLA needs an SLO over listed targets"))
            continue
        key = sla.onchain_id_bytes
        if key in onchain:
            problems.append(
                (("slas", i, "onchain_id"), f"same on-chain id as slas[{onchain[key]}]")
            )
        else:
            onchain[key] = i
        parts = [target_by_id[t] for t in slo.targets if t in target_by_id]
        if len(parts) > 1:
            longest = max(t.interval for t in parts)
            if sla.resolution_s < longest:
                problems.append(
                    (
                        ("slas", i, "evidence_resolution"),
                        "a composite SLA needs buckets at least as long as the longest part "
                        f"interval ({format_duration(longest)}), or most buckets lack a probe",
                    )
                )
    for i, window in enumerate(maintenance):
        for j, tid in enumerate(window.targets):
            if tid not in target_by_id:
                problems.append((("maintenance", i, "targets", j), _unknown_target(tid, {
                    t: 0 for t in target_by_id})))
        for j, sid in enumerate(window.slas):
            if sid not in seen:
                problems.append((("maintenance", i, "slas", j), f"unknown SLA {sid!r}"))
    return problems


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    targets: list[Target] = Field(default_factory=list)
    discovery: list[Discovery] = Field(default_factory=list)
    slos: list[Slo] = Field(default_factory=list)
    slas: list[Sla] = Field(default_factory=list)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    state: StateConfig = Field(default_factory=StateConfig)
    oracle: OracleConfig | None = None
    shard: ShardConfig = Field(default_factory=ShardConfig)
    notify: NotifyConfig | None = None
    status_page: StatusPageConfig = Field(default_factory=StatusPageConfig)

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems = reference_problems(
            [(t.id, t.interval) for t in self.targets],
            [(s.id, list[str | None](s.targets), s.slice) for s in self.slos],
        )
        if not problems:
            problems = sla_problems(self.slas, self.slos, self.targets, self.maintenance)
        problems += self._people_problems()
        seen: dict[str, int] = {}
        for i, source in enumerate(self.discovery):
            if source.id in seen:
                problems.append((("discovery", i, "id"),
                                 f"duplicate id {source.id!r} (also discovery[{seen[source.id]}])"))
            seen.setdefault(source.id, i)
        page = self.status_page
        if page.listen is not None and split_listen(page.listen)[1] != 0 \
                and split_listen(page.listen) == split_listen(self.server.listen):
            problems.append((("status_page", "listen"),
                             "is server.listen: leave it out to serve the page there"))
        if not problems and self.oracle is not None and self.oracle.slas is not None:
            known = {s.id for s in self.slas}
            for j, sid in enumerate(self.oracle.slas):
                if sid not in known:
                    problems.append((("oracle", "slas", j), f"unknown SLA {sid!r}"))
        if self.oracle is not None and self.state.backend != "sqlite" \
                and not self.oracle.outbox:
            # the default outbox is a directory beside the SQLite file
            problems.append((("oracle", "outbox"),
                             f"required with state.backend {self.state.backend} (a "
                             "directory for the signed reports)"))
        if problems:
            raise PathError.many(problems)
        return self

    def _people_problems(self) -> list[Problem]:
        """References from notification routes and the status page."""
        problems: list[Problem] = []
        known = {
            "slos": {s.id for s in self.slos},
            "slas": {s.id for s in self.slas},
            "targets": {t.id for t in self.targets},
        }
        names = {"slos": "SLO", "slas": "SLA", "targets": "target"}
        if self.notify is not None:
            for i, route in enumerate(self.notify.routes):
                for field_name, ids in known.items():
                    for j, ref in enumerate(getattr(route, field_name)):
                        if ref not in ids:
                            problems.append((("notify", "routes", i, field_name, j),
                                             f"unknown {names[field_name]} {ref!r}"))
        for j, ref in enumerate(self.status_page.public_slos or []):
            if ref not in known["slos"]:
                problems.append((("status_page", "public_slos", j), f"unknown SLO {ref!r}"))
        return problems

    def target(self, target_id: str) -> Target:
        for t in self.targets:
            if t.id == target_id:
                return t
        raise KeyError(target_id)
