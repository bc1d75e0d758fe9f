"""Mutation testing of contracts/SLACompensation.sol: can the contract tests tell a broken one?

Each mutant is one textual change of the Solidity source (a flipped comparison, a removed
check or state update, an off-by-one at a deadline, a dropped event...). For each mutant the
script copies what the tests need (``contracts/``, ``slamon/``, ``tests/``, ``pyproject.toml``,
``package.json``, and a link to ``node_modules``) to a private temporary directory, writes the
mutated source there, recompiles with the pinned solc (``node contracts/compile.mjs``) and runs
the contract tests on that copy. The working tree is never touched, so people running tests on
it never see a mutant.

    python bench/mutate_contract.py                 # every mutant
    python bench/mutate_contract.py --list          # only print them
    python bench/mutate_contract.py --only 3,7 --json /tmp/m.json

A mutant is killed when compilation fails or a test fails. Equivalent mutants (no behaviour
can change) are listed in ``EQUIVALENT`` with the reason. Score = killed / (mutants -
equivalent survivors).
"""

# ruff: noqa: E501  (the mutant table quotes Solidity lines verbatim)
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "contracts/SLACompensation.sol"
TESTS = ["tests/test_contract.py", "tests/test_contract_verdict.py", "tests/test_contract_liveness.py",
         "tests/test_contract_money.py"]


@dataclass(frozen=True)
class Mutant:
    name: str
    old: str
    new: str


MUTANTS: list[Mutant] = [
    Mutant("report deadline inclusive", "if (block.timestamp >= deadline) {\n            uint64 late",
           "if (block.timestamp > deadline) {\n            uint64 late"),
    Mutant("settle before the deadline", "if (block.timestamp < deadline) revert ReportWindowOpen",
           "if (block.timestamp + 1 < deadline) revert ReportWindowOpen"),
    Mutant("period not finished off by one", "if (block.timestamp < pEnd) revert PeriodNotFinished",
           "if (block.timestamp + 1 < pEnd) revert PeriodNotFinished"),
    Mutant("settle without quorum", "if (count < c.quorum) revert NoQuorum(periodId, count, c.quorum);",
           ""),
    Mutant("settle at quorum, not at n", "if (_popcount(mask) < c.signerCount) {", "if (_popcount(mask) < c.quorum) {"),
    Mutant("upper median", "uint256 med = all[(count - 1) / 2];", "uint256 med = all[count / 2];"),
    Mutant("no sort", "        _sort(all);\n", ""),
    Mutant("even quorum accepted", "if (q % 2 == 0) revert InvalidParams(\"quorum\");", ""),
    Mutant("n < 3f + 1 accepted", "if (n < 3 * f + 1) revert InvalidParams(\"quorum\");", ""),
    Mutant("f = 0 off the dev chain", "if (f == 0 && block.chainid != DEV_CHAIN_ID) revert",
           "if (f == 0 && block.chainid == DEV_CHAIN_ID) revert"),
    Mutant("id not bound to provider", "return keccak256(abi.encode(provider, name));",
           "return keccak256(abi.encode(name));"),
    Mutant("window may equal period", "if (p.settlementWindow >= p.periodLength)",
           "if (p.settlementWindow > p.periodLength)"),
    Mutant("remainder leaves the pool", "comp = units * po.totalWeight;", ""),
    Mutant("claimed not recorded", "b.claimed += SafeCast.toUint192(amount);", ""),
    Mutant("team owed not zeroed", "_teamOwed[slaId] = 0;", ""),
    Mutant("reentrancy guard removed from claim",
           "function claim(bytes32 slaId) external nonReentrant", "function claim(bytes32 slaId) external"),
    Mutant("nominal amount credited for ERC-20",
           "received = IERC20(asset).balanceOf(address(this)) - before;", "received = amount;"),
    Mutant("withdraw ignores unsettled periods", "uint256 open = finished - uint64(st >> 32);",
           "uint256 open = 0;"),
    Mutant("withdraw ignores the running period", "if (finished < c.periodCount) ++open;", ""),
    Mutant("settled periods not counted", "_state[slaId] += 1 << 32;", ""),
    Mutant("reserve ignores the met reward", "if (reward > each) each = reward;", ""),
    Mutant("pool not reduced on withdraw", "_ledger[slaId].pool -= SafeCast.toUint96(amount);", ""),
    Mutant("policy not checked", "if (r.policyDigest != policy) revert PolicyMismatch(policy, r.policyDigest);", ""),
    Mutant("duplicate signer in a batch accepted", "if (batch & bit != 0) revert DuplicateSigner(signer);", ""),
    Mutant("signer may report twice", "if (mask & bit != 0) revert AlreadyReported(signer);", ""),
    Mutant("breach decided with <=", "bool breached = sli < c.objectivePpm;", "bool breached = sli <= c.objectivePpm;"),
    Mutant("cap not applied", "if (comp > po.maxPayoutPerPeriod) comp = po.maxPayoutPerPeriod;", ""),
    Mutant("met reward not credited", "_teamOwed[slaId] += reward;", ""),
    Mutant("PeriodSettled dropped", "emit PeriodSettled(slaId, periodId, sli, breached, compensation, root, count);", ""),
    Mutant("ReportAccepted dropped", "emit ReportAccepted(slaId, periodId, signer, r.sliPpm, r.evidenceRoot);", ""),
    Mutant("empty proof verifies", "if (proof.length == 0) return false;", ""),
    Mutant("high s accepted", "if (uint256(ss) > HALF_N) revert HighS();", ""),
    Mutant("domain separator never rebuilt",
           "return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();",
           "return _cachedDomainSeparator;"),
    Mutant("single-oracle not checked", "if (n != 1 || q != 1) revert InvalidParams(\"singleOracle\");", ""),
    Mutant("late window deadline inclusive", "if (block.timestamp >= late) {", "if (block.timestamp > late) {"),
    Mutant("quorum closes the late window at once",
           "if (_popcount(mask) >= c.quorum) {\n                    revert SettlementWindowClosed(periodId, late == 0 ? deadline : late);",
           "if (_popcount(mask) >= c.quorum || late != 0) {\n                    revert SettlementWindowClosed(periodId, deadline);"),
    Mutant("late window not stored", "_late[slaId][periodId] = late;", ""),
    Mutant("settle ignores the late deadline", "if (late != 0) deadline = late;", ""),
    Mutant("rotated-out reports still count",
           "if ((rec >> REC_VERSION_SHIFT) & 0xffff != version) {\n            // signed by a rotated-out set: void",
           "if (false) {\n            // signed by a rotated-out set: void"),
    Mutant("settle counts rotated-out reports",
           "if ((rec >> REC_VERSION_SHIFT) & 0xffff != version) rec = 0;\n        uint256 count", "uint256 count"),
    Mutant("record not tagged with the version",
           "rec = (rec & REC_ENTRIES) | (version << REC_VERSION_SHIFT) | (tag << REC_TAG_SHIFT);",
           "rec = (rec & REC_ENTRIES) | (tag << REC_TAG_SHIFT);"),
    Mutant("record not tagged with the period",
           "rec = (rec & REC_ENTRIES) | (version << REC_VERSION_SHIFT) | (tag << REC_TAG_SHIFT);",
           "rec = (rec & REC_ENTRIES) | (version << REC_VERSION_SHIFT);"),
    Mutant("held slot taken by another period",
           "} else if (rec == 0 || rec & REC_SETTLED != 0 || (rec >> REC_VERSION_SHIFT) & 0xffff != version) {",
           "} else if (true) {"),
    Mutant("overflow not marked in the lane",
           "_summaries[slaId][group] |= LANE_OVERFLOW << ((periodId % LANES) * LANE_BITS);", ""),
    Mutant("views ignore the period tag", "if (rec >> REC_TAG_SHIFT != _tag(periodId)) rec = 0;", ""),
    Mutant("slot not marked settled", "_records[slaId][loc] = loc < 2 ? rec | REC_SETTLED : 0;",
           "_records[slaId][loc] = rec;"),
    Mutant("held record not marked settled",
           "_settle(slaId, periodId, c, params, loc, rec, held ? rec : 0, batch, batchRoots);",
           "_settle(slaId, periodId, c, params, loc, rec, 0, batch, batchRoots);"),
    Mutant("settled root not stored", "_settledRoots[slaId][periodId] = root;", ""),
    Mutant("median root of the batch ignored", "bytes32 root = batch & (1 << medIdx) != 0 ? batchRoots[medIdx] : ",
           "bytes32 root = "),
    Mutant("roots of an unsettled period not stored",
           "if (batch & (1 << i) != 0) _roots[slaId][loc][i] = batchRoots[i];", ""),
    Mutant("rotation without quorum", "if (approvals.length < c.quorum) revert NoRotationQuorum",
           "if (approvals.length < 1) revert NoRotationQuorum"),
    Mutant("rotation approvals may repeat", "if (seen & (1 << slot) != 0) revert DuplicateSigner(signer);", ""),
    Mutant("rotation approved by anyone", "if (slot == 0) revert NotSigner(signer);\n            if (seen",
           "if (false) revert NotSigner(signer);\n            if (seen"),
    Mutant("rotation version not bumped", "_state[slaId] = st + 1;", ""),
    Mutant("rotation drops the tiers", "for (uint256 i = 0; i < c.tierCount; ++i) {\n            uint256 tier",
           "for (uint256 i = 0; i < 0; ++i) {\n            uint256 tier"),
    Mutant("first period id ignored in bounds", "uint64 i = periodId - c.firstPeriodId;",
           "uint64 i = periodId;"),
    Mutant("periods before the first accepted", "return periodId >= c.firstPeriodId && ",
           "return "),
    Mutant("late reports not ignored (slot)",
           "if (rec & REC_SETTLED != 0) {\n                emit LateReportsIgnored(slaId, periodId, m);\n                return;",
           "if (rec & REC_SETTLED != 0) {\n                emit LateReportsIgnored(slaId, periodId, m);"),
    Mutant("late reports not ignored (lane)",
           "if (lane & SETTLED_BIT != 0) {\n                emit LateReportsIgnored(slaId, periodId, m);\n                return;",
           "if (lane & SETTLED_BIT != 0) {\n                emit LateReportsIgnored(slaId, periodId, m);"),
]

#: name -> why no behaviour can change
EQUIVALENT: dict[str, str] = {
    # forks with a new chain id are not reproducible on py-evm or anvil within one deployment
    "domain separator never rebuilt": "the chain id of a deployed contract cannot change in a test",
}


def _copy_tree(dest: Path) -> None:
    for name in ("contracts", "slamon", "tests"):
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "package.json"):
        shutil.copy2(ROOT / name, dest / name)
    (dest / "node_modules").symlink_to(ROOT / "node_modules")


def run_mutant(m: Mutant, work: Path, examples: int) -> tuple[str, float]:
    """'killed' (compile error or failing test), 'survived', or 'invalid' (text not found)."""
    src = (ROOT / SOURCE).read_text()
    if src.count(m.old) != 1:
        return "invalid", 0.0
    started = time.monotonic()
    (work / SOURCE).write_text(src.replace(m.old, m.new))
    comp = subprocess.run(["node", "contracts/compile.mjs"], cwd=work, capture_output=True,
                          text=True, timeout=600, check=False)
    if comp.returncode != 0:
        return "killed", time.monotonic() - started
    env = {**os.environ, "PYTHONPATH": str(work), "SLAMON_MONEY_EXAMPLES": str(examples),
           "SLAMON_NO_SHRINK": "1"}
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow",
         *TESTS], cwd=work, env=env, capture_output=True, text=True, timeout=900, check=False)
    status = "survived" if test.returncode == 0 else "killed"
    return status, time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--only", help="comma-separated mutant numbers")
    ap.add_argument("--examples", type=int, default=40, help="money state machine sequences")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    chosen = list(enumerate(MUTANTS))
    if args.only:
        keep = {int(x) for x in args.only.split(",")}
        chosen = [(i, m) for i, m in chosen if i in keep]
    if args.list:
        for i, m in chosen:
            print(f"{i:3} {m.name}")
        return 0
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="slamon-mutate-sol-") as tmp:
        work = Path(tmp)
        _copy_tree(work)
        for i, m in chosen:
            status, secs = run_mutant(m, work, args.examples)
            results.append({"id": i, "name": m.name, "status": status, "seconds": round(secs, 1)})
            print(f"{i:3} {status:9} {secs:6.1f}s  {m.name}", flush=True)
    survivors = [r for r in results if r["status"] == "survived"]
    equivalent = [r for r in survivors if r["name"] in EQUIVALENT]
    valid = [r for r in results if r["status"] != "invalid"]
    killed = sum(1 for r in valid if r["status"] == "killed")
    denominator = len(valid) - len(equivalent)
    score = killed / denominator if denominator else 1.0
    print(f"killed {killed} of {len(valid)} ({len(equivalent)} equivalent): score {score:.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "score": score}, indent=2))
    return 0 if len(survivors) == len(equivalent) else 1


if __name__ == "__main__":
    raise SystemExit(main())
