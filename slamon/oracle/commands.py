"""Oracle commands: ``slamon keys new`` and ``slamon report verify``.

Each ``configure_*`` fills the parser ``slamon.cli`` made for it and sets ``func``, which
returns the exit code, as the other commands do.

Exit codes: 0 ok, 1 failed (invalid signature, wrong signer, key file problem), 2 unusable
input (unreadable or malformed file, bad arguments). No traceback is ever shown.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from eth_utils.address import is_address, to_checksum_address

from slamon.chain.eip712 import InvalidSignature, SignedReport, recover_signer, report_digest
from slamon.util.args import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from slamon.util.args import error as _err

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "configure_keys_new", "configure_report_verify"]

def _address(value: str) -> str:
    if not is_address(value):
        raise argparse.ArgumentTypeError(f"not an address: {value!r} (0x + 40 hex digits)")
    return to_checksum_address(value)


def _chain_id(value: str) -> int:
    try:
        n = int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a chain id: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("chain id must be >= 1")
    return n


# -- keys new ------------------------------------------------------------------------------


def _cmd_keys_new(args: argparse.Namespace) -> int:
    from slamon.oracle.keys import KeyLoadError, new_keystore

    try:
        address, created = new_keystore(args.keystore, args.password_file, kdf=args.kdf)
    except KeyLoadError as exc:
        _err(str(exc))
        return EXIT_FAIL
    if created:
        print(f"wrote a random password to {args.password_file} (mode 0600)", file=sys.stderr)
    print(f"wrote keystore {args.keystore} (mode 0600)", file=sys.stderr)
    print(address)
    return EXIT_OK


# -- report verify -------------------------------------------------------------------------


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.buffer.read().decode("utf-8")
    with open(name, encoding="utf-8") as f:
        return f.read()


def _consistency(signed: SignedReport) -> list[str]:
    """The contract's InconsistentReport rules (docs/contract.md)."""
    r = signed.report
    problems = []
    if r.good > r.valid:
        problems.append(f"good ({r.good}) > valid ({r.valid})")
    if r.breached != (r.sli_ppm < r.slo_ppm):
        problems.append(
            f"breached={r.breached} but sliPpm {r.sli_ppm} vs sloPpm {r.slo_ppm} says "
            f"{r.sli_ppm < r.slo_ppm}"
        )
    if r.issued_at < r.period_end:
        problems.append(f"issuedAt {r.issued_at} is before periodEnd {r.period_end}")
    return problems


def _verify_one(
    data: Any, chain_id: int, contract: str, signer: str | None
) -> tuple[int, list[str]]:
    if not isinstance(data, dict):
        return EXIT_USAGE, ["expected a signed report (a JSON object)"]
    try:
        signed = SignedReport.from_json_dict(data, verify=False)
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        return EXIT_USAGE, [f"not a signed report: {detail}"]
    digest = report_digest(signed.report, chain_id, contract)
    try:
        recovered = recover_signer(signed.report, signed.signature, chain_id, contract)
    except InvalidSignature as exc:
        return EXIT_FAIL, [f"invalid signature: {exc}"]
    problems: list[str] = []
    if (signed.chain_id, signed.contract) != (chain_id, contract):
        problems.append(
            f"the report is bound to chain {signed.chain_id} contract {signed.contract}, "
            f"not chain {chain_id} contract {contract}"
        )
    if recovered != signed.signer:
        problems.append(
            f"the signature recovers {recovered}, not the stated signer {signed.signer}: "
            "it was signed for another domain or the report was altered"
        )
    if signer is not None and recovered != signer:
        problems.append(f"signed by {recovered}, not by the expected signer {signer}")
    stated = data.get("digest")
    if isinstance(stated, str) and stated.lower() != "0x" + digest.hex():
        problems.append(f"stated digest {stated} differs from the computed 0x{digest.hex()}")
    problems.extend(_consistency(signed))
    if problems:
        return EXIT_FAIL, problems
    r = signed.report
    verdict = "breached" if r.breached else "met"
    return EXIT_OK, [
        "signature valid",
        f"signer: {recovered}",
        f"digest: 0x{digest.hex()}",
        f"sla: 0x{r.sla_id.hex()} period {r.period_id} [{r.period_start}, {r.period_end})",
        f"sli_ppm: {r.sli_ppm} slo_ppm: {r.slo_ppm} ({verdict}) good: {r.good} "
        f"valid: {r.valid} no_data: {r.no_data}",
    ]


def verify_report_text(
    text: str, chain_id: int, contract: str, signer: str | None = None
) -> tuple[int, list[str], list[str]]:
    """Check a signed report (outbox file, API entry, or a JSON list of them, as
    ``/api/v1/attestations/{sla}/{period}`` returns) for one EIP-712 domain.

    Returns ``(exit code, output lines, error lines)``; the code is the worst of the
    entries' (2 unusable > 1 invalid > 0 valid).
    """
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        return EXIT_USAGE, [], [f"not JSON: {exc}"]
    contract = to_checksum_address(contract)
    if not isinstance(data, list):
        code, lines = _verify_one(data, chain_id, contract, signer)
        return (code, lines, []) if code == EXIT_OK else (code, [], lines)
    if not data:
        return EXIT_USAGE, [], ["empty list: no signed report to check"]
    worst = EXIT_OK
    out: list[str] = []
    errors: list[str] = []
    for i, item in enumerate(data):
        code, lines = _verify_one(item, chain_id, contract, signer)
        worst = max(worst, code)
        (out if code == EXIT_OK else errors).extend(f"[{i}] {line}" for line in lines)
    return worst, out, errors


def _cmd_report_verify(args: argparse.Namespace) -> int:
    try:
        text = _read(args.file)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _err(f"cannot read {args.file}: {reason}")
        return EXIT_USAGE
    code, out, errors = verify_report_text(text, args.chain_id, args.contract, args.signer)
    for line in out:
        print(line)
    for line in errors:
        _err(f"{args.file}: {line}")
    return code


# -- parsers (listed in slamon.cli.PLUGINS) ----------------------------------------------


def configure_keys_new(q: argparse.ArgumentParser) -> None:
    """`slamon keys new`."""
    q.add_argument("--keystore", required=True, help="keystore file to create (never overwritten)")
    q.add_argument(
        "--password-file",
        required=True,
        help="password file; created with a random password (mode 0600) if absent",
    )
    q.add_argument("--kdf", choices=("scrypt", "pbkdf2"), default="scrypt")
    q.set_defaults(func=_cmd_keys_new)


def configure_report_verify(q: argparse.ArgumentParser) -> None:
    """`slamon report verify`."""
    q.add_argument("file", help="signed report JSON (outbox file or API entry), or - for stdin")
    q.add_argument("--contract", required=True, type=_address, help="SLACompensation address")
    q.add_argument("--chain-id", required=True, type=_chain_id, help="chain id")
    q.add_argument("--signer", type=_address, help="expected signer address")
    q.set_defaults(func=_cmd_report_verify)
