"""EIP-712 signed SLI reports, as verified by the ``SLACompensation`` contract.

Pure functions: no network, no clock. The domain is ``{name: "slamon", version: "1",
chainId, verifyingContract}`` and the primary type is::

    Report(bytes32 slaId,uint64 periodId,uint64 periodStart,uint64 periodEnd,uint32 sliPpm,
           uint32 sloPpm,uint64 good,uint64 valid,uint64 noData,bool breached,
           bytes32 evidenceRoot,bytes32 policyDigest,uint64 issuedAt)

Signatures are 65 bytes ``r || s || v`` with ``v`` in {27, 28} and low ``s`` (as eth_account
produces them); the contract rejects anything else, and so does :func:`recover_signer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Final

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.datatypes import Signature
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from slamon.util.units import PPM

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "PPM",
    "REPORT_FIELDS",
    "REPORT_TYPE",
    "REPORT_TYPEHASH",
    "SECP256K1_HALF_N",
    "SECP256K1_N",
    "InvalidSignature",
    "Report",
    "SignedReport",
    "domain_separator",
    "recover_signer",
    "report_digest",
    "sign_report",
    "struct_hash",
    "typed_data",
]

DOMAIN_NAME: Final = "slamon"
DOMAIN_VERSION: Final = "1"
SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N: Final = SECP256K1_N // 2

#: (EIP-712 name, Solidity type, Python attribute) in struct order.
REPORT_FIELDS: Final[tuple[tuple[str, str, str], ...]] = (
    ("slaId", "bytes32", "sla_id"),
    ("periodId", "uint64", "period_id"),
    ("periodStart", "uint64", "period_start"),
    ("periodEnd", "uint64", "period_end"),
    ("sliPpm", "uint32", "sli_ppm"),
    ("sloPpm", "uint32", "slo_ppm"),
    ("good", "uint64", "good"),
    ("valid", "uint64", "valid"),
    ("noData", "uint64", "no_data"),
    ("breached", "bool", "breached"),
    ("evidenceRoot", "bytes32", "evidence_root"),
    ("policyDigest", "bytes32", "policy_digest"),
    ("issuedAt", "uint64", "issued_at"),
)
REPORT_TYPE: Final = "Report(" + ",".join(f"{t} {n}" for n, t, _ in REPORT_FIELDS) + ")"
REPORT_TYPEHASH: Final = keccak(text=REPORT_TYPE)
_DOMAIN_TYPE: Final = (
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_EIP712_DOMAIN_FIELDS: Final = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_UINT_BITS: Final = {"uint32": 32, "uint64": 64}


class InvalidSignature(ValueError):
    """A signature is malformed, malleable (high s), or does not match."""


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _bytes32(value: bytes | str, name: str) -> bytes:
    if isinstance(value, str):
        value = bytes.fromhex(value.removeprefix("0x"))
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes")
    return value


@dataclass(frozen=True, slots=True)
class Report:
    """The report of one signer for one closed SLA period.

    ``breached`` and ``slo_ppm`` are what the signer believes: the contract requires
    ``slo_ppm`` to equal its stored objective and ``breached == (sli_ppm < slo_ppm)``, then
    decides the period's breach itself from the median SLI of the quorum.
    """

    sla_id: bytes
    period_id: int
    period_start: int
    period_end: int
    sli_ppm: int
    slo_ppm: int
    good: int
    valid: int
    no_data: int
    breached: bool
    evidence_root: bytes
    policy_digest: bytes
    issued_at: int

    def __post_init__(self) -> None:
        for name, typ, attr in REPORT_FIELDS:
            value = getattr(self, attr)
            if typ == "bytes32":
                if not isinstance(value, bytes) or len(value) != 32:
                    raise ValueError(f"{attr} must be 32 bytes")
            elif typ == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"{attr} must be a bool")
            else:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{attr} must be an int")
                if not 0 <= value < (1 << _UINT_BITS[typ]):
                    raise ValueError(f"{attr}={value} out of range for {typ} ({name})")
        if self.sli_ppm > PPM or self.slo_ppm > PPM:
            raise ValueError("sli_ppm and slo_ppm must be <= 1_000_000")
        if self.period_end <= self.period_start:
            raise ValueError("period_end must be after period_start")

    def message(self) -> dict[str, Any]:
        """The EIP-712 message (camelCase keys, bytes values)."""
        return {name: getattr(self, attr) for name, _, attr in REPORT_FIELDS}

    def as_tuple(self) -> tuple[Any, ...]:
        """The ABI tuple, for a web3 contract call taking a ``Report``."""
        return tuple(getattr(self, attr) for _, _, attr in REPORT_FIELDS)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-safe dict (camelCase keys, 0x-hex bytes32)."""
        return {
            name: _hex(getattr(self, attr)) if typ == "bytes32" else getattr(self, attr)
            for name, typ, attr in REPORT_FIELDS
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Report:
        """Inverse of :meth:`to_json_dict`; unknown keys are rejected."""
        names = {name for name, _, _ in REPORT_FIELDS}
        extra = set(data) - names
        missing = names - set(data)
        if extra or missing:
            raise ValueError(f"bad report fields: extra={sorted(extra)} missing={sorted(missing)}")
        kwargs: dict[str, Any] = {}
        for name, typ, attr in REPORT_FIELDS:
            value = data[name]
            kwargs[attr] = _bytes32(value, name) if typ == "bytes32" else value
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Report:
        """A copy with some fields changed."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Report(**values)


def domain_data(chain_id: int, contract: str) -> dict[str, Any]:
    """The EIP-712 domain for ``contract`` on ``chain_id``."""
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(contract),
    }


def typed_data(report: Report, chain_id: int, contract: str) -> dict[str, Any]:
    """The full EIP-712 typed data (``eth_signTypedData_v4`` shape) of ``report``."""
    return {
        "types": {
            "EIP712Domain": list(_EIP712_DOMAIN_FIELDS),
            "Report": [{"name": n, "type": t} for n, t, _ in REPORT_FIELDS],
        },
        "primaryType": "Report",
        "domain": domain_data(chain_id, contract),
        "message": report.message(),
    }


def domain_separator(chain_id: int, contract: str) -> bytes:
    """``hashStruct(EIP712Domain)`` as the contract computes it."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                keccak(text=_DOMAIN_TYPE),
                keccak(text=DOMAIN_NAME),
                keccak(text=DOMAIN_VERSION),
                chain_id,
                to_checksum_address(contract),
            ],
        )
    )


def struct_hash(report: Report) -> bytes:
    """``hashStruct(report)``: keccak256(typeHash || abi-encoded fields)."""
    types = ["bytes32"] + [t for _, t, _ in REPORT_FIELDS]
    return keccak(abi_encode(types, [REPORT_TYPEHASH, *report.as_tuple()]))


def report_digest(report: Report, chain_id: int, contract: str) -> bytes:
    """The 32-byte digest that is signed: keccak256(0x1901 || domainSeparator || structHash)."""
    return keccak(b"\x19\x01" + domain_separator(chain_id, contract) + struct_hash(report))


def sign_report(report: Report, private_key: bytes | str, chain_id: int, contract: str) -> bytes:
    """Sign ``report``; returns the 65-byte ``r || s || v`` signature (low s, v in {27, 28})."""
    signable = encode_typed_data(full_message=typed_data(report, chain_id, contract))
    signed = Account.sign_message(signable, private_key)
    signature = bytes(signed.signature)
    _check_signature_shape(signature)
    return signature


#: the contract's ROTATION_TYPEHASH type: a quorum of the current signers approves set `version`
ROTATION_FIELDS = (("slaId", "bytes32"), ("version", "uint16"), ("signers", "address[]"),
                   ("quorum", "uint8"))


def rotation_typed_data(sla_id: bytes, version: int, signers: list[str], quorum: int,
                        chain_id: int, contract: str) -> dict[str, Any]:
    """The EIP-712 typed data a current signer signs to approve signer set `version`."""
    return {
        "types": {
            "EIP712Domain": list(_EIP712_DOMAIN_FIELDS),
            "Rotation": [{"name": n, "type": t} for n, t in ROTATION_FIELDS],
        },
        "primaryType": "Rotation",
        "domain": domain_data(chain_id, contract),
        "message": {"slaId": sla_id, "version": version,
                    "signers": [to_checksum_address(a) for a in signers], "quorum": quorum},
    }


def sign_rotation(sla_id: bytes, version: int, signers: list[str], quorum: int,
                  private_key: bytes | str, chain_id: int, contract: str) -> bytes:
    """One current signer's approval of signer set `version` (65 bytes, low s)."""
    data = rotation_typed_data(sla_id, version, signers, quorum, chain_id, contract)
    signed = Account.sign_message(encode_typed_data(full_message=data), private_key)
    signature = bytes(signed.signature)
    _check_signature_shape(signature)
    return signature


def _check_signature_shape(signature: bytes) -> tuple[int, int, int]:
    if len(signature) != 65:
        raise InvalidSignature(f"signature must be 65 bytes, got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise InvalidSignature(f"v must be 27 or 28, got {v}")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise InvalidSignature("r or s out of range")
    if s > SECP256K1_HALF_N:
        raise InvalidSignature("high s (malleable signature)")
    return r, s, v


def recover_signer(report: Report, signature: bytes, chain_id: int, contract: str) -> str:
    """The checksummed address that signed ``report``, with the contract's rules.

    Raises :class:`InvalidSignature` for a malformed or high-s signature.
    """
    r, s, v = _check_signature_shape(signature)
    digest = report_digest(report, chain_id, contract)
    try:
        public_key = Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    except Exception as exc:  # eth_keys raises several types for garbage input
        raise InvalidSignature(f"cannot recover signer: {exc}") from exc
    return to_checksum_address(public_key.to_checksum_address())


@dataclass(frozen=True, slots=True)
class SignedReport:
    """A report with its signature and binding, as stored in an outbox file."""

    report: Report
    signature: bytes
    signer: str
    chain_id: int
    contract: str

    FORMAT_VERSION = 1

    @classmethod
    def sign(
        cls, report: Report, private_key: bytes | str, chain_id: int, contract: str
    ) -> SignedReport:
        """Sign ``report`` and bundle it."""
        signature = sign_report(report, private_key, chain_id, contract)
        signer = Account.from_key(private_key).address
        return cls(
            report, signature, to_checksum_address(signer), chain_id, to_checksum_address(contract)
        )

    def verify(self) -> None:
        """Raise :class:`InvalidSignature` unless ``signature`` recovers ``signer``."""
        recovered = recover_signer(self.report, self.signature, self.chain_id, self.contract)
        if recovered != to_checksum_address(self.signer):
            raise InvalidSignature(f"signature recovers {recovered}, not {self.signer}")

    def digest(self) -> bytes:
        """The EIP-712 digest of the report."""
        return report_digest(self.report, self.chain_id, self.contract)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "version": self.FORMAT_VERSION,
            "chainId": self.chain_id,
            "contract": to_checksum_address(self.contract),
            "signer": to_checksum_address(self.signer),
            "digest": _hex(self.digest()),
            "signature": _hex(self.signature),
            "report": self.report.to_json_dict(),
        }

    def to_json(self) -> str:
        """One-line JSON (for an outbox file or an HTTP body)."""
        return json.dumps(self.to_json_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json_dict(cls, data: dict[str, Any], *, verify: bool = True) -> SignedReport:
        """Parse; with ``verify`` (default) the signature and digest are checked."""
        if data.get("version") != cls.FORMAT_VERSION:
            raise ValueError(f"unsupported signed report version {data.get('version')!r}")
        signed = cls(
            report=Report.from_json_dict(data["report"]),
            signature=bytes.fromhex(str(data["signature"]).removeprefix("0x")),
            signer=to_checksum_address(str(data["signer"])),
            chain_id=int(data["chainId"]),
            contract=to_checksum_address(str(data["contract"])),
        )
        if verify:
            signed.verify()
            if "digest" in data and data["digest"] != _hex(signed.digest()):
                raise InvalidSignature("digest does not match the report")
        return signed

    @classmethod
    def from_json(cls, text: str, *, verify: bool = True) -> SignedReport:
        """Parse :meth:`to_json` output."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("signed report JSON must be an object")
        return cls.from_json_dict(data, verify=verify)
