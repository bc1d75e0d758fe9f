"""Contract transactions: deploy SLACompensation, register an SLA, send a signed call.

Used by `slamon contract deploy|register`, the demo and the tests, so what is
tested is what users run. Needs the `chain` extra.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Protocol

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils.crypto import keccak
from web3 import Web3

from slamon.chain.artefacts import sla_compensation
from slamon.config.root import Config
from slamon.sla.periods import period_bounds, period_index
from slamon.sla.policy import policy_digest_for

ZERO_ADDRESS = "0x" + "00" * 20


class ChainTxError(RuntimeError):
    """A transaction could not be sent or reverted."""


class TxSigner(Protocol):
    """What signs a transaction: slamon's Signer or an eth_account LocalAccount."""

    @property
    def address(self) -> str: ...

    def sign_transaction(self, tx: dict[str, Any]) -> Any: ...


Sender = str | TxSigner


def as_signer(sender: Sender) -> TxSigner:
    """A raw 0x key (dev chains, tests) or anything that signs."""
    if isinstance(sender, str):
        account: TxSigner = Account.from_key(sender)
        return account
    return sender


def send_tx(w3: Web3, sender: Sender, fn: Any, value: int = 0, gas: int | None = None) -> Any:
    """Sign locally and send a contract call; returns the receipt (raises on revert)."""
    account = as_signer(sender)
    tx: dict[str, Any] = {
        "from": account.address,
        "nonce": w3.eth.get_transaction_count(Web3.to_checksum_address(account.address), "pending"),
        "value": value,
        "chainId": w3.eth.chain_id,
    }
    tx = fn.build_transaction(tx)
    if gas is not None:
        tx["gas"] = gas
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt["status"] != 1:
        raise ChainTxError(f"transaction {tx_hash.hex()} reverted")
    return receipt


def deploy_contract(w3: Web3, key: Sender) -> str:
    """Deploy SLACompensation; returns its address."""
    artefact = sla_compensation()
    contract = w3.eth.contract(abi=artefact.abi, bytecode=artefact.bytecode)
    receipt = send_tx(w3, key, contract.constructor())
    address: str = receipt["contractAddress"]
    return address


@dataclass(frozen=True)
class PayoutRule:
    """How a breached period pays: linear per ppm of shortfall, capped per period."""

    rate_per_ppm_wei: int = 10**12
    max_payout_per_period_wei: int = 10**18
    met_reward_wei: int = 10**15


def onchain_sla_id(provider: str, name: bytes) -> bytes:
    """The contract's id of the SLA `provider` registered as `name` (nobody else can take it)."""
    return bytes(keccak(abi_encode(["address", "bytes32"], [provider, name])))


def sla_params(
    config: Config,
    sla_id: str,
    *,
    signers: list[str],
    quorum: int,
    single_oracle: bool = False,
    team: str,
    beneficiaries: list[str],
    weights: list[int],
    now: float,
    periods: int = 1000,
    rule: PayoutRule | None = None,
    asset: str = ZERO_ADDRESS,
) -> tuple[tuple[Any, ...], int]:
    """The contract's SLAParams for a configured SLA, starting with the current period.

    Returns (params, schedule_start). Fixed periods become (start, length, count);
    calendar periods an explicit list of boundaries (months differ in length).
    """
    rule = rule or PayoutRule()
    sla = next(s for s in config.slas if s.id == sla_id)
    slo = next(s for s in config.slos if s.id == sla.slo)
    first = period_index(sla.period, now)
    start = period_bounds(sla.period, first)[0]
    if sla.period.kind == "fixed":
        length = sla.period.length_s
        boundaries: list[int] = []
        count = periods
        # strictly shorter than a period: two periods' report windows never overlap
        window = length - 1
    else:
        count = min(periods, 120)
        boundaries = [period_bounds(sla.period, first + i)[0] for i in range(count + 1)]
        length = 0
        window = min(b - a for a, b in itertools.pairwise(boundaries)) - 1
    params: tuple[Any, ...] = (
        sla.onchain_id_bytes,
        sla.objective_ppm(slo.objective),
        start,
        length,
        count,
        boundaries,
        window,
        signers,
        quorum,
        single_oracle,
        max(1, sla.min_valid_samples),
        policy_digest_for(sla, slo, config),
        rule.rate_per_ppm_wei,
        [],
        rule.max_payout_per_period_wei,
        rule.met_reward_wei,
        team,
        asset,
        beneficiaries,
        weights,
        first,  # firstPeriodId: the contract names periods by slamon's ids
    )
    return params, start


def register_sla(w3: Web3, contract_address: str, key: Sender, params: tuple[Any, ...],
                 fund_wei: int = 0) -> bytes:
    """Register (and fund) an SLA; returns its on-chain id."""
    artefact = sla_compensation()
    contract = w3.eth.contract(address=Web3.to_checksum_address(contract_address),
                               abi=artefact.abi)
    send_tx(w3, key, contract.functions.registerSLA(params))
    sla_id = onchain_sla_id(as_signer(key).address, params[0])
    if fund_wei:
        send_tx(w3, key, contract.functions.fund(sla_id, fund_wei), value=fund_wei)
    return sla_id
