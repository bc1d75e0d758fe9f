"""Relayer API over the outbox (read-only, no chain access).

- ``GET /api/v1/attestations[?sla=ID&since_period=N&limit=L]``: JSON list of signed reports,
  sorted by (sla, periodId, signer); ``since_period`` is the contract's period id.
- ``GET /api/v1/attestations/{sla}/{period}``: every signer's report for one period; 404
  when there is none.

Each entry is :meth:`SignedReport.to_json_dict` (``version, chainId, contract, signer,
digest, signature, report``) plus ``sla`` (the slamon SLA id) and ``domain`` (the full
EIP-712 domain, ready for ``eth_signTypedData_v4`` / ethers' ``verifyTypedData``). Only
reports for the configured domain (``oracle.chain_id`` + ``oracle.contract``) are served.
Errors are JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web
from eth_utils.address import to_checksum_address

from slamon.chain.eip712 import domain_data
from slamon.config.oracle import OracleConfig
from slamon.oracle.outbox import Outbox, OutboxEntry

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "add_routes", "entry_json"]

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
_SLA_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_UINT_RE = re.compile(r"0|[1-9][0-9]{0,18}")


def entry_json(entry: OutboxEntry) -> dict[str, Any]:
    """One API entry: the signed report JSON plus ``sla`` and the EIP-712 ``domain``."""
    doc = entry.signed.to_json_dict()
    doc["sla"] = entry.sla
    doc["domain"] = domain_data(entry.signed.chain_id, entry.signed.contract)
    return doc


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _uint(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not _UINT_RE.fullmatch(value):
        raise ValueError(f"{name} must be a non-negative integer")
    return int(value)


def add_routes(app: web.Application, outbox: Outbox, config: OracleConfig) -> None:
    """Register the attestation routes on ``app`` (before it starts)."""
    chain_id = config.chain_id
    contract = to_checksum_address(config.contract)

    def ours(entry: OutboxEntry) -> bool:
        return entry.signed.chain_id == chain_id and entry.signed.contract == contract

    async def list_attestations(request: web.Request) -> web.Response:
        q = request.query
        sla = q.get("sla")
        if sla is not None and not _SLA_RE.fullmatch(sla):
            return _error(400, "sla must be an SLA id")
        try:
            since = _uint(q.get("since_period"), "since_period")
            limit = _uint(q.get("limit"), "limit")
        except ValueError as exc:
            return _error(400, str(exc))
        limit = DEFAULT_LIMIT if limit is None else limit
        if not 1 <= limit <= MAX_LIMIT:
            return _error(400, f"limit must be between 1 and {MAX_LIMIT}")
        entries = await asyncio.to_thread(outbox.entries, sla, since_period=since)
        body = [entry_json(e) for e in entries if ours(e)][:limit]
        return web.json_response(body)

    async def period_attestations(request: web.Request) -> web.Response:
        sla = request.match_info["sla"]
        if not _SLA_RE.fullmatch(sla):
            return _error(400, "sla must be an SLA id")
        try:
            period = _uint(request.match_info["period"], "period")
        except ValueError as exc:
            return _error(400, str(exc))
        entries = await asyncio.to_thread(outbox.entries, sla, period=period)
        body = [entry_json(e) for e in entries if ours(e)]
        if not body:
            return _error(404, f"no attestation for sla {sla!r} period {period}")
        return web.json_response(body)

    app.router.add_get("/api/v1/attestations", list_attestations)
    app.router.add_get("/api/v1/attestations/{sla}/{period}", period_attestations)
