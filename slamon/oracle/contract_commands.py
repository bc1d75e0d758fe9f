"""`slamon contract deploy|register|approve-rotation|rotate-signers`: the compensation
contract on a chain.

Meant for development chains and first set-ups, and for renewing an SLA's signer set: each
current signer runs `approve-rotation` with its own key and hands the printed approval to
whoever runs `rotate-signers`. The key comes from a keystore (+ password file) or, for
development only, an environment variable.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from slamon.chain.tx import (
    ChainTxError,
    PayoutRule,
    deploy_contract,
    register_sla,
    send_tx,
    sla_params,
)
from slamon.util.args import EXIT_FAIL, EXIT_OK, EXIT_USAGE, add_config_argument
from slamon.util.args import error as _err

T = TypeVar("T")


def _key(args: argparse.Namespace) -> Any:
    """The deployer's Signer; None after printing why not."""
    from slamon.config.oracle import KeyConfig
    from slamon.oracle.keys import KeyLoadError, load_signer
    from slamon.util.log import get_logger

    try:
        cfg = KeyConfig(keystore=args.keystore, password_file=args.password_file,
                        dev_key_env=args.key_env)
    except Exception:
        _err("give --keystore and --password-file, or --key-env VAR (development only)")
        return None
    try:
        signer = load_signer(cfg, log=get_logger())
    except KeyLoadError as exc:
        _err(str(exc))
        return None
    return signer


def _web3(url: str) -> Any:
    from web3 import Web3

    from slamon.util.redact import redact_url

    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 15}))
    try:
        w3.eth.chain_id  # noqa: B018 - a cheap reachability check
    except Exception:
        raise ChainTxError(f"cannot reach {redact_url(url)}") from None
    return w3


def _cmd_deploy(args: argparse.Namespace) -> int:
    key = _key(args)
    if key is None:
        return EXIT_USAGE
    try:
        w3 = _web3(args.rpc_url)
        address = deploy_contract(w3, key)
    except ChainTxError as exc:
        _err(str(exc))
        return EXIT_FAIL
    print(address)
    return EXIT_OK


def _weights(items: list[str]) -> tuple[list[str], list[int]]:
    addresses, weights = [], []
    for item in items:
        address, _, weight = item.partition(":")
        addresses.append(address)
        weights.append(int(weight or "1"))
    return addresses, weights


def _cmd_register(args: argparse.Namespace) -> int:
    from slamon.config.loader import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    if args.sla not in {s.id for s in config.slas}:
        _err(f"unknown SLA {args.sla!r}; known: {', '.join(s.id for s in config.slas) or 'none'}")
        return EXIT_USAGE
    key = _key(args)
    if key is None:
        return EXIT_USAGE
    try:
        beneficiaries, weights = _weights(args.beneficiary)
    except ValueError:
        _err("--beneficiary takes ADDRESS or ADDRESS:WEIGHT")
        return EXIT_USAGE
    try:
        n = len(args.signer)
        # default: the largest f with n >= 3f + 1, quorum 2f + 1; one signer only if explicit
        quorum = args.quorum if args.quorum is not None else 2 * ((n - 1) // 3) + 1
        params, start = sla_params(
            config, args.sla, signers=args.signer, quorum=quorum,
            single_oracle=args.single_oracle, team=args.team,
            beneficiaries=beneficiaries, weights=weights, now=time.time(),
            rule=PayoutRule(args.rate_per_ppm, args.max_payout, args.met_reward),
        )
        w3 = _web3(args.rpc_url)
        register_sla(w3, args.contract, key, params, fund_wei=args.fund)
    except ChainTxError as exc:
        _err(str(exc))
        return EXIT_FAIL
    except Exception as exc:  # web3 validation errors: show the message, not a traceback
        _err(f"registration failed: {exc}")
        return EXIT_FAIL
    print(f"registered {args.sla} (on-chain id 0x{params[0].hex()}), first period "
          f"{params[-1]} starts {start}")
    print(f"oracle.schedule_starts: {{{args.sla}: {start}}}")
    return EXIT_OK


def _sla_id(text: str) -> bytes:
    raw = text.removeprefix("0x")
    if len(raw) != 64:
        raise ValueError("--sla-id takes the on-chain id: 0x and 64 hex digits")
    return bytes.fromhex(raw)


def _revert_name(exc: Exception) -> str | None:
    """The contract's custom error in a web3 revert, by name (None: not a revert)."""
    from eth_utils.crypto import keccak
    from web3.exceptions import ContractLogicError

    from slamon.chain.artefacts import sla_compensation

    if not isinstance(exc, ContractLogicError):
        return None
    data = exc.data if isinstance(exc.data, str) else ""
    for item in sla_compensation().abi:
        if item.get("type") == "error":
            sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            if data.startswith("0x" + keccak(text=sig)[:4].hex()):
                return str(item["name"])
    return "unknown"


def _rotation_args(args: argparse.Namespace) -> tuple[bytes, list[str], int]:
    from eth_utils.address import is_address, to_checksum_address

    bad = [a for a in args.signer if not is_address(a)]
    if bad:
        raise ValueError(f"--signer {bad[0]!r} is not an address")
    return _sla_id(args.sla_id), [to_checksum_address(a) for a in args.signer], args.quorum


def _on_contract(args: argparse.Namespace, failure: str,
                 action: Callable[[Any, Any], T]) -> T | None:
    """Run ``action(w3, contract)`` against --rpc-url and --contract; None after printing
    why it failed (the contract's error by name, never a traceback)."""
    from slamon.chain.artefacts import sla_compensation

    try:
        w3 = _web3(args.rpc_url)
        contract = w3.eth.contract(address=w3.to_checksum_address(args.contract),
                                   abi=sla_compensation().abi)
        return action(w3, contract)
    except ChainTxError as exc:
        _err(str(exc))
    except Exception as exc:
        _err(f"{failure}: {_revert_name(exc) or type(exc).__name__}")
    return None


def _cmd_approve_rotation(args: argparse.Namespace) -> int:
    try:
        sla_id, signers, quorum = _rotation_args(args)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    key = _key(args)
    if key is None:
        return EXIT_USAGE

    def approve(w3: Any, contract: Any) -> tuple[int, bytes]:
        version = int(contract.functions.getSLA(sla_id).call()[20]) + 1
        return version, key.sign_rotation(sla_id, version, signers, quorum,
                                          int(w3.eth.chain_id), contract.address)

    done = _on_contract(args, "cannot read the SLA", approve)
    if done is None:
        return EXIT_FAIL
    version, approval = done
    print(f"0x{approval.hex()}")
    print(f"approves signer set version {version} of 0x{sla_id.hex()} as {key.address}",
          file=sys.stderr)
    return EXIT_OK


def _cmd_rotate_signers(args: argparse.Namespace) -> int:
    try:
        sla_id, signers, quorum = _rotation_args(args)
        approvals = [bytes.fromhex(a.removeprefix("0x")) for a in args.approval]
    except ValueError as exc:
        _err(str(exc) if "--" in str(exc) else "--approval takes 0x and 130 hex digits")
        return EXIT_USAGE
    key = _key(args)
    if key is None:
        return EXIT_USAGE

    def rotate(w3: Any, contract: Any) -> int:
        send_tx(w3, key, contract.functions.rotateSigners(sla_id, signers, quorum, approvals))
        return int(contract.functions.getSLA(sla_id).call()[20])

    version = _on_contract(args, "rotation refused", rotate)
    if version is None:
        return EXIT_FAIL
    print(f"signer set version {version} of 0x{sla_id.hex()}: {', '.join(signers)}, "
          f"quorum {quorum}")
    return EXIT_OK


def _key_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keystore", help="encrypted JSON keystore of the sending account")
    p.add_argument("--password-file", help="file holding the keystore password")
    p.add_argument("--key-env", help="env var with a raw private key (development only)")
    p.add_argument("--rpc-url", required=True, help="JSON-RPC endpoint, e.g. http://127.0.0.1:8545")


def configure_deploy(p: argparse.ArgumentParser) -> None:
    """`slamon contract deploy`: prints the new contract's address."""
    _key_args(p)
    p.set_defaults(func=_cmd_deploy)


def configure_register(p: argparse.ArgumentParser) -> None:
    """`slamon contract register`: a configured SLA, starting this period."""
    _key_args(p)
    add_config_argument(p)
    p.add_argument("--sla", required=True, help="SLA id from the config")
    p.add_argument("--contract", required=True, help="SLACompensation address")
    p.add_argument("--signer", action="append", required=True, help="oracle address (repeat)")
    p.add_argument("--quorum", type=int, default=None,
                   help="2f + 1 reports needed (default: the largest f with n >= 3f + 1)")
    p.add_argument("--single-oracle", action="store_true",
                   help="one signer, no fault tolerance (shown on-chain as such)")
    p.add_argument("--team", required=True, help="address paid the reward for a met period")
    p.add_argument("--beneficiary", action="append", required=True,
                   help="ADDRESS[:WEIGHT] compensated on a breach (repeat)")
    p.add_argument("--fund", type=int, default=0, help="wei to put in the pool (ETH)")
    p.add_argument("--rate-per-ppm", type=int, default=PayoutRule.rate_per_ppm_wei)
    p.add_argument("--max-payout", type=int, default=PayoutRule.max_payout_per_period_wei)
    p.add_argument("--met-reward", type=int, default=PayoutRule.met_reward_wei)
    p.set_defaults(func=_cmd_register)


def _rotation_common(p: argparse.ArgumentParser) -> None:
    _key_args(p)
    p.add_argument("--contract", required=True, help="SLACompensation address")
    p.add_argument("--sla-id", required=True, help="the SLA's on-chain id (0x + 64 hex digits)")
    p.add_argument("--signer", action="append", required=True,
                   help="address of the new set (repeat, in order)")
    p.add_argument("--quorum", type=int, required=True, help="the new set's quorum, 2f + 1")


def configure_approve_rotation(p: argparse.ArgumentParser) -> None:
    """`slamon contract approve-rotation`: one current signer approves a new set."""
    _rotation_common(p)
    p.set_defaults(func=_cmd_approve_rotation)


def configure_rotate_signers(p: argparse.ArgumentParser) -> None:
    """`slamon contract rotate-signers`: install a new set with a quorum of approvals."""
    _rotation_common(p)
    p.add_argument("--approval", action="append", required=True,
                   help="a current signer's approval from approve-rotation (repeat)")
    p.set_defaults(func=_cmd_rotate_signers)
