"""Helpers for tests that need a chain: py-evm in process, or a real anvil node.

anvil comes from the npm package ``@foundry-rs/anvil`` pinned in ``package.json``: run ``npm ci``
at the repository root first. Typical use::

    with AnvilNode.start() as node:
        w3 = node.web3()
        ...

or, for py-evm in process, ``w3, keys = pyevm_web3()``.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from slamon.chain.artefacts import Artefact
from slamon.dev.devchain import ANVIL_CHAIN_ID as ANVIL_CHAIN_ID
from slamon.dev.devchain import AnvilProcess, anvil_keys, find_anvil
from slamon.dev.devchain import free_port as free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO_ROOT / "node_modules"
ANVIL_KEYS = anvil_keys()


class MissingNodeModules(RuntimeError):
    """node_modules (solc, anvil) are not installed."""


def require_node_modules() -> None:
    """Fail (not skip) with a clear message when ``npm ci`` has not been run."""
    if shutil.which("node") is None:
        raise MissingNodeModules("node is not installed (needed for solc and anvil)")
    if not (NODE_MODULES / "solc").is_dir():
        raise MissingNodeModules(
            f"{NODE_MODULES}/solc is missing: run `npm ci` at the repository root"
        )


def anvil_path() -> Path:
    """Path of the pinned anvil binary."""
    found = find_anvil(REPO_ROOT)
    if found is None:
        raise MissingNodeModules(
            "anvil binary not found under node_modules/@foundry-rs/: run `npm ci` at the "
            "repository root"
        )
    return found


def compile_sources(*sources: str) -> dict[str, Artefact]:
    """Compile Solidity files (relative to the repo root; default: the shipped contracts)."""
    require_node_modules()
    args = ["--sources", ",".join(sources)] if sources else []
    proc = subprocess.run(
        ["node", "contracts/compile.mjs", "--stdout", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"compile.mjs failed ({proc.returncode}):\n{proc.stderr}")
    data: dict[str, Any] = json.loads(proc.stdout)
    return {name: Artefact.from_json(a) for name, a in data.items()}


@dataclass
class AnvilNode(AnvilProcess):
    """A running anvil process on 127.0.0.1 (slamon.dev.devchain's, plus test helpers)."""

    @classmethod
    @contextmanager
    def start(cls, *extra_args: str, timeout: float = 20.0) -> Iterator[AnvilNode]:
        """Start anvil, wait until it answers ``eth_chainId``, stop it on exit."""
        node = cls.launch(*extra_args, binary=anvil_path(), timeout=timeout)
        try:
            yield node
        finally:
            node.stop()

    # time control
    def set_next_timestamp(self, w3: Web3, ts: int) -> None:
        w3.provider.make_request("evm_setNextBlockTimestamp", [ts])  # type: ignore[arg-type]

    def mine(self, w3: Web3, ts: int | None = None) -> None:
        w3.provider.make_request("evm_mine", [ts] if ts is not None else [])  # type: ignore[arg-type]


def pyevm_web3() -> tuple[Web3, list[str]]:
    """A fresh py-evm chain in process, and the private keys of its funded accounts."""
    from web3 import EthereumTesterProvider

    provider = EthereumTesterProvider()
    w3 = Web3(provider)
    tester: Any = provider.ethereum_tester
    keys = [k.to_hex() for k in tester.backend.account_keys]
    return w3, keys


def pyevm_time_travel(w3: Web3, ts: int) -> None:
    """Mine a block at timestamp ``ts`` on an EthereumTesterProvider chain."""
    tester = w3.provider.ethereum_tester  # type: ignore[attr-defined]
    tester.time_travel(ts)


def deploy(w3: Web3, artefact: Artefact, key: str, *args: Any) -> Contract:
    """Deploy ``artefact`` from the account of ``key``; return the contract object."""
    factory = w3.eth.contract(abi=artefact.abi, bytecode=artefact.bytecode)
    sender = Account.from_key(key).address
    tx_hash = factory.constructor(*args).transact({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    if receipt["status"] != 1:
        raise RuntimeError(f"deploying {artefact.contract_name} failed")
    contract = w3.eth.contract(address=receipt["contractAddress"], abi=artefact.abi)
    assert isinstance(contract, Contract)
    return contract


# ---------------------------------------------------------------------------------------------
# SLACompensation harness shared by tests/test_contract.py and bench/gas.py
# ---------------------------------------------------------------------------------------------

ZERO_ADDRESS = "0x" + "00" * 20
POLICY = bytes.fromhex("a1" * 32)


def revert_data(exc: BaseException) -> bytes:
    """Raw revert data of a failed call/transaction (web3 ContractCustomError or eth-tester)."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    if isinstance(data, bytes):
        return data
    text = str(exc.args[0]) if exc.args else str(exc)
    marker = "execution reverted: "
    if marker in text:
        raw = text.split(marker, 1)[1].strip()
        if raw.startswith(("b'", 'b"')):
            value = ast.literal_eval(raw)
            if isinstance(value, bytes):
                return value
        if raw.startswith("0x"):
            return bytes.fromhex(raw[2:])
    return b""


def error_selector(abi: Any, name: str) -> bytes:
    """4-byte selector of custom error ``name`` in ``abi``."""
    for item in abi:
        if item.get("type") == "error" and item.get("name") == name:
            sig = f"{name}({','.join(i['type'] for i in item['inputs'])})"
            return bytes(keccak(text=sig)[:4])
    raise KeyError(name)


@dataclass
class SLAHarness:
    """Deployed SLACompensation on a chain, with time control and convenience calls."""

    w3: Web3
    contract: Contract
    keys: list[str]
    travel: Callable[[int], None]

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def addr(self, i: int) -> str:
        return str(Account.from_key(self.keys[i]).address)

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def send(self, fn: Any, sender: int = 0, value: int = 0, gas: int = 3_000_000) -> Any:
        """Send a contract call as account ``sender``; return the receipt (raises on revert)."""
        tx_hash = fn.transact({"from": self.addr(sender), "value": value, "gas": gas})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        if receipt["status"] != 1:
            raise RuntimeError("transaction reverted")
        return receipt

    def expect_revert(self, error: str, fn: Any, sender: int = 0, value: int = 0) -> bytes:
        """Assert that ``fn`` reverts with custom error ``error``; return the revert data."""
        selector = error_selector(self.contract.abi, error)
        try:
            fn.call({"from": self.addr(sender), "value": value})
        except Exception as exc:
            data = revert_data(exc)
            assert data[:4] == selector, f"expected {error}, got {exc!r}"
            return data
        raise AssertionError(f"expected revert {error}, call succeeded")

    def sla_id(self, name: bytes, provider: int = 1) -> bytes:
        """On-chain id of the SLA account ``provider`` registers as ``name``."""
        return bytes(self.contract.functions.slaIdOf(self.addr(provider), name).call())

    def sla_params(
        self, name: bytes, start: int, signers: list[str], **kw: Any
    ) -> tuple[Any, ...]:
        """SLAParams tuple with defaults; override any field by its Solidity name."""
        p: dict[str, Any] = {
            "name": name,
            "objectivePpm": 999_000,
            "scheduleStart": start,
            "periodLength": 1000,
            "periodCount": 12,
            "boundaries": [],
            "settlementWindow": 500,
            "signers": signers,
            "quorum": 1,
            "singleOracle": len(signers) == 1,
            "minSamples": 10,
            "policyDigest": POLICY,
            "ratePerPpm": 10**12,
            "tiers": [],
            "maxPayoutPerPeriod": 10**18,
            "metReward": 10**15,
            "team": self.addr(2),
            "asset": ZERO_ADDRESS,
            "beneficiaries": [self.addr(3), self.addr(4)],
            "weights": [1, 3],
            "firstPeriodId": 0,
        }
        unknown = set(kw) - set(p)
        if unknown:
            raise KeyError(f"unknown SLAParams fields {unknown}")
        p.update(kw)
        return tuple(p.values())


def pyevm_harness(artefact: Artefact) -> SLAHarness:
    """Deploy ``artefact`` on a fresh py-evm chain."""
    w3, keys = pyevm_web3()
    contract = deploy(w3, artefact, keys[0])
    return SLAHarness(w3, contract, keys, lambda ts: pyevm_time_travel(w3, ts))


def anvil_harness(node: AnvilNode, artefact: Artefact) -> SLAHarness:
    """Deploy ``artefact`` on a running anvil node."""
    w3 = node.web3()
    contract = deploy(w3, artefact, node.keys[0])

    def travel(ts: int) -> None:
        node.mine(w3, ts)

    return SLAHarness(w3, contract, list(node.keys), travel)
