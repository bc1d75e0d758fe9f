"""Check the SLA registered on-chain against this daemon's config before signing.

A daemon that signs a report for an SLA whose on-chain terms differ from its config
(another provider, another schedule or objective, another policy) would attest to a
verdict measured under rules nobody agreed to; one whose key is not a signer would
only burn gas. So the on-chain SLA (``getSLA``) is compared field by field and an SLA
with any mismatch is not signed. Pure: the caller fetches the view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slamon.config.oracle import OracleConfig
from slamon.config.sla import Sla
from slamon.config.slo import Slo
from slamon.oracle.builder import ReportBuildError, period_base_for

#: indices in the SLAView tuple returned by getSLA (contracts/SLACompensation.sol)
_PROVIDER, _OBJECTIVE, _START, _LENGTH = 0, 3, 4, 5
_SETTLEMENT_WINDOW, _QUORUM, _SIGNERS, _MIN_SAMPLES, _POLICY = 7, 8, 9, 10, 11
_SINGLE_ORACLE, _SIGNER_SET_VERSION, _FIRST_PERIOD = 19, 20, 21


class OracleStartError(Exception):
    """The oracle cannot start; the message is for the user (no secrets in it)."""


@dataclass(frozen=True)
class Mismatch:
    field: str
    onchain: str
    config: str


@dataclass(frozen=True)
class OnchainSla:
    """What the daemon keeps of the on-chain SLA (shown on the API and status page)."""

    schedule_start: int
    period_length: int
    settlement_window: int
    quorum: int
    signers: tuple[str, ...]
    single_oracle: bool
    policy_digest: bytes
    #: the first period's id (slamon's); a rotation bumps the signer-set version
    first_period_id: int = 0
    signer_set_version: int = 0


def parse_view(view: Sequence[Any]) -> OnchainSla:
    return OnchainSla(
        schedule_start=int(view[_START]),
        period_length=int(view[_LENGTH]),
        settlement_window=int(view[_SETTLEMENT_WINDOW]),
        quorum=int(view[_QUORUM]),
        signers=tuple(str(s) for s in view[_SIGNERS]),
        single_oracle=bool(view[_SINGLE_ORACLE]),
        policy_digest=bytes(view[_POLICY]),
        first_period_id=int(view[_FIRST_PERIOD]),
        signer_set_version=int(view[_SIGNER_SET_VERSION]),
    )


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def check_onchain_sla(
    view: Sequence[Any],
    *,
    sla: Sla,
    slo: Slo,
    cfg: OracleConfig,
    signer: str,
    policy_digest: bytes,
) -> list[Mismatch]:
    """Every field in which the on-chain SLA differs from the config (empty: all agree)."""
    out: list[Mismatch] = []
    onchain = parse_view(view)
    provider = str(view[_PROVIDER])
    if cfg.provider is not None and provider.lower() != cfg.provider.lower():
        out.append(Mismatch("provider", provider, cfg.provider))
    if signer.lower() not in {s.lower() for s in onchain.signers}:
        out.append(Mismatch("signer", ",".join(onchain.signers), signer))
    if onchain.policy_digest != bytes(policy_digest):
        out.append(Mismatch("policy_digest", _hex(onchain.policy_digest), _hex(policy_digest)))
    objective = sla.objective_ppm(slo.objective)
    if int(view[_OBJECTIVE]) != objective:
        out.append(Mismatch("objective_ppm", str(int(view[_OBJECTIVE])), str(objective)))
    min_samples = max(1, sla.min_valid_samples)
    if int(view[_MIN_SAMPLES]) != min_samples:
        out.append(Mismatch("min_samples", str(int(view[_MIN_SAMPLES])), str(min_samples)))
    # the schedule: the contract's first period must start on one of this SLA's period
    # boundaries, have the same length (fixed periods; calendar ones store boundaries,
    # length 0) and equal oracle.schedule_starts when that is set
    configured_start = cfg.schedule_starts.get(sla.id)
    if configured_start is not None and configured_start != onchain.schedule_start:
        out.append(Mismatch("schedule_start", str(onchain.schedule_start),
                            str(configured_start)))
    try:
        base = period_base_for(sla, onchain.schedule_start)
    except ReportBuildError:
        if configured_start is None or configured_start == onchain.schedule_start:
            out.append(Mismatch("schedule_start", str(onchain.schedule_start),
                                "a period boundary of the configured period"))
    else:
        # one period id everywhere: the contract's ids must be slamon's
        if onchain.first_period_id != base:
            out.append(Mismatch("first_period_id", str(onchain.first_period_id), str(base)))
    expected_length = sla.period.length_s if sla.period.kind == "fixed" else 0
    if onchain.period_length != expected_length:
        out.append(Mismatch("period_length", str(onchain.period_length),
                            str(expected_length)))
    # n >= 3f + 1 with quorum 2f + 1 is enforced by registerSLA; which f is agreed is
    # the config's to say
    if cfg.quorum is not None and onchain.quorum != cfg.quorum:
        out.append(Mismatch("quorum", str(onchain.quorum), str(cfg.quorum)))
    return out
