"""`slamon state export|import`: move targets' history between state files.

With SQLite each shard has its own state file; a target that moves to another
shard (more or fewer shards) would start from empty windows there. Export its
rows from the old shard's file, import them into the new one's, then start the
new shard. See docs/operations.md, "Resharding step by step".
"""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

from slamon.store.sqlite import StoreError
from slamon.store.transfer import Counts, Selection, export_state, import_state, state_ids
from slamon.util.args import EXIT_FAIL, EXIT_OK, EXIT_USAGE, add_config_argument, error


def configure_export(p: argparse.ArgumentParser) -> None:
    add_config_argument(p, "config of the instance whose state file is read")
    p.add_argument("--targets", required=True, metavar="PATTERNS",
                   help="comma-separated target ids or shell patterns (inv:*); each target's "
                        "SLOs and SLAs go with it when all their targets do")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="new file to write (a slamon state file holding only those rows)")
    p.set_defaults(func=_cmd_export)


def configure_import(p: argparse.ArgumentParser) -> None:
    add_config_argument(p, "config of the instance whose state file receives the rows")
    p.add_argument("files", nargs="+", metavar="FILE", help="files written by `state export`")
    p.set_defaults(func=_cmd_import)


def _cmd_export(args: argparse.Namespace) -> int:
    from slamon.config.loader import load_config_for_cli

    config = load_config_for_cli(args.config, count=False)
    if config is None:
        return EXIT_USAGE
    patterns = [p.strip() for p in args.targets.split(",") if p.strip()]
    if not patterns:
        error("--targets: give at least one target id or pattern")
        return EXIT_USAGE
    src = config.state.resolved_path()
    try:
        have_targets, have_slos = state_ids(src)
    except StoreError as exc:
        error(str(exc))
        return EXIT_FAIL
    known = have_targets | {t.id for t in config.targets}
    targets = {t for t in known if any(fnmatch.fnmatchcase(t, p) for p in patterns)}
    if not targets:
        error(f"--targets: no target in {src} or the config matches {args.targets!r}")
        return EXIT_USAGE
    slos = {s.id for s in config.slos if s.selector is None and set(s.targets) <= targets}
    # a selector SLO's per-target SLOs: `<id>:<target>`
    slos |= {f"{s.id}:{t}" for s in config.slos if s.selector is not None for t in targets
             if f"{s.id}:{t}" in have_slos}
    split = sorted(s.id for s in config.slos if s.selector is None
                   and set(s.targets) & targets and not set(s.targets) <= targets)
    for slo_id in split:
        print(f"warning: SLO {slo_id!r} has targets outside --targets: its windows and SLAs "
              "stay here (move all its targets together)")
    slas = {s.id for s in config.slas if s.slo in slos}
    try:
        counts = export_state(src, Path(args.output), Selection(
            frozenset(targets), frozenset(slos), frozenset(slas)))
    except StoreError as exc:
        error(str(exc))
        return EXIT_FAIL
    print(f"exported {len(targets)} targets, {len(slos)} SLOs, {len(slas)} SLAs to "
          f"{args.output}: {_rows(counts.copied)}")
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    from slamon.config.loader import load_config_for_cli

    config = load_config_for_cli(args.config, count=False)
    if config is None:
        return EXIT_USAGE
    dst = config.state.resolved_path()
    if not dst.exists():
        # a new shard that never ran: give it its file first, empty and current
        import asyncio

        from slamon.store.sqlite import StateStore

        async def create() -> None:
            store = StateStore(dst)
            try:
                await store.open()
            finally:
                await store.close()

        try:
            asyncio.run(create())
        except StoreError as exc:
            error(str(exc))
            return EXIT_FAIL
    for name in args.files:
        try:
            counts: Counts = import_state(dst, Path(name))
        except StoreError as exc:
            error(str(exc))
            return EXIT_FAIL
        print(f"imported {name} into {dst}: {_rows(counts.copied)}"
              + (f"; kept {_rows(counts.skipped)} already there"
                 if any(counts.skipped.values()) else ""))
    return EXIT_OK


def _rows(by_table: dict[str, int]) -> str:
    return ", ".join(f"{n} {table}" for table, n in by_table.items() if n) or "no rows"
