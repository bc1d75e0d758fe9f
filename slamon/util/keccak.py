"""keccak256 and the ABI encoding of static words, without the chain libraries.

The pure core (SLA ids, policy digests, Merkle evidence) hashes exactly as the
contract does, so it must not need web3 installed: pycryptodome's Keccak is the
same primitive eth-hash uses behind web3.
"""

from __future__ import annotations

from Crypto.Hash import keccak as _keccak


def keccak256_pycryptodome(data: bytes) -> bytes:
    """Ethereum's keccak256 (the pre-standard SHA-3 padding), 32 bytes, by pycryptodome."""
    return _keccak.new(digest_bits=256, data=data).digest()


try:
    # safe-pysha3: the same Keccak in C behind a hashlib-like object, ~1 us a hash
    # where pycryptodome's cffi objects take ~7. A period's evidence tree hashes ~20
    # times: closing 10,000 periods together was ~2/3 keccak (docs/benchmarks.md).
    # A dependency where it has wheels (pyproject.toml); elsewhere pycryptodome
    from sha3 import keccak_256 as _keccak_256
except ImportError:
    keccak256 = keccak256_pycryptodome
else:
    def keccak256(data: bytes) -> bytes:
        """Ethereum's keccak256 (the pre-standard SHA-3 padding), 32 bytes."""
        digest: bytes = _keccak_256(data).digest()
        return digest


def hashes_to(text: str, digest: bytes) -> bool:
    """Whether keccak256 of `text` (UTF-8) is `digest`: a kept document checked against
    the digest that commits to it."""
    return keccak256(text.encode()) == digest


def abi_word_uint(value: int, bits: int = 256) -> bytes:
    """`abi.encode(uintN value)`: one big-endian 32-byte word; refuses what does not fit."""
    if value < 0 or value >= 1 << bits:
        raise ValueError(f"{value} does not fit in uint{bits}")
    return value.to_bytes(32, "big")


def abi_word_bytes32(value: bytes) -> bytes:
    """`abi.encode(bytes32 value)`."""
    if len(value) != 32:
        raise ValueError(f"bytes32 needs 32 bytes, got {len(value)}")
    return bytes(value)
