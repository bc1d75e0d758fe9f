"""Thin AsyncWeb3 wrapper around the SLACompensation contract, for the publisher.

Everything the publisher asks the chain goes through :class:`ChainClient`, and every failure
comes out as one of three exception types, so the publisher's decisions stay readable:

- :class:`ChainUnavailable`: connection refused, timeout, HTTP or unexpected JSON-RPC error —
  back off and try again; nothing is known about the outcome.
- :class:`ContractRevert`: the contract refused (a custom error, decoded by name from the ABI).
- :class:`TxRejected`: the node refused a raw transaction (``nonce too low``, ``replacement
  underpriced``, ``already known``, ...), with a :attr:`TxRejected.kind` the publisher acts on.

No retries happen here (web3's own retry is switched off): the publisher owns the back-off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import aiohttp
from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import (
    BadResponseFormat,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)

from slamon.chain.artefacts import sla_compensation
from slamon.chain.eip712 import Report
from slamon.util.redact import redact_text

T = TypeVar("T")

#: docs/contract.md, "What a daemon does"
FINAL_ERRORS: Final = frozenset(
    {
        "SettlementWindowClosed",
        "PolicyMismatch",
        "ObjectiveMismatch",
        "PeriodMismatch",
        "TooFewSamples",
        "InconsistentReport",
        "NotSigner",
        # not in the daemon table, but no retry can ever fix them either
        "UnknownSLA",
        "UnknownPeriod",
        "BadSignature",
        "HighS",
        "MixedBatch",
        "DuplicateSigner",
    }
)
SUCCESS_ERRORS: Final = frozenset({"AlreadyReported"})
RETRY_ERRORS: Final = frozenset({"PeriodNotFinished"})

RejectKind = Literal["nonce_too_low", "underpriced", "already_known", "insufficient_funds", "other"]


class ChainError(Exception):
    """Base of the errors raised by :class:`ChainClient`."""


class ChainUnavailable(ChainError):
    """The node could not be reached or answered nonsense: retry later."""


class ContractRevert(ChainError):
    """The contract reverted; ``name`` is the custom error (or ``"unknown"``)."""

    def __init__(self, name: str, args: tuple[Any, ...] = (), data: bytes = b"") -> None:
        super().__init__(f"{name}{args!r}" if args else name)
        self.name = name
        self.error_args = args
        self.data = data


class TxRejected(ChainError):
    """The node refused a raw transaction."""

    def __init__(self, kind: RejectKind, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind: RejectKind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class PeriodState:
    """``getPeriod`` (the fields the publisher needs)."""

    start: int
    end: int
    #: the report deadline (exclusive); a late window's once one opened
    deadline: int
    settled: bool
    report_count: int
    #: past the deadline without a quorum: the contract still takes reports (late window)
    stalled: bool = False


@dataclass(frozen=True, slots=True)
class Head:
    """The latest block: number, timestamp and base fee (wei)."""

    number: int
    timestamp: int
    base_fee: int


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    block_number: int
    block_hash: str
    status: int
    gas_used: int
    effective_gas_price: int
    late: bool  # the receipt carries LateReportsIgnored: the period was already settled


def _reject_kind(message: str) -> RejectKind | None:
    text = message.lower()
    if "nonce too low" in text or "nonce is too low" in text or "oldnonce" in text:
        return "nonce_too_low"
    if "underpriced" in text or "fee too low" in text or "gas price too low" in text:
        return "underpriced"
    if "already known" in text or "already imported" in text or "known transaction" in text:
        return "already_known"
    if "insufficient funds" in text:
        return "insufficient_funds"
    return None


def _rpc_message(exc: Web3RPCError) -> str:
    response = exc.rpc_response
    if isinstance(response, Mapping):
        error = response.get("error")
        if isinstance(error, Mapping):
            return str(error.get("message", exc.message))
    return str(exc.message)


def _hex_data(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return b""
    if isinstance(value, Mapping):
        return _hex_data(value.get("data"))
    return b""


def _forget(inflight: set[asyncio.Future[Any]]) -> Callable[[asyncio.Future[Any]], None]:
    def done(task: asyncio.Future[Any]) -> None:
        inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a call nobody awaits any more fails quietly

    return done


class ChainClient:
    """The SLACompensation contract at ``contract`` behind the JSON-RPC endpoint ``rpc_url``."""

    def __init__(self, rpc_url: str, contract: str, *, timeout: float = 10.0) -> None:
        self.url_for_logs = redact_text(rpc_url)
        provider = AsyncHTTPProvider(
            rpc_url,
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)},
            exception_retry_configuration=None,
        )
        self.w3: AsyncWeb3[Any] = AsyncWeb3(provider)
        self.address = to_checksum_address(contract)
        abi = sla_compensation().abi
        self.contract = self.w3.eth.contract(address=self.address, abi=abi)
        self._errors: dict[bytes, tuple[str, list[str]]] = {}
        late_topic = b""
        for item in abi:
            if item.get("type") == "error":
                types = [str(i["type"]) for i in item.get("inputs", [])]
                sig = f"{item['name']}({','.join(types)})"
                self._errors[bytes(keccak(text=sig)[:4])] = (str(item["name"]), types)
            elif item.get("type") == "event" and item.get("name") == "LateReportsIgnored":
                types = [str(i["type"]) for i in item.get("inputs", [])]
                late_topic = bytes(keccak(text=f"LateReportsIgnored({','.join(types)})"))
        self._late_topic = late_topic
        self._timeout = timeout
        self._inflight: set[asyncio.Future[Any]] = set()

    async def close(self) -> None:
        if self._inflight:  # calls whose caller was cancelled: let them release web3's lock
            await asyncio.wait(set(self._inflight), timeout=self._timeout + 1)
        await self.w3.provider.disconnect()

    # -- error mapping ----------------------------------------------------------------------
    def decode_revert(self, data: bytes) -> ContractRevert:
        """The custom error encoded in revert ``data``."""
        found = self._errors.get(data[:4])
        if found is None:
            return ContractRevert("unknown", (data.hex(),), data)
        name, types = found
        try:
            args = tuple(abi_decode(types, data[4:])) if types else ()
        except Exception:  # malformed arguments: the name is what matters
            args = ()
        return ContractRevert(name, args, data)

    def map_error(self, exc: BaseException) -> BaseException:
        """Translate a web3 / aiohttp exception into a :class:`ChainError` (others unchanged)."""
        if isinstance(exc, ChainError | TransactionNotFound):
            return exc
        if isinstance(exc, ContractLogicError):
            data = _hex_data(exc.data)
            if len(data) >= 4:
                return self.decode_revert(data)
            return ContractRevert("unknown", (redact_text(str(exc.message)),), data)
        if isinstance(exc, Web3RPCError):
            message = redact_text(_rpc_message(exc))
            kind = _reject_kind(message)
            if kind is not None:
                return TxRejected(kind, message)
            return ChainUnavailable(f"RPC error: {message}")
        if isinstance(
            exc,
            aiohttp.ClientError
            | OSError
            | TimeoutError
            | asyncio.TimeoutError
            | ProviderConnectionError
            | BadResponseFormat
            | TimeExhausted,
        ):
            return ChainUnavailable(
                f"{type(exc).__name__}: {redact_text(str(exc)) or 'no detail'}"
            )
        return exc

    async def _guard(self, awaitable: Awaitable[T]) -> T:
        """Run one web3 call; its exceptions come out as ChainError types.

        The call runs in its own task and a cancelled caller leaves it to finish (it is
        bounded by the request timeout): web3's AsyncHTTPProvider takes a process-wide
        threading.Lock through an executor on every request, and a request cancelled
        while that acquire is pending leaves the lock held for ever, so that every later
        RPC call of the process hangs (ethereum/web3.py#3867).
        """
        task = asyncio.ensure_future(awaitable)
        self._inflight.add(task)
        task.add_done_callback(_forget(self._inflight))
        try:
            return await asyncio.shield(task)
        except Exception as exc:
            mapped = self.map_error(exc)
            if mapped is exc:
                raise
            raise mapped from None

    # -- reads ------------------------------------------------------------------------------
    async def chain_id(self) -> int:
        return int(await self._guard(self.w3.eth.chain_id))

    async def head(self) -> Head:
        block = await self._guard(self.w3.eth.get_block("latest"))
        return Head(
            int(block["number"]),
            int(block["timestamp"]),
            int(block.get("baseFeePerGas", 0) or 0),
        )

    async def block_number(self) -> int:
        return int(await self._guard(self.w3.eth.block_number))

    async def nonce(self, address: str, block: Literal["latest", "pending"] = "latest") -> int:
        return int(await self._guard(self.w3.eth.get_transaction_count(address, block)))  # type: ignore[arg-type]

    async def balance(self, address: str) -> int:
        return int(await self._guard(self.w3.eth.get_balance(address)))  # type: ignore[arg-type]

    async def needs_report(self, sla_id: bytes, period_id: int, signer: str) -> bool:
        fn = self.contract.functions.needsReport(sla_id, period_id, signer)
        return bool(await self._guard(fn.call()))

    async def has_reported(self, sla_id: bytes, period_id: int, signer: str) -> bool:
        fn = self.contract.functions.hasReported(sla_id, period_id, signer)
        return bool(await self._guard(fn.call()))

    async def get_sla(self, sla_id: bytes) -> Any:
        """getSLA's view tuple (docs/contract.md); UnknownSLA comes out as ContractRevert."""
        return await self._guard(self.contract.functions.getSLA(sla_id).call())

    async def get_period(self, sla_id: bytes, period_id: int) -> PeriodState:
        fn = self.contract.functions.getPeriod(sla_id, period_id)
        row = await self._guard(fn.call())
        return PeriodState(
            start=int(row[0]),
            end=int(row[1]),
            deadline=int(row[2]),
            settled=bool(row[3]),
            report_count=int(row[7]),
            stalled=bool(row[9]),
        )

    # -- transactions -----------------------------------------------------------------------
    def submit_calldata(self, reports: Sequence[Report], signatures: Sequence[bytes]) -> bytes:
        """ABI-encoded ``submitReports(reports, signatures)``."""
        data = self.contract.encode_abi(
            "submitReports", args=[[r.as_tuple() for r in reports], list(signatures)]
        )
        return bytes.fromhex(str(data).removeprefix("0x"))

    def settle_calldata(self, sla_id: bytes, period_id: int) -> bytes:
        """ABI-encoded ``settle(slaId, periodId)``."""
        data = self.contract.encode_abi("settle", args=[sla_id, period_id])
        return bytes.fromhex(str(data).removeprefix("0x"))

    async def estimate_gas(self, sender: str, data: bytes) -> int:
        tx: Any = {"from": sender, "to": self.address, "data": "0x" + data.hex()}
        return int(await self._guard(self.w3.eth.estimate_gas(tx)))

    async def send_raw(self, raw: bytes) -> str:
        tx_hash = await self._guard(self.w3.eth.send_raw_transaction(raw))
        return "0x" + bytes(tx_hash).hex()

    async def transaction_known(self, tx_hash: str) -> bool:
        """Whether the node knows the transaction (pending or mined)."""
        try:
            await self._guard(self.w3.eth.get_transaction(tx_hash))  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        return True

    async def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt of a mined transaction, or None while it is pending or unknown."""
        try:
            r = await self._guard(self.w3.eth.get_transaction_receipt(tx_hash))  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        if r.get("blockNumber") is None:
            return None
        late = any(
            bytes(log["topics"][0]) == self._late_topic
            and to_checksum_address(log["address"]) == self.address
            for log in r.get("logs", [])
            if log.get("topics")
        )
        return Receipt(
            tx_hash="0x" + bytes(r["transactionHash"]).hex(),
            block_number=int(r["blockNumber"]),
            block_hash="0x" + bytes(r["blockHash"]).hex(),
            status=int(r.get("status", 0)),
            gas_used=int(r.get("gasUsed", 0)),
            effective_gas_price=int(r.get("effectiveGasPrice", 0) or 0),
            late=late,
        )
