"""Merkle evidence: OpenZeppelin known answers, proofs, evidence files."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slamon.sla.evidence import (
    ZERO_ROOT,
    Leaf,
    StandardTree,
    dumps_evidence,
    evidence_document,
    hex0x,
    leaves_from_samples,
    make_tree,
    merkle_root,
    proof,
    target_id_bytes32,
    verify,
    verify_evidence_file,
)

# Known answers produced with the real JS library (@openzeppelin/merkle-tree 1.0.8,
# installed in /tmp, not in the repo):
#   StandardMerkleTree.of(values, ["bytes32","uint64","uint32","uint32","uint32"])
# with values [keccak256(utf8(target)), bucketStart, good, valid, noData].
OZ_TARGET_IDS = {
    "api": "0x495c780bd8fc34c004bd5d2a1aff5e8b935fed6a72777bebedc4a94c84a2ded4",
    "web": "0x9042323cd85c6576992d211de34b3ecc183f15e4f639aa87859882f839c374e5",
}
OZ_LEAVES = [
    Leaf("api", 1704067200, 2, 2, 0),
    Leaf("api", 1704067260, 1, 2, 0),
    Leaf("web", 1704067200, 0, 0, 2),
    Leaf("web", 1704067260, 4294967295, 4294967295, 7),
    Leaf("api", 1704067320, 0, 2, 1),
]
OZ_LEAF_HASHES = [
    "0x3d2f3b7f15980bf9014812294ecc12ffbe021e178f141c633c0aa0a835a9450b",
    "0xce65d92a91b0dd3e403f7189810b37c4d329cb90ae08decad17bdb7e36ea4d70",
    "0xffb3c73db2d2a3bbc71d46b965454f3e27a287d877cb4a75d7e6ad9a78dad8ef",
    "0x42624d0cc29174945fb9b1b90abd7cdb5be9b440398d49f9e020794da0a5c795",
    "0x878eb3e90ff0a1d377dbfe20453dfb22cdd536cb7602147f9bd3fa14f6cccf03",
]
OZ_ROOT_1 = "0x3d2f3b7f15980bf9014812294ecc12ffbe021e178f141c633c0aa0a835a9450b"
OZ_ROOT_2 = "0x84d4f37cc0f2f7e6357144be7590e6163c65d358309b84b9cbb81b716bccb35d"
OZ_ROOT_5 = "0xf4c49cda31e21b3da4bbecd902d9ba13d31fb74a4dbe83256c28ba6c8a484a38"
OZ_PROOFS_5 = [
    [
        "0x42624d0cc29174945fb9b1b90abd7cdb5be9b440398d49f9e020794da0a5c795",
        "0xffb3c73db2d2a3bbc71d46b965454f3e27a287d877cb4a75d7e6ad9a78dad8ef",
        "0xb7095335220c200e4e1203ed68fb64371281d4df341aae933f253127305f4ff4",
    ],
    [
        "0x878eb3e90ff0a1d377dbfe20453dfb22cdd536cb7602147f9bd3fa14f6cccf03",
        "0xf1b21bb4a97d3bbd1419917d99640e54afab04a3470c188788305e32395bc25b",
    ],
    [
        "0xcf73baa1b6bee32b585b021c649a4b8651dc63ced60ca4af46a4381dbb5bb5da",
        "0xb7095335220c200e4e1203ed68fb64371281d4df341aae933f253127305f4ff4",
    ],
    [
        "0x3d2f3b7f15980bf9014812294ecc12ffbe021e178f141c633c0aa0a835a9450b",
        "0xffb3c73db2d2a3bbc71d46b965454f3e27a287d877cb4a75d7e6ad9a78dad8ef",
        "0xb7095335220c200e4e1203ed68fb64371281d4df341aae933f253127305f4ff4",
    ],
    [
        "0xce65d92a91b0dd3e403f7189810b37c4d329cb90ae08decad17bdb7e36ea4d70",
        "0xf1b21bb4a97d3bbd1419917d99640e54afab04a3470c188788305e32395bc25b",
    ],
]


def test_openzeppelin_known_answers() -> None:
    for name, expected in OZ_TARGET_IDS.items():
        assert hex0x(target_id_bytes32(name)) == expected
    assert [hex0x(leaf.hash()) for leaf in OZ_LEAVES] == OZ_LEAF_HASHES
    assert hex0x(merkle_root(OZ_LEAVES[:1])) == OZ_ROOT_1
    assert hex0x(merkle_root(OZ_LEAVES[:2])) == OZ_ROOT_2
    tree = StandardTree.of(OZ_LEAVES)
    assert hex0x(tree.root) == OZ_ROOT_5
    for i, expected_proof in enumerate(OZ_PROOFS_5):
        assert [hex0x(p) for p in tree.proof(i)] == expected_proof
        assert verify(tree.proof(i), tree.root, OZ_LEAVES[i].hash())


def test_empty_root_is_zero_and_unprovable() -> None:
    assert merkle_root([]) == ZERO_ROOT
    assert not verify([], ZERO_ROOT, OZ_LEAVES[0].hash())
    with pytest.raises(ValueError):
        make_tree([])


leaves_st = st.lists(
    st.builds(
        lambda t, b, g, extra, n: Leaf(t, b * 60, g, g + extra, n),
        st.sampled_from(["api", "web", "login", "ü-ñ"]),
        st.integers(0, 2**20),
        st.integers(0, 1000),
        st.integers(0, 1000),
        st.integers(0, 1000),
    ),
    min_size=1,
    max_size=24,
    unique_by=lambda x: (x.target, x.bucket_start),
)


@settings(max_examples=80, deadline=None)
@given(leaves_st, st.randoms(use_true_random=False))
def test_every_proof_verifies_and_root_is_order_independent(
    leaves: list[Leaf], rnd: object
) -> None:
    tree = StandardTree.of(leaves)
    for i, leaf in enumerate(leaves):
        p = tree.proof(i)
        assert verify(p, tree.root, leaf.hash())
        assert tree.tree[tree.index_of[i]] == leaf.hash()
        assert proof(list(tree.tree), tree.index_of[i]) == p
    shuffled = list(leaves)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert merkle_root(shuffled) == tree.root
    # a changed count is not provable against the root
    bumped = Leaf(leaves[0].target, leaves[0].bucket_start, 0, leaves[0].valid + 1, 0)
    assert not verify(tree.proof(0), tree.root, bumped.hash())


def test_proof_rejects_internal_index() -> None:
    for n in range(1, 12):
        tree = list(StandardTree.of(Leaf("api", 60 * i, 1, 1, 0) for i in range(n)).tree)
        for index in range(-1, len(tree) + 2):
            if 0 <= index < len(tree) and 2 * index + 1 >= len(tree):  # the leaves
                assert verify(proof(tree, index), tree[0], tree[index])
            else:
                with pytest.raises(ValueError, match="not a leaf"):
                    proof(tree, index)


def test_empty_root_is_32_zero_bytes() -> None:
    # a bytes32 on-chain: "0x" and 64 zeros
    assert merkle_root([]) == bytes(32)
    assert hex0x(merkle_root([])) == "0x" + "0" * 64


def test_leaf_field_ranges_are_the_abi_types() -> None:
    top = Leaf("api", 2**64 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1)  # uint64, uint32 x 3
    assert len(top.encode()) == 5 * 32 and len(top.hash()) == 32
    assert Leaf("api", 2**63, 0, 0, 2**31).hash() != Leaf("api", 2**63, 0, 0, 2**31 - 1).hash()
    with pytest.raises(ValueError):
        Leaf("api", 2**64, 0, 0, 0)
    with pytest.raises(ValueError):
        Leaf("api", 0, 0, 0, 2**32)


@pytest.mark.parametrize("bad", [True, 60.0, "60", None])
def test_leaf_from_json_wants_integers(bad: object) -> None:
    good = {"target": "api", "bucket_start": 60, "good": 1, "valid": 1, "no_data": 0}
    assert Leaf.from_json(good) == Leaf("api", 60, 1, 1, 0)
    for key in ("bucket_start", "good", "valid", "no_data"):
        with pytest.raises(ValueError, match="integer"):
            Leaf.from_json({**good, key: bad})


def test_dumps_evidence_is_the_document_in_its_own_key_order() -> None:
    doc = _doc()
    text = dumps_evidence(doc)
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert json.loads(text) == doc
    assert list(json.loads(text)) == list(doc)  # "format" first, not sorted
    # the text itself: two-space indentation, one trailing newline
    small = {"format": "slamon-evidence/1", "leaves": [{"good": 1}]}
    assert dumps_evidence(small) == (
        '{\n  "format": "slamon-evidence/1",\n  "leaves": [\n    {\n      "good": 1\n'
        "    }\n  ]\n}\n"
    )


def test_leaf_validation() -> None:
    with pytest.raises(ValueError):
        Leaf("api", 0, 3, 2, 0)
    with pytest.raises(ValueError):
        Leaf("api", 0, 0, 2**32, 0)
    with pytest.raises(ValueError):
        Leaf("api", -60, 0, 0, 0)


def test_leaves_from_samples_buckets_by_scheduled_time() -> None:
    samples = [(59.9, "good"), (60.0, "bad"), (61, "no_data"), (130, "good"), (0, "bad")]
    leaves = leaves_from_samples("api", samples, 60)  # type: ignore[arg-type]
    assert leaves == [Leaf("api", 0, 1, 2, 0), Leaf("api", 60, 0, 1, 1), Leaf("api", 120, 1, 1, 0)]


def _doc() -> dict[str, object]:
    leaves = [Leaf("api", 1704067200, 2, 2, 0), Leaf("web", 1704067260, 1, 2, 1)]
    return evidence_document("gold", 648, 1704067200, 1706745600, 60, leaves)


def test_evidence_file_roundtrip_and_tampering() -> None:
    doc = json.loads(json.dumps(_doc()))
    ok, root, msg = verify_evidence_file(doc)
    assert ok and root == doc["root"] and "2 leaves" in msg

    tampered = json.loads(json.dumps(doc))
    tampered["leaves"][0]["good"] = 1
    ok, root, msg = verify_evidence_file(tampered)
    assert not ok and root != doc["root"] and "mismatch" in msg

    upper = dict(doc, root=str(doc["root"]).upper().replace("0X", "0x"))
    assert verify_evidence_file(upper)[0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["leaves"].append(dict(d["leaves"][0])), "duplicates"),
        (lambda d: d["leaves"].append({**d["leaves"][0], "bucket_start": 1704067230}), "multiple"),
        (lambda d: d["leaves"].append({**d["leaves"][0], "bucket_start": 1600000000}), "outside"),
        (
            lambda d: d["leaves"].append(
                {"target": "x", "bucket_start": 1704067200, "good": 0, "valid": 0, "no_data": 0}
            ),
            "all zero",
        ),
    ],
)
def test_evidence_file_canonical_checks(mutate: object, message: str) -> None:
    doc = json.loads(json.dumps(_doc()))
    mutate(doc)  # type: ignore[operator]
    doc["root"] = hex0x(merkle_root(Leaf.from_json(x) for x in doc["leaves"]))
    ok, _, msg = verify_evidence_file(doc)
    assert not ok and message in msg


def test_evidence_file_leaf_at_the_end_is_outside() -> None:
    doc = json.loads(json.dumps(_doc()))
    doc["leaves"].append({**doc["leaves"][0], "bucket_start": doc["end"]})
    doc["root"] = hex0x(merkle_root(Leaf.from_json(x) for x in doc["leaves"]))
    ok, _, msg = verify_evidence_file(doc)
    assert not ok and "outside" in msg


def test_evidence_file_without_a_usable_resolution_skips_the_alignment_check() -> None:
    for res in (0, -60, None, "60"):
        doc = json.loads(json.dumps(_doc()))
        doc["resolution"] = res
        doc["leaves"][0]["bucket_start"] += 1
        doc["root"] = hex0x(merkle_root(Leaf.from_json(x) for x in doc["leaves"]))
        ok, _, msg = verify_evidence_file(doc)
        assert ok, msg


def test_evidence_file_message_names_the_first_five_problems() -> None:
    doc = json.loads(json.dumps(_doc()))
    for i in range(7):  # seven leaves off the 60 s grid
        doc["leaves"].append({**doc["leaves"][0], "target": f"t{i}", "bucket_start": 1704067201})
    doc["root"] = hex0x(merkle_root(Leaf.from_json(x) for x in doc["leaves"]))
    ok, _, msg = verify_evidence_file(doc)
    assert not ok
    assert [f"leaves[{i}]" in msg for i in range(2, 9)] == [True] * 5 + [False] * 2


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"root": "0x00"},
        {"leaves": [{"target": "a"}], "root": "0x"},
        {"leaves": [{"target": "a", "bucket_start": 0, "good": 1, "valid": 0, "no_data": 0}]},
        {"leaves": ["x"], "root": "0x"},
        {"leaves": [{"target": 1, "bucket_start": 0, "good": 0, "valid": 0, "no_data": 1}]},
        {"leaves": [{"target": "a", "bucket_start": True, "good": 0, "valid": 0, "no_data": 1}]},
        {"leaves": []},
    ],
)
def test_evidence_file_malformed(doc: object) -> None:
    ok, _, msg = verify_evidence_file(doc)
    assert not ok and msg
