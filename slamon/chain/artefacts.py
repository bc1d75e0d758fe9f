"""Compiled contract artefacts shipped as package data (``slamon/data/*.json``).

The artefacts are produced by ``node contracts/compile.mjs`` with the pinned solc and are
checked against the Solidity sources by ``tests/test_artefact.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["ARTEFACT_NAMES", "Artefact", "erc20_test_token", "load_artefact", "sla_compensation"]

ARTEFACT_NAMES = ("SLACompensation", "TestToken")


@dataclass(frozen=True, slots=True)
class Artefact:
    """One compiled contract."""

    contract_name: str
    source_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    settings: dict[str, Any]
    sources: dict[str, str]
    sources_sha256: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artefact:
        """Build from the JSON written by ``contracts/compile.mjs``."""
        return cls(
            contract_name=str(data["contractName"]),
            source_name=str(data["sourceName"]),
            abi=list(data["abi"]),
            bytecode=str(data["bytecode"]),
            deployed_bytecode=str(data["deployedBytecode"]),
            compiler_version=str(data["compiler"]["version"]),
            settings=dict(data["settings"]),
            sources={str(k): str(v) for k, v in data["sources"].items()},
            sources_sha256=str(data["sourcesSha256"]),
        )


@cache
def load_artefact(name: str) -> Artefact:
    """Load the artefact of contract ``name`` from the package data."""
    if name not in ARTEFACT_NAMES:
        raise KeyError(f"unknown contract artefact {name!r}; known: {', '.join(ARTEFACT_NAMES)}")
    text = resources.files("slamon").joinpath("data", f"{name}.json").read_text("utf-8")
    return Artefact.from_json(json.loads(text))


def sla_compensation() -> Artefact:
    """The ``SLACompensation`` artefact."""
    return load_artefact("SLACompensation")


def erc20_test_token() -> Artefact:
    """The ``TestToken`` (minimal mintable ERC-20) artefact."""
    return load_artefact("TestToken")
