"""`slamon import blackbox` and `slamon import openslo`: files in, a slamon config out.

Exit codes: 0 written, 2 bad input (one `error:` line per problem, never a traceback).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

from slamon.importers import InputError
from slamon.util.args import EXIT_OK, EXIT_USAGE


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise InputError([f"{path}: not UTF-8 text"]) from None
    except OSError as exc:
        raise InputError([f"{path}: cannot read: {exc.strerror or exc}"]) from None


def _write(text: str, output: str | None) -> int:
    if output in (None, "-"):
        sys.stdout.write(text)
        return EXIT_OK
    try:
        with open(output, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as exc:
        print(f"error: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _fail(exc: InputError) -> int:
    for line in exc.problems:
        print(f"error: {line}", file=sys.stderr)
    return EXIT_USAGE


def _cmd_blackbox(args: argparse.Namespace) -> int:
    from slamon.importers.blackbox import import_blackbox

    base = os.path.dirname(args.prometheus or "")

    def read(pattern: str) -> list[tuple[str, str]]:
        # file_sd_configs paths are relative to the Prometheus config's directory
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        names = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        out: list[tuple[str, str]] = []
        for name in names:
            with open(name, encoding="utf-8") as f:
                out.append((name, f.read()))
        return out

    try:
        text = import_blackbox(
            _read(args.blackbox),
            _read(args.prometheus) if args.prometheus else None,
            blackbox_name=args.blackbox,
            prometheus_name=args.prometheus or "prometheus.yml",
            read=read,
            discovery_base=os.path.abspath(base or ".") if args.discovery else None,
        )
    except InputError as exc:
        return _fail(exc)
    return _write(text, args.output)


def _targets(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    problems: list[str] = []
    for item in items:
        name, sep, ids = item.partition("=")
        targets = [t.strip() for t in ids.split(",") if t.strip()]
        if not sep or not name.strip() or not targets:
            problems.append(f"--target {item}: use NAME=ID[,ID...] (NAME: an SLO or SLI name)")
            continue
        out[name.strip()] = targets
    if problems:
        raise InputError(problems)
    return out


def _cmd_openslo(args: argparse.Namespace) -> int:
    from slamon.config.loader import ConfigError, load_config
    from slamon.importers.openslo import import_openslo

    try:
        given = _targets(args.target or [])
        files = [(name, _read(name)) for name in args.files]
        base = None
        if args.base_config:
            try:
                base = load_config(args.base_config)
            except ConfigError as exc:
                raise InputError([f"{args.base_config}: {line}" for line in exc.errors]) \
                    from None
        text = import_openslo(files, targets=given, base=base)
    except InputError as exc:
        return _fail(exc)
    return _write(text, args.output)


def configure_blackbox(p: argparse.ArgumentParser) -> None:
    p.description = ("Write slamon targets that probe what a blackbox_exporter setup probes: "
                     "each Prometheus job with metrics_path /probe, with its module's "
                     "settings. Options slamon cannot carry over are listed in comments.")
    p.add_argument("--blackbox", required=True, metavar="FILE",
                   help="blackbox_exporter config (blackbox.yml)")
    p.add_argument("--prometheus", metavar="FILE",
                   help="Prometheus config whose /probe jobs name the targets (without it: "
                        "one commented template per module)")
    p.add_argument("--discovery", action="store_true",
                   help="turn file_sd_configs and http_sd_configs into discovery sources that "
                        "follow the files and the endpoint (default: import the targets the "
                        "files hold now)")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default stdout)")
    p.set_defaults(func=_cmd_blackbox)


def configure_openslo(p: argparse.ArgumentParser) -> None:
    p.description = ("Write slamon SLOs (rolling windows) and SLAs (calendar windows) for "
                     "OpenSLO v1 SLO/SLI documents whose SLIs are over slamon targets "
                     "(see docs/import.md).")
    p.add_argument("files", nargs="+", metavar="FILE", help="OpenSLO v1 YAML files")
    p.add_argument("--target", action="append", metavar="NAME=ID[,ID...]",
                   help="the slamon targets of the SLO or SLI NAME (repeatable)")
    p.add_argument("-c", "--config", dest="base_config", metavar="FILE",
                   help="the slamon config the output is for: its targets must exist")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default stdout)")
    p.set_defaults(func=_cmd_openslo)
