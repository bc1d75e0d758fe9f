"""Command line: `slamon run|check-config|probe|demo|evidence verify|export`.

Never shows a traceback to a user.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slamon import __version__
from slamon.util.args import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from slamon.util.args import error as _err

if TYPE_CHECKING:
    from slamon.config.root import Config
    from slamon.store.base import ClosedPeriod


def _load(path: str, ahead: Any = None) -> Any:
    from slamon.config.loader import load_config_for_cli

    return load_config_for_cli(path, ahead=ahead)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cmd_check_config(args: argparse.Namespace) -> int:
    args.file = args.file or args.config
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
        + (f", {_count(len(config.discovery), 'discovery source')}" if config.discovery else "")
    )
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from slamon.config import read_ahead  # the YAML leaf only: the rest imports meanwhile

    # a large file is read and parsed on the other core while slamon imports
    ahead = read_ahead.start(args.config)
    from slamon.app.runtime import defer_gc

    # first: the imports, the config and the daemon's start-up build long-lived
    # objects only, and the daemon re-enables the GC once it has settled them
    defer_gc()
    from slamon.app.daemon import StartupError, serve

    config = _load(args.config, ahead)
    if config is None:
        return EXIT_USAGE
    try:
        return serve(config, args.config)
    except StartupError as exc:
        _err(str(exc))
        return EXIT_FAIL


def _cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from slamon.app.daemon import StartupError, serve
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
        # a forced exit (second Ctrl-C) skips the `finally`: anvil runs in a
        # session of its own and would outlive the demo
        return serve(config, args.config, before=before, after=demo.stop,
                     on_forced_exit=node.stop if node is not None else None)
    except StartupError as exc:
        _err(str(exc))
        return EXIT_FAIL
    finally:
        if node is not None:
            node.stop()


def _probe_request(args: argparse.Namespace) -> dict[str, Any]:
    """The HTTP request and JSON checks of `slamon probe`, curl-like: `--data` means
    POST unless `--method` says otherwise. Raises ValueError naming the bad option."""
    import json

    out: dict[str, Any] = {"method": (args.method or ("POST" if args.data else "GET")).upper()}
    headers: dict[str, str] = {}
    for item in args.header or ():
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--header {item!r}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    if headers:
        out["headers"] = headers
    if args.data is not None:
        body = args.data
        if body.startswith("@"):
            try:
                with open(body[1:], encoding="utf-8") as f:
                    body = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise ValueError(f"--data {args.data}: cannot read: {reason}") from None
        out["body"] = body
    checks = []
    for item in args.json_path or ():
        path, sep, raw = item.partition("=")
        if not sep or not path.strip():
            raise ValueError(f"--json-path {item!r}: expected PATH=VALUE, e.g. status=\"ok\"")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        checks.append({"path": path.strip(), "equals": value})
    if checks:
        out["json_equals"] = checks
    return out


#: `slamon probe` options that set one key of the http section when given
_PROBE_HTTP_OPTIONS = (
    ("status", "valid_status_codes"), ("contains", "body_contains"), ("ca_file", "ca_file"),
    ("proxy", "proxy"), ("cert", "cert_file"), ("key", "key_file"),
    ("max_time", "max_response_time"), ("http2", "http2"),
)


def _cmd_probe(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from slamon.config.probe_urls import probe_spec
    from slamon.config.targets import Target
    from slamon.probers import get_prober
    from slamon.util.redact import redact_url

    url: str = args.url
    spec: dict[str, Any] | None
    try:
        spec = probe_spec(url, args.expect, args.ca_file, tls_verify=not args.insecure)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if spec is not None:
        pass  # tcp://, dns://, icmp://, grpc://: the section came from the URL
    else:
        try:
            extra = _probe_request(args)
        except ValueError as exc:
            _err(str(exc))
            return EXIT_USAGE
        http: dict[str, Any] = {"url": url, "tls_verify": not args.insecure, **extra}
        http.update({key: getattr(args, option) for option, key in _PROBE_HTTP_OPTIONS
                     if getattr(args, option)})
        if args.no_follow:
            http["follow_redirects"] = False
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
        if result.http_version:
            status += f" HTTP/{result.http_version}"
        if result.ok:
            print(f"OK {shown}{status} in {result.duration * 1000:.1f}ms  {phases}".rstrip())
        else:
            reason = result.reason.value if result.reason else "other"
            print(f"FAIL {shown}{status} reason={reason}: {result.detail} "
                  f"({result.duration * 1000:.1f}ms)")
        return EXIT_OK if result.ok else EXIT_FAIL

    from slamon.app.runtime import run

    return run(main)


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


def check_policy_document(doc: dict[str, Any]) -> str | None:
    """Check the optional `policy_document` (the exact text of the policy the period was
    judged by) against `policy_digest`; None = fine or absent."""
    from slamon.util.keccak import hashes_to

    document = doc.get("policy_document")
    if document is None:
        return None
    if not isinstance(document, str):
        return "'policy_document' must be a string (the exact text that was hashed)"
    digest = doc.get("policy_digest")
    try:
        raw = bytes.fromhex(str(digest).removeprefix("0x"))
    except ValueError:
        raw = b""
    if not isinstance(digest, str) or len(raw) != 32:
        return "'policy_digest' must be 0x followed by 64 hex digits"
    if not hashes_to(document, raw):
        return "policy_document does not hash to policy_digest"
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
            problem = check_proofs(data) or check_policy_document(data)
            if problem is not None:
                ok, message = False, problem
    if not ok:
        print(f"FAIL {message}")
        return EXIT_FAIL
    n = len(data["leaves"])
    proofs = " and proofs" if data.get("proofs") is not None else ""
    policy = (", policy document matches policy_digest"
              if data.get("policy_document") is not None else "")
    print(f"OK root {computed} ({n} leaves{proofs} verified{policy})")
    return EXIT_OK


def _recovering(config: Config, sla_id: str) -> Callable[[ClosedPeriod], str | None]:
    """A closed period's policy document, worked out again from the config's policy
    for the SLA where the store kept none (as the API does)."""
    from slamon.sla.tracker import closed_document, config_policy

    current = config_policy(config, sla_id)
    held, parts = ([current[0]], current[1]) if current is not None else ([], ())

    def recover(period: ClosedPeriod) -> str | None:
        return closed_document(period, held, parts)

    return recover


def _cmd_export(args: argparse.Namespace) -> int:
    from slamon.sla.export import ExportError, export, parse_date

    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    try:
        start = parse_date(args.date_from, "from")
        end = parse_date(args.date_to, "to")
        text = export(config.state.resolved_path(), args.sla, start, end, args.format,
                      [s.id for s in config.slas], _recovering(config, args.sla))
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


@dataclass(frozen=True)
class Plugin:
    """An optional command: ``module.configure(parser)`` adds its arguments and sets ``func``."""

    module: str
    configure: str
    help: str


#: every optional command, by its words on the command line. A module is imported only
#: when its command is the one run: ``--help`` and ``--version`` stay cheap, and a core
#: install (no ``chain`` extra) lists every command and explains what a missing one needs.
PLUGINS: dict[tuple[str, ...], Plugin] = {
    ("rules",): Plugin(
        "slamon.metrics.rules", "configure",
        "print Prometheus recording and alerting rules for every SLO"),
    ("report", "render"): Plugin(
        "slamon.sla.report", "configure_render", "one closed SLA period as HTML or Markdown"),
    ("report", "verify"): Plugin(
        "slamon.oracle.commands", "configure_report_verify",
        "check a signed report's EIP-712 signature offline; exit 0 valid, 1 invalid"),
    ("keys", "new"): Plugin(
        "slamon.oracle.commands", "configure_keys_new",
        "create a new key in an encrypted keystore (mode 0600); prints its address"),
    ("contract", "deploy"): Plugin(
        "slamon.oracle.contract_commands", "configure_deploy",
        "deploy SLACompensation; prints its address"),
    ("contract", "register"): Plugin(
        "slamon.oracle.contract_commands", "configure_register",
        "register a configured SLA, starting this period"),
    ("contract", "approve-rotation"): Plugin(
        "slamon.oracle.contract_commands", "configure_approve_rotation",
        "as a current signer, approve a new signer set; prints the approval"),
    ("contract", "rotate-signers"): Plugin(
        "slamon.oracle.contract_commands", "configure_rotate_signers",
        "install a new signer set approved by a quorum of the current one"),
    ("incident", "open"): Plugin(
        "slamon.web.incident_commands", "configure_open",
        "post an incident on the status page (and to subscribed channels)"),
    ("incident", "update"): Plugin(
        "slamon.web.incident_commands", "configure_update",
        "add an update (status and message) to an incident"),
    ("incident", "resolve"): Plugin(
        "slamon.web.incident_commands", "configure_resolve", "resolve an incident"),
    ("incident", "list"): Plugin(
        "slamon.web.incident_commands", "configure_list", "recent incidents"),
    ("state", "export"): Plugin(
        "slamon.app.state_commands", "configure_export",
        "copy some targets' history (windows, periods, evidence) into a new file"),
    ("state", "import"): Plugin(
        "slamon.app.state_commands", "configure_import",
        "add exported history to this instance's state file (stop it first)"),
    ("import", "blackbox"): Plugin(
        "slamon.importers.commands", "configure_blackbox",
        "targets from a blackbox_exporter config and its Prometheus /probe jobs"),
    ("import", "openslo"): Plugin(
        "slamon.importers.commands", "configure_openslo",
        "SLOs and SLAs from OpenSLO v1 documents"),
}

#: help for the commands that only group the actions above
GROUPS = {
    "report": "SLA period reports",
    "keys": "oracle signing keys",
    "contract": "deploy the compensation contract, register SLAs",
    "import": "write slamon config from other tools' configs",
    "state": "move targets' history between state files (resharding)",
    "incident": "incidents on the status page, through a running slamon's API",
}

#: top-level packages of the ``chain`` extra
CHAIN_LIBRARIES = frozenset(
    {"web3", "eth_account", "eth_utils", "eth_abi", "eth_keys", "eth_typing", "hexbytes"}
)


class NeedsChain(Exception):
    """A command needs the libraries of the ``chain`` extra, which are not installed."""


def needs_chain(exc: BaseException) -> bool:
    return (
        isinstance(exc, ModuleNotFoundError)
        and (exc.name or "").split(".")[0] in CHAIN_LIBRARIES
    )


#: the options before a command or action that take a value as the next word
_VALUED_OPTIONS = frozenset({"--log-level", "--log-format"})


def _chosen(argv: Sequence[str]) -> tuple[str, ...]:
    """The command words of ``argv``: the leading words that are neither options nor
    the values of `_VALUED_OPTIONS`."""
    words: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--":
            break
        if arg.startswith("-"):
            skip = arg in _VALUED_OPTIONS
            continue
        words.append(arg)
        if len(words) == 2:
            break
    return tuple(words)


def _add_plugins(sub: Any, chosen: tuple[str, ...], common: argparse.ArgumentParser) -> None:
    groups: dict[str, Any] = {}
    for words, plugin in PLUGINS.items():
        if len(words) == 1:
            parent = sub
        else:
            if words[0] not in groups:
                g = sub.add_parser(words[0], help=GROUPS[words[0]], parents=[common])
                groups[words[0]] = g.add_subparsers(
                    dest=f"{words[0]}_command", required=True, metavar="ACTION"
                )
            parent = groups[words[0]]
        p = parent.add_parser(words[-1], help=plugin.help, parents=[common])
        if chosen[: len(words)] != words:
            continue
        import importlib

        try:
            mod = importlib.import_module(plugin.module)
        except ModuleNotFoundError as exc:
            if needs_chain(exc):
                raise NeedsChain(" ".join(words)) from exc
            raise
        getattr(mod, plugin.configure)(p)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; the optional command named in ``argv`` gets its full arguments."""
    from slamon.util.args import ENVIRONMENT, add_config_argument, add_logging_arguments

    width = max(len(name) for name in ENVIRONMENT)
    parser = argparse.ArgumentParser(
        prog="slamon",
        description="SLA monitor: probes, SLIs, error budgets and signed SLA verdicts.",
        epilog="environment:\n" + "\n".join(
            f"  {name:<{width}}  {text}" for name, text in ENVIRONMENT.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"slamon {__version__}")
    add_logging_arguments(parser)
    # the same flags after the command; SUPPRESS keeps one given before it
    common = argparse.ArgumentParser(add_help=False)
    add_logging_arguments(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon", parents=[common])
    add_config_argument(p, "config file (YAML)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check-config", help="validate a config file and print every error",
                       parents=[common])
    p.add_argument("file", nargs="?", help="config file (the same as -c)")
    add_config_argument(p)
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("probe", help="probe one URL once (http(s)://..., tcp://host:port"
                                     "[?tls=1|starttls=smtp|imap|pop3], "
                                     "dns://server/name?type=A, icmp://host, "
                                     "grpc://host:port/service)",
                       parents=[common])
    p.add_argument("url")
    p.add_argument("--timeout", default="10s", help="probe timeout (default 10s)")
    p.add_argument("--method", help="HTTP method (default GET, or POST with --data)")
    p.add_argument("-H", "--header", action="append", metavar="'NAME: VALUE'",
                   help="request header (repeatable)")
    p.add_argument("-d", "--data", metavar="BODY", help="request body; @FILE reads a file")
    p.add_argument("--json-path", action="append", metavar="PATH=VALUE",
                   help="the JSON body at dotted PATH must equal VALUE (JSON, else text); "
                        "repeatable")
    p.add_argument("--status", action="append", help="valid status codes (repeatable, e.g. 2xx)")
    p.add_argument("--contains", action="append", help="body must contain (repeatable)")
    p.add_argument("--expect", help="tcp: regex the server's first bytes must match; "
                                    "dns: regex some answer record must match")
    p.add_argument("--max-time", help="fail as too_slow above this response time")
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--ca-file", help="CA bundle for TLS verification (http, grpc?tls=1, "
                                     "tcp with tls or starttls)")
    p.add_argument("--proxy", metavar="http://[USER:PASSWORD@]HOST:PORT",
                   help="http: go through this HTTP proxy (CONNECT for https URLs)")
    p.add_argument("--cert", metavar="FILE",
                   help="http: client certificate (PEM) for a server that requires one")
    p.add_argument("--key", metavar="FILE", help="http: its private key (PEM), if not in --cert")
    p.add_argument("--no-follow", action="store_true", help="do not follow redirects")
    p.add_argument("--http2", action="store_true",
                   help="http: offer HTTP/2 in the TLS handshake and speak it if the server "
                        "picks it")
    p.set_defaults(func=_cmd_probe)

    p = sub.add_parser("demo", help="start local demo targets with an outage and run on them",
                       parents=[common])
    p.add_argument("-c", "--config", default="config/example.yaml")
    p.add_argument("--no-chain", action="store_true",
                   help="do not start a local chain (no on-chain reports)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("evidence", help="work with evidence files (see docs/evidence.md)",
                       parents=[common])
    ev = p.add_subparsers(dest="evidence_command", required=True, metavar="ACTION")
    q = ev.add_parser("verify", help="recompute the Merkle root of an evidence file; exit 0/1")
    q.add_argument("file", help="evidence JSON file, or - for stdin")
    q.set_defaults(func=_cmd_evidence_verify)

    p = sub.add_parser("export", help="closed SLA periods as CSV or JSON (offline)",
                       parents=[common])
    add_config_argument(p, "config file (names the state file)")
    p.add_argument("--sla", required=True, help="SLA id")
    p.add_argument("--from", dest="date_from", required=True, metavar="DATE",
                   help="ISO 8601 date or time, inclusive (no offset = UTC)")
    p.add_argument("--to", dest="date_to", required=True, metavar="DATE",
                   help="ISO 8601 date or time, exclusive (no offset = UTC)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default stdout)")
    p.set_defaults(func=_cmd_export)
    _add_plugins(sub, _chosen(argv), common)
    return parser


def _chain_missing(command: str) -> int:
    _err(f"'slamon {command}' needs the chain libraries: pip install 'slamon[chain]'")
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(argv)
    except NeedsChain as exc:
        return _chain_missing(str(exc))
    args = parser.parse_args(argv)
    from slamon.util.args import LOG_FORMAT_ENV, LOG_LEVEL_ENV, config_path
    from slamon.util.log import configure_logging

    # through the environment, so that a reload (which rereads the config) keeps them
    if getattr(args, "log_level", None):
        os.environ[LOG_LEVEL_ENV] = args.log_level
    if getattr(args, "log_format", None):
        os.environ[LOG_FORMAT_ENV] = args.log_format
    if hasattr(args, "config") and args.config is None and getattr(args, "file", None) is None:
        args.config = config_path(None)

    # one-shot commands keep stdout for their output; `run` reconfigures from its config
    configure_logging("info", "console", stream=sys.stderr)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # last line of defence: a message, never a traceback
        if needs_chain(exc):
            return _chain_missing(" ".join(_chosen(argv)))
        from slamon.config.process import StateBackendError

        if isinstance(exc, StateBackendError):
            _err(str(exc))
            return EXIT_FAIL
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

