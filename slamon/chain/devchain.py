"""A local development chain: anvil from npm, the contract deployed, SLAs registered.

Used by `slamon demo` and `slamon contract deploy|register`; the tests use the
same functions so what is tested is what users run.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

from eth_account import Account
from web3 import Web3

from slamon.chain.artefacts import sla_compensation
from slamon.config.models import Config
from slamon.periods import period_bounds, period_index
from slamon.policy import policy_digest_for

ANVIL_CHAIN_ID = 31337
#: anvil's public test mnemonic: its accounts are for local chains only
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ZERO_ADDRESS = "0x" + "00" * 20
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent


def anvil_keys(n: int = 10) -> tuple[str, ...]:
    """anvil's default dev account keys, derived from the public test mnemonic."""
    Account.enable_unaudited_hdwallet_features()
    return tuple(
        Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.to_0x_hex()
        for i in range(n)
    )


class DevChainError(RuntimeError):
    """The dev chain cannot be started or used; the message says what to do."""


def find_anvil(*roots: Path) -> Path | None:
    """The anvil binary from the pinned npm package, searched under node_modules."""
    for root in (*roots, Path.cwd(), PACKAGE_ROOT):
        candidates = sorted((root / "node_modules").glob("@foundry-rs/anvil-*/bin/anvil"))
        if candidates:
            return candidates[0]
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AnvilProcess:
    """A running anvil on 127.0.0.1 (its own process group, so stop() kills it all)."""

    process: subprocess.Popen[bytes]
    port: int
    keys: tuple[str, ...] = field(default_factory=anvil_keys)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def web3(self, timeout: float = 10.0) -> Web3:
        return Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": timeout}))

    @classmethod
    def launch(
        cls,
        *extra_args: str,
        port: int | None = None,
        binary: Path | None = None,
        timeout: float = 20.0,
    ) -> Self:
        binary = binary or find_anvil()
        if binary is None:
            raise DevChainError(
                "anvil not found: run `npm ci` in the slamon checkout (it installs the pinned "
                "@foundry-rs/anvil), or use oracle mode attest"
            )
        last: Exception | None = None
        for _ in range(3):  # a free port can be taken between probe and bind
            chosen = port or free_port()
            proc = subprocess.Popen(
                [str(binary), "--host", "127.0.0.1", "--port", str(chosen),
                 "--chain-id", str(ANVIL_CHAIN_ID), "--silent", *extra_args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            node = cls(process=proc, port=chosen)
            try:
                node.wait_ready(timeout)
                return node
            except Exception as exc:
                last = exc
                node.stop()
                if port is not None:
                    break
        raise DevChainError(f"anvil did not start: {last}")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        w3 = self.web3(timeout=1.0)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise DevChainError(f"anvil exited with {self.process.returncode}: {err.strip()}")
            try:
                if w3.eth.chain_id == ANVIL_CHAIN_ID:
                    return
            except Exception:
                time.sleep(0.05)
        raise DevChainError(f"anvil not ready on port {self.port} after {timeout:g}s")

    def stop(self) -> None:
        """SIGTERM (anvil dumps --state on exit), SIGKILL after 5 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if self.process.stderr:
            self.process.stderr.close()


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
        raise DevChainError(f"transaction {tx_hash.hex()} reverted")
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


def sla_params(
    config: Config,
    sla_id: str,
    *,
    signers: list[str],
    quorum: int,
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
        window = length
    else:
        count = min(periods, 120)
        boundaries = [period_bounds(sla.period, first + i)[0] for i in range(count + 1)]
        length = 0
        window = min(b - a for a, b in itertools.pairwise(boundaries))
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
        max(1, sla.min_valid_samples),
        policy_digest_for(sla, slo),
        rule.rate_per_ppm_wei,
        [],
        rule.max_payout_per_period_wei,
        rule.met_reward_wei,
        team,
        asset,
        beneficiaries,
        weights,
    )
    return params, start


def register_sla(w3: Web3, contract_address: str, key: Sender, params: tuple[Any, ...],
                 fund_wei: int = 0) -> None:
    artefact = sla_compensation()
    contract = w3.eth.contract(address=Web3.to_checksum_address(contract_address),
                               abi=artefact.abi)
    send_tx(w3, key, contract.functions.registerSLA(params))
    if fund_wei:
        send_tx(w3, key, contract.functions.fund(params[0], fund_wei), value=fund_wei)
