"""The committed contract artefacts must be what the pinned solc makes of the sources.

Needs ``npm ci`` at the repository root (solc from npm); fails, never skips, without it.
Regenerate with ``node contracts/compile.mjs``.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from slamon.chain.artefacts import ARTEFACT_NAMES, load_artefact

from .chain_helpers import REPO_ROOT, compile_sources, require_node_modules

REGENERATE = "stale artefact: run `node contracts/compile.mjs` and commit slamon/data/*.json"


def test_package_json_pins_exact_versions() -> None:
    pkg = json.loads((REPO_ROOT / "package.json").read_text())
    deps = pkg["devDependencies"]
    assert deps["solc"] == "0.8.37"
    assert deps["@foundry-rs/anvil"] == "1.7.1"
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/solc"]["version"] == "0.8.37"
    assert lock["packages"]["node_modules/@foundry-rs/anvil"]["version"] == "1.7.1"


@pytest.mark.parametrize("name", ARTEFACT_NAMES)
def test_source_hashes_match(name: str) -> None:
    """Fast check without node: the artefact was built from the sources as they are now."""
    art = load_artefact(name)
    for path, digest in art.sources.items():
        actual = hashlib.sha256((REPO_ROOT / path).read_bytes()).hexdigest()
        assert actual == digest, f"{path} changed since {name}.json was built; {REGENERATE}"
    combined = hashlib.sha256(
        "".join(f"{p}\n{art.sources[p]}\n" for p in sorted(art.sources)).encode()
    ).hexdigest()
    assert combined == art.sources_sha256
    assert art.compiler_version.startswith("0.8.37+")
    assert art.settings["evmVersion"] in ("cancun", "prague")


def test_recompile_matches_committed_artefacts() -> None:
    require_node_modules()  # raises with "run `npm ci`" if node_modules is missing
    fresh = compile_sources()
    assert set(fresh) == set(ARTEFACT_NAMES)
    for name in ARTEFACT_NAMES:
        committed = load_artefact(name)
        new = fresh[name]
        assert new.abi == committed.abi, f"{name}: ABI differs; {REGENERATE}"
        assert new.bytecode == committed.bytecode, f"{name}: bytecode differs; {REGENERATE}"
        assert new.deployed_bytecode == committed.deployed_bytecode, (
            f"{name}: deployedBytecode differs; {REGENERATE}"
        )
        assert new.compiler_version == committed.compiler_version
        assert new.settings == committed.settings
        assert new.sources_sha256 == committed.sources_sha256, REGENERATE
    runtime = (len(load_artefact("SLACompensation").deployed_bytecode) - 2) // 2
    assert runtime <= 24_576, "SLACompensation exceeds the EIP-170 code size limit"
