"""Closed SLA period -> EIP-712 :class:`~slamon.chain.eip712.Report`. Pure: no I/O, no clock.

The contract names an SLA's periods by slamon's own ids (docs/evidence.md, "Periods and
their ids"): its first period, the one starting at ``scheduleStart``, is ``firstPeriodId``
``= period_index(sla.period, scheduleStart)`` (:func:`period_base_for`), so a report's
``periodId`` is the id in slamon's logs, API, status page and evidence.

The contract's consistency rules (docs/contract.md, "Reports and settlement") hold for every
report built here: ``sliPpm <= 1e6``, ``good <= valid``, ``breached == (sliPpm < sloPpm)``,
``issuedAt >= periodEnd``. A period without a verdict (no valid events, or fewer than
``min_valid_samples``) is not reportable: :func:`build_report` returns ``None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slamon.chain.eip712 import PPM, Report
from slamon.sla.periods import period_bounds, period_index
from slamon.sla.result import PeriodResult
from slamon.store.sqlite import ClosedPeriod

if TYPE_CHECKING:
    from slamon.config.sla import Sla
    from slamon.config.slo import Slo

__all__ = ["ReportBuildError", "build_report", "period_base_for"]


class ReportBuildError(ValueError):
    """A closed period cannot be turned into a report the contract would accept."""


def period_base_for(sla: Sla, schedule_start: int) -> int:
    """slamon period id of the contract's first period (which starts at ``schedule_start``).

    ``schedule_start`` must be the start of one of the SLA's periods, otherwise no report
    could match the contract's stored boundaries.
    """
    base = period_index(sla.period, schedule_start)
    start, _ = period_bounds(sla.period, base)
    if start != schedule_start:
        raise ReportBuildError(
            f"sla {sla.id!r}: the contract's scheduleStart {schedule_start} is not a period "
            f"boundary of this SLA (the period containing it, {base}, starts at {start})"
        )
    return base


def _fields(closed: ClosedPeriod | PeriodResult) -> dict[str, Any]:
    if isinstance(closed, PeriodResult):
        return {
            "sla": closed.sla_id,
            "period": closed.period_id,
            "start": closed.start,
            "end": closed.end,
            "sli_ppm": closed.sli_ppm,
            "good": closed.good,
            "valid": closed.valid,
            "no_data": closed.no_data,
            "root": closed.evidence_root,
            "digest": None,
        }
    r = closed.result
    try:
        root = closed.root
        if r.get("evidence_root") not in (None, "0x" + root.hex()):
            raise ReportBuildError(
                f"closed period {closed.sla}/{closed.period}: stored root and result disagree"
            )
        return {
            "sla": closed.sla,
            "period": closed.period,
            "start": closed.start,
            "end": closed.end,
            "sli_ppm": r["sli_ppm"],
            "good": int(r["good"]),
            "valid": int(r["valid"]),
            "no_data": int(r["no_data"]),
            "root": root,
            "digest": closed.policy_digest,
        }
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ReportBuildError):
            raise
        raise ReportBuildError(
            f"closed period {closed.sla}/{closed.period}: malformed stored result ({exc!r})"
        ) from None


def build_report(
    sla: Sla,
    slo: Slo,
    closed: ClosedPeriod | PeriodResult,
    *,
    period_base: int,
    policy_digest: bytes,
    issued_at: int,
    sla_id: bytes | None = None,
) -> Report | None:
    """The report for one closed period, or ``None`` when the period has no verdict.

    ``policy_digest`` is the SLA's digest (``policy_digest_for(sla, slo)``; it must equal
    the contract's). For a :class:`ClosedPeriod` the digest stored at close time must equal
    it: a period measured under another policy is never signed under this one.
    ``issued_at`` is raised to ``periodEnd`` if earlier (the contract requires it).
    Raises :class:`ReportBuildError` for an inconsistent input.
    """
    f = _fields(closed)
    if f["sla"] != sla.id:
        raise ReportBuildError(f"closed period is for sla {f['sla']!r}, not {sla.id!r}")
    if f["digest"] is not None and bytes(f["digest"]) != bytes(policy_digest):
        raise ReportBuildError(
            f"sla {sla.id!r} period {f['period']}: it was closed under policy digest "
            f"0x{bytes(f['digest']).hex()}, not the current 0x{bytes(policy_digest).hex()} "
            "(the SLA's policy changed since): not signing it"
        )
    sli = f["sli_ppm"]
    if sli is None:
        return None  # insufficient data: no verdict, nothing to attest
    period_id = int(f["period"])
    if period_id < period_base:
        raise ReportBuildError(
            f"sla {sla.id!r} period {f['period']} is before the contract's first period "
            f"{period_base}"
        )
    good, valid = f["good"], f["valid"]
    if not (0 <= good <= valid) or valid == 0 or not 0 <= int(sli) <= PPM:
        raise ReportBuildError(
            f"sla {sla.id!r} period {f['period']}: inconsistent counts good={good} "
            f"valid={valid} sli_ppm={sli}"
        )
    slo_ppm = sla.objective_ppm(slo.objective)
    sli_ppm = int(sli)
    end = int(f["end"])
    try:
        return Report(
            sla_id=sla.onchain_id_bytes if sla_id is None else sla_id,
            period_id=period_id,
            period_start=int(f["start"]),
            period_end=end,
            sli_ppm=sli_ppm,
            slo_ppm=slo_ppm,
            good=int(good),
            valid=int(valid),
            no_data=int(f["no_data"]),
            breached=sli_ppm < slo_ppm,
            evidence_root=bytes(f["root"]),
            policy_digest=bytes(policy_digest),
            issued_at=max(int(issued_at), end),
        )
    except ValueError as exc:
        raise ReportBuildError(f"sla {sla.id!r} period {f['period']}: {exc}") from None
