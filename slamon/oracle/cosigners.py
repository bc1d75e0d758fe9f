"""Co-signers' reports, relayed with ours in one transaction.

Every report sent on its own pays the transaction's base cost and the contract's cold reads
again: four signers sending four transactions cost about twice what one transaction carrying
the four reports does (docs/benchmarks.md). Like an OCR transmitter, the signer first in turn
fetches the others' signed reports from their ``/api/v1/attestations/{sla}/{period}`` and
sends them together with its own; the others, later in turn, find their report recorded and
send nothing. Nothing is trusted: a relayed report is the co-signer's own EIP-712 signature,
checked here and again by the contract, and a report that would make the transaction revert
costs only the relaying (the publisher falls back to its own report alone).

`admit` is the pure check (no I/O); `fetch` asks the co-signers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence
from typing import Any, Final

import aiohttp
from eth_utils.address import to_checksum_address

from slamon import __version__
from slamon.chain.eip712 import InvalidSignature, SignedReport
from slamon.util.redact import redact_url

#: a co-signer that does not answer within this is skipped for this attempt
FETCH_TIMEOUT: Final = 3.0
#: a larger answer is not an attestation list
MAX_BODY: Final = 256 * 1024

class CosignerError(Exception):
    """A co-signer could not be asked (its URL is redacted in the message)."""


#: fields every signer's report of a period carries alike (the contract checks them)
_SHARED: Final = ("sla_id", "period_id", "period_start", "period_end", "slo_ppm",
                  "policy_digest")


def admit(own: SignedReport, other: SignedReport, signers: Collection[str]) -> str | None:
    """Why ``other`` cannot go on-chain with ``own`` (None: it can). ``signers``: the
    current signer set (checksummed or not). The signature is checked here too."""
    if (other.chain_id, to_checksum_address(other.contract)) != (
            own.chain_id, to_checksum_address(own.contract)):
        return "another chain or contract"
    for name in _SHARED:
        if getattr(other.report, name) != getattr(own.report, name):
            return f"{name} differs from ours"
    signer = to_checksum_address(other.signer)
    if signer == to_checksum_address(own.signer):
        return "our own report"
    if signer.lower() not in {s.lower() for s in signers}:
        return "signer not in the signer set"
    try:
        other.verify()
    except InvalidSignature as exc:
        return f"bad signature: {exc}"
    return None


def parse(body: Any) -> list[SignedReport]:
    """The signed reports of an attestation list (entries that do not parse are dropped)."""
    if not isinstance(body, list):
        raise ValueError("not a JSON list")
    out: list[SignedReport] = []
    for item in body:
        if not isinstance(item, dict):
            continue
        try:
            out.append(SignedReport.from_json_dict(item))
        except (ValueError, KeyError, TypeError, InvalidSignature):
            continue
    return out


async def fetch_one(
    session: aiohttp.ClientSession, base: str, sla: str, period: int
) -> list[SignedReport]:
    """One co-signer's reports for the period: [] when it has none (404). Raises
    ``CosignerError`` (with the URL redacted) on anything else."""
    url = f"{base}/api/v1/attestations/{sla}/{int(period)}"
    try:
        async with session.get(url, allow_redirects=False) as resp:
            if resp.status == 404:
                return []
            if resp.status != 200:
                raise CosignerError(f"{redact_url(base)}: HTTP {resp.status}")
            raw = await resp.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                raise CosignerError(f"{redact_url(base)}: answer over {MAX_BODY} bytes")
            return parse(json.loads(raw))
    except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError, ValueError) as exc:
        raise CosignerError(f"{redact_url(base)}: {type(exc).__name__}") from None


async def fetch(
    session: aiohttp.ClientSession, bases: Sequence[str], sla: str, period: int
) -> tuple[list[SignedReport], list[str]]:
    """Every co-signer's reports for the period, asked at once: (reports, errors)."""
    results = await asyncio.gather(
        *(fetch_one(session, base, sla, period) for base in bases), return_exceptions=True
    )
    reports: list[SignedReport] = []
    errors: list[str] = []
    for result in results:
        if isinstance(result, CosignerError):
            errors.append(str(result))
        elif isinstance(result, BaseException):
            raise result
        else:
            reports.extend(result)
    return reports, errors


def new_session() -> aiohttp.ClientSession:
    """The session the publisher asks co-signers with."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT),
        headers={"User-Agent": f"slamon/{__version__}", "Accept": "application/json"},
    )


__all__ = ["CosignerError", "admit", "fetch", "fetch_one", "new_session", "parse"]
