"""keccak256 is Ethereum's Keccak (the pre-standard SHA-3 padding) whichever library
computes it: safe-pysha3's C where its wheel is installed, pycryptodome elsewhere. The
evidence roots, SLA ids and policy digests the contract checks depend on it bit for bit."""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slamon.util import keccak

#: keccak256 of "" and of "abc", as Ethereum (and solidity's keccak256) computes them
VECTORS = {
    b"": "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",
    b"abc": "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45",
}


@pytest.fixture
def without_pysha3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """slamon.util.keccak as imported where safe-pysha3 is not installed."""
    monkeypatch.setitem(sys.modules, "sha3", None)  # `from sha3 import ...` now fails
    try:
        yield importlib.reload(keccak)
    finally:
        monkeypatch.delitem(sys.modules, "sha3")
        importlib.reload(keccak)


def test_the_fast_keccak_is_in_use_where_its_wheel_is_installed() -> None:
    # a dependency on Linux x86-64/ARM64 with CPython < 3.14 (pyproject.toml), as here
    assert keccak.keccak256 is not keccak.keccak256_pycryptodome
    for data, digest in VECTORS.items():
        assert keccak.keccak256(data).hex() == digest
        # not SHA3-256, whose padding differs
        assert hashlib.sha3_256(data).hexdigest() != digest


def test_without_pysha3_pycryptodome_gives_the_same_hashes(without_pysha3: object) -> None:
    module = without_pysha3
    assert module.keccak256 is module.keccak256_pycryptodome  # type: ignore[attr-defined]
    for data, digest in VECTORS.items():
        assert module.keccak256(data).hex() == digest  # type: ignore[attr-defined]


@given(st.binary(max_size=300))
def test_both_libraries_agree(data: bytes) -> None:
    assert keccak.keccak256(data) == keccak.keccak256_pycryptodome(data)
    assert len(keccak.keccak256(data)) == 32
