"""The oracle: signing key and where signed reports go (chain or outbox)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from slamon.util.schema import (
    Duration,
    Id,
    PathError,
    Strict,
)


class KeyConfig(Strict):
    """The oracle's signing key: an encrypted JSON keystore and its password file
    (both must be readable by the owner only), or for development only the name
    of an environment variable holding a raw private key."""

    keystore: str | None = None
    password_file: str | None = None
    dev_key_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> KeyConfig:
        file_based = self.keystore is not None or self.password_file is not None
        if file_based and self.dev_key_env is not None:
            raise PathError(("dev_key_env",), "use either keystore + password_file or dev_key_env")
        if file_based and (self.keystore is None or self.password_file is None):
            missing = "password_file" if self.password_file is None else "keystore"
            raise PathError((missing,), "required with a keystore")
        if not file_based and self.dev_key_env is None:
            raise PathError((), "set keystore + password_file (or dev_key_env for development)")
        return self


class OracleConfig(Strict):
    """Signed SLA reports: published on-chain (mode chain) or only written to an
    outbox and served over HTTP for a relayer (mode attest)."""

    mode: Literal["chain", "attest"] = "chain"
    key: KeyConfig
    #: EIP-712 domain: the chain id and the SLACompensation contract address
    chain_id: int = Field(ge=1)
    contract: str
    #: JSON-RPC endpoint (mode chain); a URL with credentials is never logged
    rpc_url: str | None = None
    confirmations: int = Field(default=1, ge=0, le=64)
    #: EIP-1559 fee cap: never pay more per gas than this
    max_fee_gwei: float = Field(default=200.0, gt=0)
    priority_fee_gwei: float = Field(default=1.0, ge=0)
    #: gas limit = estimate x margin
    gas_margin: float = Field(default=1.25, ge=1.0, le=3.0)
    #: a transaction not mined after this is replaced (same nonce, higher fee)
    replace_after: Duration = 60.0
    #: retry back-off bounds while the chain is unreachable
    retry_min: Duration = 1.0
    retry_max: Duration = 300.0
    #: attest mode (and a copy in chain mode): signed report files; default <state dir>/outbox
    outbox: str | None = None
    #: SLAs to report (default: all)
    slas: list[Id] | None = None
    #: per SLA, the start (unix seconds) of the contract's first period; in chain mode read
    #: from the contract when absent (and checked against it when present)
    schedule_starts: dict[str, int] = Field(default_factory=dict)
    #: the provider that registered the SLAs: their on-chain id is
    #: keccak256(abi.encode(provider, name)), so only it can own them
    provider: str | None = None
    #: the quorum (2f + 1) every reported SLA must have on-chain: checked before signing
    #: (unset: shown on the API and status page, not compared)
    quorum: int | None = Field(default=None, ge=1, le=255)
    #: the other signers' slamon base URLs (each serves /api/v1/attestations): their signed
    #: reports go on-chain with ours in one transaction, the signers taking turns in the
    #: order of the signer set; empty: every signer sends its own report
    cosigners: list[str] = Field(default_factory=list)
    #: with cosigners: how long the first signer in turn waits for the others' reports after
    #: signing its own; the k-th after it sends what is still missing (k + 1) x relay_wait
    #: after signing
    relay_wait: Duration = Field(default=20.0, gt=0)

    @field_validator("contract")
    @classmethod
    def _address(cls, value: str) -> str:
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise ValueError("must be an address: 0x followed by 40 hex digits")
        return value

    @field_validator("cosigners")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for i, url in enumerate(value):
            if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", url):
                raise PathError((i,), "must be an http:// or https:// base URL")
        if len(set(value)) != len(value):
            raise ValueError("a co-signer is listed twice")
        return [url.rstrip("/") for url in value]

    @model_validator(mode="after")
    def _rpc(self) -> OracleConfig:
        if self.mode == "chain" and not self.rpc_url:
            raise PathError(("rpc_url",), "required when mode is chain")
        if self.retry_min > self.retry_max:
            raise PathError(("retry_min",), "must not exceed retry_max")
        return self
