"""Moving the state of some targets from one state file to another.

When shards are added or removed, a target (with its SLO group) moves to
another instance; with SQLite each instance has its own file, so the target's
history must move too. `export_state` copies every row that belongs to a set
of targets, SLOs and SLAs into a new file with the same schema; `import_state`
adds such a file's rows to an instance's state file.

What belongs to what: per target its progress, its journal, its events snapshot and its
evidence series (with their leaves); per SLO its state snapshot; per SLA its progress,
closed periods, signed-report journal and transactions. The oracle's own
key/value pairs are per instance and never move.

Import never overwrites: a row whose key the destination already has is kept
as it is and counted as skipped (a closed period never changes; a snapshot
already there is the destination's own, newer, state). Both files are locked
like a running daemon locks its file, so neither side can be in use.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from slamon.sli.events import EVENTS_KEY, events_key
from slamon.store.migrations import APPLICATION_ID, SCHEMA_VERSION, migrate
from slamon.store.sqlite import StoreError, take_lock


@dataclass(frozen=True, slots=True)
class Selection:
    targets: frozenset[str]
    slos: frozenset[str]
    slas: frozenset[str]

    @property
    def snapshot_keys(self) -> frozenset[str]:
        """The SLOs' states and the targets' events."""
        return self.slos | {events_key(t) for t in self.targets}


@dataclass(slots=True)
class Counts:
    """Rows per table: copied, and (on import) skipped because already there."""

    copied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, copied: int, skipped: int = 0) -> None:
        self.copied[table] = self.copied.get(table, 0) + copied
        self.skipped[table] = self.skipped.get(table, 0) + skipped


#: (table, the column that selects its rows, which set of the Selection)
_KEYED = (
    ("progress", "target", "targets"),
    ("snapshots", "slo", "snapshot_keys"),
    ("sla_progress", "sla", "slas"),
    ("periods", "sla", "slas"),
    ("reports", "sla", "slas"),
    ("oracle_txs", "sla", "slas"),
)


@contextlib.contextmanager
def _open(path: Path, *, create: bool) -> Iterator[sqlite3.Connection]:
    """A locked connection to a slamon state file (created empty when `create`)."""
    if not create and not path.is_file():
        raise StoreError(f"{path}: no such state file")
    if create and path.exists():
        raise StoreError(f"{path} exists: give a new file name")
    fd = take_lock(path)
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            if create:
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                migrate(conn, 0)
            _check(conn, path)
            yield conn
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a usable SQLite database ({exc})") from None
    finally:
        os.close(fd)
        if create:
            with contextlib.suppress(OSError):
                path.with_name(path.name + ".lock").unlink()


def _check(conn: sqlite3.Connection, path: Path) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id != APPLICATION_ID:
        raise StoreError(f"{path} is not a slamon state file")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        raise StoreError(f"{path} has schema {version}, this slamon writes {SCHEMA_VERSION}: "
                         "export and import with the same slamon version")


def _marks(n: int) -> str:
    return ",".join("?" * n)


def state_ids(path: Path) -> tuple[set[str], set[str]]:
    """Target ids and SLO ids that have state in a file (read-only)."""
    if not path.is_file():
        raise StoreError(f"{path}: no such state file")
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        targets = {r[0] for r in conn.execute("SELECT target FROM progress")}
        targets |= {r[0] for r in conn.execute("SELECT DISTINCT target FROM series")}
        keys = {r[0] for r in conn.execute("SELECT slo FROM snapshots")}
        targets |= {k[len(EVENTS_KEY):] for k in keys if k.startswith(EVENTS_KEY)}
        return targets, {k for k in keys if not k.startswith(EVENTS_KEY)}
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a usable slamon state file ({exc})") from None
    finally:
        conn.close()


def export_state(src: Path, dst: Path, selection: Selection) -> Counts:
    """Copy the rows of `selection` from `src` into the new file `dst`."""
    counts = Counts()
    with _open(src, create=False) as source, _open(dst, create=True) as out:
        out.execute("BEGIN IMMEDIATE")
        try:
            _copy(source, out, selection, counts, skip_existing=False)
            out.execute("COMMIT")
        except BaseException:
            out.execute("ROLLBACK")
            raise
    return counts


def import_state(dst: Path, src: Path) -> Counts:
    """Add every row of the export `src` to the state file `dst`, keeping rows it has."""
    counts = Counts()
    with _open(dst, create=False) as out, _open(src, create=False) as source:
        everything = Selection(
            frozenset(r[0] for r in source.execute(
                "SELECT target FROM progress UNION SELECT target FROM series "
                "UNION SELECT target FROM journal")),
            frozenset(r[0] for r in source.execute("SELECT slo FROM snapshots")),
            frozenset(r[0] for r in source.execute(
                "SELECT sla FROM sla_progress UNION SELECT sla FROM periods "
                "UNION SELECT sla FROM reports")),
        )
        out.execute("BEGIN IMMEDIATE")
        try:
            _copy(source, out, everything, counts, skip_existing=True)
            out.execute("COMMIT")
        except BaseException:
            out.execute("ROLLBACK")
            raise
    return counts


def _rows(conn: sqlite3.Connection, table: str, column: str,
          ids: Iterable[str]) -> tuple[list[str], list[tuple[object, ...]]]:
    keys = sorted(ids)
    cur = conn.execute(f"SELECT * FROM {table} WHERE {column} IN ({_marks(len(keys))})", keys)
    return [d[0] for d in cur.description], cur.fetchall()


def _copy(source: sqlite3.Connection, out: sqlite3.Connection, sel: Selection,
          counts: Counts, *, skip_existing: bool) -> None:
    verb = "INSERT OR IGNORE" if skip_existing else "INSERT"
    for table, column, which in _KEYED:
        names, rows = _rows(source, table, column, getattr(sel, which))
        before = out.total_changes
        out.executemany(f"{verb} INTO {table}({','.join(names)}) VALUES "
                        f"({_marks(len(names))})", rows)
        copied = out.total_changes - before
        counts.add(table, copied, len(rows) - copied)
    # the journal has no natural key: rows of a target the destination already
    # journals would be counted twice, so a target's journal moves only to a file
    # that has none for it
    targets = sorted(sel.targets)
    present = {r[0] for r in out.execute(
        f"SELECT DISTINCT target FROM journal WHERE target IN ({_marks(len(targets))})",
        targets)} if skip_existing else set()
    _, rows = _rows(source, "journal", "target", sel.targets)
    moving = [r for r in rows if r[1] not in present]
    out.executemany("INSERT INTO journal(target, t, ok, duration) VALUES (?, ?, ?, ?)",
                    [r[1:] for r in sorted(moving)])
    counts.add("journal", len(moving), len(rows) - len(moving))
    # evidence series get new ids in the destination; their leaves follow them
    _, series = _rows(source, "series", "target", sel.targets)
    for sid, sla, target in series:
        out.execute("INSERT OR IGNORE INTO series(sla, target) VALUES (?, ?)", (sla, target))
        new_id = out.execute("SELECT id FROM series WHERE sla = ? AND target = ?",
                             (sla, target)).fetchone()[0]
        leaves = source.execute(
            "SELECT bucket, good, valid, no_data FROM leaves WHERE series = ?", (sid,)).fetchall()
        before = out.total_changes
        out.executemany(f"{verb} INTO leaves(series, bucket, good, valid, no_data) "
                        "VALUES (?, ?, ?, ?, ?)", [(new_id, *leaf) for leaf in leaves])
        copied = out.total_changes - before
        counts.add("leaves", copied, len(leaves) - copied)
