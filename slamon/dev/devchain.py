"""A local development chain: anvil from the pinned npm package, on loopback.

Used by `slamon demo` and the tests; deploying and registering on any chain is
slamon.chain.tx.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from eth_account import Account
from web3 import Web3

from slamon.chain.tx import ChainTxError

ANVIL_CHAIN_ID = 31337
#: anvil's public test mnemonic: its accounts are for local chains only
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent


def anvil_keys(n: int = 10) -> tuple[str, ...]:
    """anvil's default dev account keys, derived from the public test mnemonic."""
    Account.enable_unaudited_hdwallet_features()
    return tuple(
        Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.to_0x_hex()
        for i in range(n)
    )


class DevChainError(ChainTxError):
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
