"""Gas figures of SLACompensation (py-evm in process; ``--anvil`` to run on anvil).

Usage: ``python bench/gas.py [--anvil] [--json]``

Prints deploy gas, registration gas, and for n = 4 signers, f = 1 (quorum 3):
- ``n4_<mode>_<label>``: each signer sends its own report (daemon mode), gas per transaction;
  the 4th report settles the period ("all n arrived");
- ``n4_deadline_<label>``: three reports, then ``settle`` after the deadline (a signer down);
- ``single_<label>``: a single-oracle SLA, one report that settles;
for breached and met periods: "first" is the first period of a 6-period summary group (fresh
summary slot) and "second" the next one (each fills one of the two report ring slots for the
first time); "steady" is a later period (every slot it writes was written before, as in a
long-running SLA); "met_first_team_credit" is the first met period (fresh team balance slot).
Also claim gas.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chain_helpers import (
    POLICY,
    AnvilNode,
    SLAHarness,
    anvil_harness,
    pyevm_harness,
)

from slamon.chain import Report, sign_report, sla_compensation

SIGNER_KEYS = [keccak(text=f"slamon-bench-signer-{i}") for i in range(4)]
LENGTH = 1000


def _report(h: SLAHarness, sla: bytes, pid: int, start: int, sli: int, i: int) -> Report:
    s = start + pid * LENGTH
    return Report(
        sla_id=sla,
        period_id=pid,
        period_start=s,
        period_end=s + LENGTH,
        sli_ppm=sli,
        slo_ppm=999_000,
        good=sli // 1000,
        valid=1000,
        no_data=0,
        breached=sli < 999_000,
        evidence_root=keccak(text=f"root-{pid}-{i}"),
        policy_digest=POLICY,
        issued_at=s + LENGTH,
    )


def measure(h: SLAHarness) -> dict[str, Any]:
    """Run the scenarios on ``h`` and return the figures."""
    out: dict[str, Any] = {}
    art = sla_compensation()
    out["runtime_bytes"] = (len(art.deployed_bytecode) - 2) // 2
    factory = h.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    tx = factory.constructor().transact({"from": h.addr(0)})
    receipt = h.w3.eth.wait_for_transaction_receipt(tx)
    out["deploy"] = receipt["gasUsed"]
    signers = [Account.from_key(k).address for k in SIGNER_KEYS]
    chain_id, address = h.chain_id, h.contract.address
    c = h.contract

    for mode, n in (("single", 1), ("n4", 4), ("n4_deadline", 4), ("n4_batch", 4)):
        name = keccak(text=f"bench-{mode}")
        start = h.now() + 10
        params = h.sla_params(name, start, signers[:n], quorum=1 if n == 1 else 3,
                              periodCount=100)
        reg = h.send(c.functions.registerSLA(params), sender=1)
        out[f"register_{n}_signers_2_beneficiaries"] = reg["gasUsed"]
        sla = h.sla_id(name)
        h.send(c.functions.fund(sla, 10**20), sender=1, value=10**20)
        for pid, label, sli in (
            (0, "breached_first", 990_000),
            (1, "breached_second", 990_000),
            (2, "met_first_team_credit", 999_500),
            (3, "met_second", 999_600),
            (4, "breached_steady", 990_000),
            (5, "met_steady", 999_600),
        ):
            h.travel(start + (pid + 1) * LENGTH + 1)
            senders = n - 1 if mode == "n4_deadline" else n
            reps = [_report(h, sla, pid, start, sli + 100 * i, i) for i in range(senders)]
            sigs = [sign_report(r, SIGNER_KEYS[i], chain_id, address) for i, r in enumerate(reps)]
            gas = []
            if mode == "n4_batch":
                rc = h.send(c.functions.submitReports([r.as_tuple() for r in reps], sigs), sender=1)
                gas.append(rc["gasUsed"])
            else:
                for r, sig in zip(reps, sigs, strict=True):
                    rc = h.send(c.functions.submitReports([r.as_tuple()], [sig]), sender=1)
                    gas.append(rc["gasUsed"])
            if mode == "n4_deadline":
                h.travel(start + (pid + 1) * LENGTH + 500)
                rc = h.send(c.functions.settle(sla, pid), sender=1)
                gas.append(rc["gasUsed"])
            out[f"{mode}_{label}"] = gas
            out[f"{mode}_{label}_total"] = sum(gas)
        if mode == "n4":
            rc = h.send(c.functions.claim(sla), sender=3)
            out["claim_eth"] = rc["gasUsed"]
            rc = h.send(c.functions.claimTeam(sla), sender=2)
            out["claim_team_eth"] = rc["gasUsed"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anvil", action="store_true", help="run on anvil instead of py-evm")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()
    if args.anvil:
        with AnvilNode.start() as node:
            figures = measure(anvil_harness(node, sla_compensation()))
            figures["chain"] = "anvil"
    else:
        figures = measure(pyevm_harness(sla_compensation()))
        figures["chain"] = "py-evm"
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:40} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
