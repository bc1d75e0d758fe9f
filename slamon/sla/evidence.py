"""Merkle evidence for closed periods, compatible with OpenZeppelin's tooling.

A leaf is one (target, bucket) counter: `abi.encode(bytes32 targetId, uint64
bucketStart, uint32 good, uint32 valid, uint32 noData)`, hashed as OpenZeppelin
`StandardMerkleTree` does: keccak256(bytes.concat(keccak256(abi.encode(...)))).
The tree is @openzeppelin/merkle-tree's `makeMerkleTree` over the leaf hashes
sorted ascending (its default `sortLeaves: true`), with sorted-pair node hashing,
so `StandardMerkleTree.of(values, ["bytes32","uint64","uint32","uint32","uint32"])`
gives the same root and `MerkleProof.verify` accepts our proofs on-chain.

An empty leaf set has root 0x00..00 (OpenZeppelin refuses to build an empty
tree; no proof can verify against the zero root). See docs/evidence.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from slamon.util.keccak import abi_word_bytes32, abi_word_uint, keccak256

LEAF_TYPES = ["bytes32", "uint64", "uint32", "uint32", "uint32"]
ZERO_ROOT = b"\x00" * 32
_U32 = 2**32
EVIDENCE_FORMAT = "slamon-evidence/1"

Outcome = Literal["good", "bad", "no_data"]



def target_id_bytes32(target_id: str) -> bytes:
    """On-chain id of a target: keccak256 of its UTF-8 id (ids are free-form strings)."""
    return keccak256(target_id.encode("utf-8"))


@dataclass(frozen=True, order=True)
class Leaf:
    """Counts of one target in one evidence bucket [bucket_start, bucket_start + resolution).

    good <= valid: probes that ran and passed / ran at all; no_data: probes that
    were due but that slamon failed to run (its own outage).
    """

    target: str
    bucket_start: int
    good: int
    valid: int
    no_data: int

    def __post_init__(self) -> None:
        if not 0 <= self.bucket_start < 2**64:
            raise ValueError("bucket_start must fit uint64")
        for name in ("good", "valid", "no_data"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < _U32:
                raise ValueError(f"{name} must be an integer in uint32 range")
        if self.good > self.valid:
            raise ValueError("good must not exceed valid")

    def encode(self) -> bytes:
        """abi.encode(bytes32 targetId, uint64 bucketStart; uint32 good, valid, noData)."""
        return b"".join((
            abi_word_bytes32(target_id_bytes32(self.target)),
            abi_word_uint(self.bucket_start, 64),
            abi_word_uint(self.good, 32),
            abi_word_uint(self.valid, 32),
            abi_word_uint(self.no_data, 32),
        ))

    def hash(self) -> bytes:
        """OpenZeppelin standard leaf hash: keccak256(keccak256(abi.encode(...)))."""
        return keccak256(keccak256(self.encode()))

    @property
    def is_empty(self) -> bool:
        return self.good == self.valid == self.no_data == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "bucket_start": self.bucket_start,
            "good": self.good,
            "valid": self.valid,
            "no_data": self.no_data,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Leaf:
        keys = {"target", "bucket_start", "good", "valid", "no_data"}
        if set(data) != keys:
            raise ValueError(f"leaf must have exactly the keys {sorted(keys)}")
        if not isinstance(data["target"], str):
            raise ValueError("leaf target must be a string")
        for k in keys - {"target"}:
            if not isinstance(data[k], int) or isinstance(data[k], bool):
                raise ValueError(f"leaf {k} must be an integer")
        return cls(
            data["target"], data["bucket_start"], data["good"], data["valid"], data["no_data"]
        )


def node_hash(a: bytes, b: bytes) -> bytes:
    """Sorted-pair hashing, as OpenZeppelin's MerkleProof expects."""
    return keccak256(a + b if a <= b else b + a)


def make_tree(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """OpenZeppelin `makeMerkleTree`: array tree, leaves stored in reverse at the end.

    Takes the hashes in the order given; `StandardTree` sorts them first.
    """
    if not leaf_hashes:
        raise ValueError("expected a non-zero number of leaves")
    for h in leaf_hashes:
        if len(h) != 32:
            raise ValueError("merkle tree nodes must be 32 bytes")
    size = 2 * len(leaf_hashes) - 1
    tree: list[bytes] = [b""] * size
    for i, h in enumerate(leaf_hashes):
        tree[size - 1 - i] = h
    for i in range(size - 1 - len(leaf_hashes), -1, -1):
        tree[i] = node_hash(tree[2 * i + 1], tree[2 * i + 2])
    return tree


def proof(tree: Sequence[bytes], index: int) -> list[bytes]:
    """OpenZeppelin `getProof` for the leaf at *tree* index `index`."""
    if not (0 <= index < len(tree)) or 2 * index + 1 < len(tree):
        raise ValueError("index is not a leaf")
    out: list[bytes] = []
    while index > 0:
        sibling = index - 1 if index % 2 == 0 else index + 1
        out.append(tree[sibling])
        index = (index - 1) // 2
    return out


def process_proof(leaf_hash: bytes, proof_: Iterable[bytes]) -> bytes:
    computed = leaf_hash
    for p in proof_:
        computed = node_hash(computed, p)
    return computed


def verify(proof_: Iterable[bytes], root: bytes, leaf_hash: bytes) -> bool:
    """MerkleProof.verify(proof, root, leaf)."""
    return process_proof(leaf_hash, proof_) == root


@dataclass(frozen=True)
class StandardTree:
    """StandardMerkleTree.of(leaves) equivalent; `index_of[i]` is leaf i's tree index."""

    leaves: tuple[Leaf, ...]
    tree: tuple[bytes, ...]
    index_of: tuple[int, ...]

    @classmethod
    def of(cls, leaves: Iterable[Leaf]) -> StandardTree:
        items = tuple(leaves)
        if not items:
            return cls((), (), ())
        hashed = sorted(((leaf.hash(), i) for i, leaf in enumerate(items)))
        tree = make_tree([h for h, _ in hashed])
        index_of = [0] * len(items)
        for pos, (_, i) in enumerate(hashed):
            index_of[i] = len(tree) - 1 - pos
        return cls(items, tuple(tree), tuple(index_of))

    @property
    def root(self) -> bytes:
        return self.tree[0] if self.tree else ZERO_ROOT

    def proof(self, i: int) -> list[bytes]:
        """Proof for the i-th leaf as given to `of` (OpenZeppelin getProof(number))."""
        return proof(self.tree, self.index_of[i])


def merkle_root(leaves: Iterable[Leaf]) -> bytes:
    """Root over the leaves (order-independent: leaf hashes are sorted)."""
    return StandardTree.of(leaves).root


def bucket_start(t: float, resolution: int) -> int:
    """Start of the evidence bucket holding unix time t (buckets are epoch-aligned)."""
    return int(t // resolution) * resolution


def leaves_from_samples(
    target: str, samples: Iterable[tuple[float, Outcome]], resolution: int
) -> list[Leaf]:
    """Bucket (scheduled time, outcome) samples of one target into sorted leaves.

    Samples count in the bucket of their *scheduled* time, which is what makes an
    outage straddling a period boundary split cleanly between the two periods.
    """
    counts: dict[int, list[int]] = {}
    for t, outcome in samples:
        c = counts.setdefault(bucket_start(t, resolution), [0, 0, 0])
        if outcome == "good":
            c[0] += 1
            c[1] += 1
        elif outcome == "bad":
            c[1] += 1
        elif outcome == "no_data":
            c[2] += 1
        else:
            raise ValueError(f"unknown outcome {outcome!r}")
    return [Leaf(target, b, g, v, n) for b, (g, v, n) in sorted(counts.items())]


def hex0x(b: bytes) -> str:
    return "0x" + b.hex()


def evidence_document(
    sla: str,
    period: int,
    start: int,
    end: int,
    resolution: int,
    leaves: Iterable[Leaf],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """JSON-ready evidence file for one closed period (leaves sorted by target, bucket)."""
    ordered = sorted(leaves, key=lambda x: (x.target, x.bucket_start))
    doc: dict[str, Any] = {
        "format": EVIDENCE_FORMAT,
        "sla": sla,
        "period": period,
        "start": start,
        "end": end,
        "resolution": resolution,
        "root": hex0x(merkle_root(ordered)),
        "leaves": [leaf.to_json() for leaf in ordered],
    }
    if extra:
        for k, v in extra.items():
            doc.setdefault(k, v)
    return doc


def dumps_evidence(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def verify_evidence_file(data: Any) -> tuple[bool, str | None, str]:
    """Check an evidence document: (ok, computed root as 0x hex or None, message).

    Recomputes the Merkle root from the leaves and compares it with `root`; also
    checks that the leaves are canonical (unique, aligned to `resolution`, inside
    [start, end) when those are given, no all-zero leaves).
    """
    if not isinstance(data, dict):
        return False, None, "evidence must be a JSON object"
    raw = data.get("leaves")
    if not isinstance(raw, list):
        return False, None, "missing 'leaves' list"
    try:
        leaves = [Leaf.from_json(x) if isinstance(x, dict) else _bad_leaf() for x in raw]
    except ValueError as exc:
        return False, None, f"invalid leaf: {exc}"
    computed = hex0x(merkle_root(leaves))
    claimed = data.get("root")
    if not isinstance(claimed, str):
        return False, computed, "missing 'root'"
    problems: list[str] = []
    seen: set[tuple[str, int]] = set()
    res = data.get("resolution")
    start, end = data.get("start"), data.get("end")
    for i, leaf in enumerate(leaves):
        key = (leaf.target, leaf.bucket_start)
        if key in seen:
            problems.append(
                f"leaves[{i}] duplicates target {leaf.target!r} bucket {leaf.bucket_start}"
            )
        seen.add(key)
        if leaf.is_empty:
            problems.append(f"leaves[{i}] is all zero (non-canonical)")
        if isinstance(res, int) and res > 0 and leaf.bucket_start % res:
            problems.append(f"leaves[{i}] bucket_start is not a multiple of {res}")
        if (
            isinstance(start, int)
            and isinstance(end, int)
            and not (start <= leaf.bucket_start < end)
        ):
            problems.append(f"leaves[{i}] bucket_start is outside [start, end)")
    if claimed.lower() != computed:
        return False, computed, f"root mismatch: file says {claimed}, leaves give {computed}"
    if problems:
        return False, computed, "; ".join(problems[:5])
    return True, computed, f"ok: {len(leaves)} leaves, root {computed}"


def _bad_leaf() -> Leaf:
    raise ValueError("leaf must be an object")
