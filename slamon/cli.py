"""Command line: `slamon run|check-config|probe|demo|evidence verify|export`.

Never shows a traceback to a user.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from slamon import __version__

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


def _err(message: str) -> None:
    print(f"slamon: error: {message}", file=sys.stderr)


def _run_async(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop when installed (faster probe path), else the stdlib loop."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def _load(path: str) -> Any:
    """Load a config, printing every error; returns None when invalid."""
    from slamon.config.loader import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        n = len(exc.errors)
        print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.file)
    if config is None:
        return EXIT_USAGE
    kinds: dict[str, int] = {}
    for t in config.targets:
        kinds[t.kind] = kinds.get(t.kind, 0) + 1
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(
        f"{args.file}: OK: {_count(len(config.targets), 'target')}"
        + (f" ({detail})" if detail else "")
        + f", {_count(len(config.slos), 'SLO')}, {_count(len(config.slas), 'SLA')}"
        + f", {_count(len(config.maintenance), 'maintenance window')}"
    )
    return EXIT_OK


def _start_daemon(config: Any, config_path: str, before: Any = None, after: Any = None) -> int:
    from slamon.app.daemon import Daemon, StartupError
    from slamon.config.loader import load_config
    from slamon.util.log import configure_logging

    configure_logging(config.logging.level, config.logging.format)

    async def main() -> int:
        if before is not None:
            await before()
        daemon = Daemon(config, config_path=config_path, loader=load_config)
        try:
            await daemon.run()
        except StartupError as exc:
            _err(str(exc))
            return EXIT_FAIL
        finally:
            if after is not None:
                await after()
        return EXIT_OK

    return _run_async(main)


def _cmd_run(args: argparse.Namespace) -> int:
    import gc

    # start-up builds long-lived objects only: no cyclic GC until the daemon settles
    # its heap (daemon.settle_heap), which re-enables it. At 10,000 targets the
    # collector otherwise ran ~20 times during start-up, 3.5 s in all.
    gc.disable()
    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    return _start_daemon(config, args.config)


def _cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from slamon.dev.demo import CYCLE, DemoTargets, start_dev_chain

    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    # a fresh state per demo run: each run deploys a fresh contract on a fresh chain
    state_dir = tempfile.mkdtemp(prefix="slamon-demo-")
    config = config.model_copy(
        update={"state": config.state.model_copy(update={"path": f"{state_dir}/demo.sqlite3"})}
    )
    node = None
    fixed = [s.id for s in config.slas if s.period.kind == "fixed"]
    if not args.no_chain and fixed:
        from slamon.chain.tx import ChainTxError

        try:
            node, oracle_cfg, _starts = start_dev_chain(config, fixed)
        except ChainTxError as exc:
            print(f"slamon: demo runs without a chain: {exc}", file=sys.stderr)
        else:
            config = config.model_copy(update={"oracle": oracle_cfg})
            print(
                f"local chain (anvil) on {node.url}: SLACompensation at {oracle_cfg.contract}, "
                f"SLAs {', '.join(fixed)} registered and funded; reports are signed and "
                "settled on-chain after each period",
                file=sys.stderr,
            )
    demo = DemoTargets()

    async def before() -> None:
        try:
            await demo.start()
        except OSError as exc:
            raise SystemExit(
                f"slamon: error: cannot start demo targets: {exc.strerror or exc}"
            ) from None
        print(
            f"demo targets up on 127.0.0.1 ports {sorted(demo.ports.values())}; scripted "
            f"outage every {int(CYCLE)} s. Metrics: http://{config.server.listen}/metrics, "
            f"SLAs: http://{config.server.listen}/api/v1/slas; state in {state_dir} "
            "(Ctrl-C to stop)",
            file=sys.stderr,
        )

    try:
        return _start_daemon(config, args.config, before=before, after=demo.stop)
    finally:
        if node is not None:
            node.stop()


def _cmd_probe(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from slamon.config.targets import Target
    from slamon.probers import get_prober
    from slamon.util.redact import redact_url

    url: str = args.url
    spec: dict[str, Any]
    if url.startswith("tcp://"):
        hostport = url[len("tcp://") :].rstrip("/")
        host, _, port = hostport.rpartition(":")
        spec = {"kind": "tcp", "tcp": {"host": host.strip("[]"), "port": port}}
        if args.expect:
            spec["tcp"]["expect"] = args.expect
    else:
        http: dict[str, Any] = {"url": url, "method": args.method,
                                "tls_verify": not args.insecure}
        if args.status:
            http["valid_status_codes"] = args.status
        if args.contains:
            http["body_contains"] = args.contains
        if args.ca_file:
            http["ca_file"] = args.ca_file
        if args.no_follow:
            http["follow_redirects"] = False
        if args.max_time:
            http["max_response_time"] = args.max_time
        spec = {"kind": "http", "http": http}
    try:
        from slamon.util.durations import parse_duration

        timeout = parse_duration(args.timeout)
        target = Target.model_validate(
            {"id": "probe", "interval": timeout + 1, "timeout": timeout, **spec}
        )
    except (ValidationError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            for e in exc.errors():
                loc = ".".join(str(p) for p in e["loc"])
                _err(f"{loc}: {e['msg'].removeprefix('Value error, ')}")
        else:
            _err(str(exc))
        return EXIT_USAGE

    async def main() -> int:
        result = await get_prober(target.kind)(target, target.timeout)
        shown = redact_url(url)
        phases = " ".join(f"{k}={v * 1000:.1f}ms" for k, v in result.phases.items())
        status = f" {result.status_code}" if result.status_code is not None else ""
        if result.ok:
            print(f"OK {shown}{status} in {result.duration * 1000:.1f}ms  {phases}".rstrip())
        else:
            reason = result.reason.value if result.reason else "other"
            print(f"FAIL {shown}{status} reason={reason}: {result.detail} "
                  f"({result.duration * 1000:.1f}ms)")
        return EXIT_OK if result.ok else EXIT_FAIL

    return _run_async(main)


def _read_input(name: str) -> str:
    """FILE or `-` for stdin, as text (OSError/UnicodeDecodeError for the caller)."""
    if name == "-":
        return sys.stdin.buffer.read().decode("utf-8")
    with open(name, encoding="utf-8") as f:
        return f.read()


def check_proofs(doc: dict[str, Any]) -> str | None:
    """Check the optional `proofs` list (one per leaf) against `root`; None = fine.

    The root check alone proves the leaf set; the proofs are what a contract or
    a customer holding a single leaf uses, so a served file must carry good ones.
    """
    from slamon.sla.evidence import Leaf, verify

    proofs = doc.get("proofs")
    if proofs is None:
        return None
    leaves = doc["leaves"]
    if not isinstance(proofs, list) or len(proofs) != len(leaves):
        return "'proofs' must be a list with one proof per leaf"
    root = bytes.fromhex(str(doc["root"]).removeprefix("0x"))
    for i, (raw, proof) in enumerate(zip(leaves, proofs, strict=True)):
        try:
            nodes = [bytes.fromhex(str(p).removeprefix("0x")) for p in proof]
        except (TypeError, ValueError):
            return f"proofs[{i}] is not a list of 0x hex strings"
        if not verify(nodes, root, Leaf.from_json(raw).hash()):
            return f"proofs[{i}] does not prove leaves[{i}] against the root"
    return None


def _cmd_evidence_verify(args: argparse.Namespace) -> int:
    import json

    from slamon.sla.evidence import EVIDENCE_FORMAT, verify_evidence_file

    try:
        data = json.loads(_read_input(args.file))
    except OSError as exc:
        _err(f"cannot read {args.file}: {exc.strerror or exc}")
        return EXIT_USAGE
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _err(f"{args.file} is not valid JSON: {exc}")
        return EXIT_USAGE
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt is not None and fmt != EVIDENCE_FORMAT:
        _err(f"{args.file}: unsupported format {fmt!r} (expected {EVIDENCE_FORMAT})")
        return EXIT_USAGE
    ok, computed, message = verify_evidence_file(data)
    if computed is None:  # not an evidence document at all
        _err(f"{args.file}: {message}")
        return EXIT_USAGE
    if ok:
        root = str(data["root"])
        if len(root) != 66:
            ok, message = False, "root must be 0x followed by 64 hex digits"
        else:
            problem = check_proofs(data)
            if problem is not None:
                ok, message = False, problem
    if not ok:
        print(f"FAIL {message}")
        return EXIT_FAIL
    n = len(data["leaves"])
    proofs = " and proofs" if data.get("proofs") is not None else ""
    print(f"OK root {computed} ({n} leaves{proofs} verified)")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from slamon.sla.export import ExportError, export, parse_date

    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    try:
        start = parse_date(args.date_from, "from")
        end = parse_date(args.date_to, "to")
        text = export(config.state.resolved_path(), args.sla, start, end, args.format,
                      [s.id for s in config.slas])
    except ExportError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return EXIT_OK
    try:
        with open(args.output, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as exc:
        _err(f"cannot write {args.output}: {exc.strerror or exc}")
        return EXIT_USAGE
    return EXIT_OK


#: modules that add their own subcommands with `register(subparsers)`: one
#: module per feature, like the probers, so cli.py does not grow with each one
PLUGIN_COMMANDS = (
    "slamon.chain.commands",
    "slamon.oracle.commands",
    "slamon.metrics.rules",
    "slamon.sla.report",
)


def _register_plugin(sub: Any, module: str) -> None:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return  # feature not built into this version
        if exc.name and exc.name.split(".")[0] in {"web3", "eth_account", "eth_utils"}:
            return  # optional dependency (the `chain` extra) not installed
        raise
    register = getattr(mod, "register", None)
    if register is not None:
        register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slamon",
        description="SLA monitor: probes, SLIs, error budgets and signed SLA verdicts.",
    )
    parser.add_argument("--version", action="version", version=f"slamon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("-c", "--config", required=True, help="config file (YAML)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check-config", help="validate a config file and print every error")
    p.add_argument("file")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("probe", help="probe one URL once (http(s)://... or tcp://host:port)")
    p.add_argument("url")
    p.add_argument("--timeout", default="10s", help="probe timeout (default 10s)")
    p.add_argument("--method", default="GET")
    p.add_argument("--status", action="append", help="valid status codes (repeatable, e.g. 2xx)")
    p.add_argument("--contains", action="append", help="body must contain (repeatable)")
    p.add_argument("--expect", help="tcp: regex the server's first bytes must match")
    p.add_argument("--max-time", help="fail as too_slow above this response time")
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--ca-file", help="CA bundle for TLS verification")
    p.add_argument("--no-follow", action="store_true", help="do not follow redirects")
    p.set_defaults(func=_cmd_probe)

    p = sub.add_parser("demo", help="start local demo targets with an outage and run on them")
    p.add_argument("-c", "--config", default="config/example.yaml")
    p.add_argument("--no-chain", action="store_true",
                   help="do not start a local chain (no on-chain reports)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("evidence", help="work with evidence files (see docs/evidence.md)")
    ev = p.add_subparsers(dest="evidence_command", required=True, metavar="ACTION")
    q = ev.add_parser("verify", help="recompute the Merkle root of an evidence file; exit 0/1")
    q.add_argument("file", help="evidence JSON file, or - for stdin")
    q.set_defaults(func=_cmd_evidence_verify)

    p = sub.add_parser("export", help="closed SLA periods as CSV or JSON (offline)")
    p.add_argument("-c", "--config", required=True, help="config file (names the state file)")
    p.add_argument("--sla", required=True, help="SLA id")
    p.add_argument("--from", dest="date_from", required=True, metavar="DATE",
                   help="ISO 8601 date or time, inclusive (no offset = UTC)")
    p.add_argument("--to", dest="date_to", required=True, metavar="DATE",
                   help="ISO 8601 date or time, exclusive (no offset = UTC)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default stdout)")
    p.set_defaults(func=_cmd_export)
    for module in PLUGIN_COMMANDS:
        _register_plugin(sub, module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from slamon.util.log import configure_logging

    # one-shot commands keep stdout for their output; `run` reconfigures from its config
    configure_logging("info", "console", stream=sys.stderr)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # last line of defence: a message, never a traceback
        if os.environ.get("SLAMON_DEBUG"):
            raise
        from slamon.util.redact import redact_text

        _err(
            f"unexpected {type(exc).__name__}: {redact_text(str(exc))}. "
            "Set SLAMON_DEBUG=1 for details."
        )
        return EXIT_FAIL
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

