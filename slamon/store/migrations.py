"""The state file's schema: every table and index, of every module, as ordered migrations.

One list, applied by `StateStore` when it opens the file and by nothing else, so
the schema version in the file's header says exactly which tables it holds. A
module that keeps rows in the state file (the oracle's report journal) adds its
tables here as a new step rather than creating them itself: then a file copied
between versions, a downgrade refused for a newer schema, and `slamon report
export` reading the file read-only all agree on what is in it.

A step is never edited once released: files in the field were built by it.
Changes go in a new step at the end.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: ``PRAGMA application_id``: marks the file as slamon's ("SLMN")
APPLICATION_ID: Final = 0x534C4D4E


@dataclass(frozen=True, slots=True)
class Migration:
    """Takes the schema from ``version - 1`` to ``version``, in one transaction."""

    version: int
    statements: tuple[str, ...]


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        (
            "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
            """CREATE TABLE progress(
                target TEXT PRIMARY KEY, last_tick REAL NOT NULL) WITHOUT ROWID""",
            """CREATE TABLE snapshots(
                slo TEXT PRIMARY KEY, shape TEXT NOT NULL, data BLOB NOT NULL,
                taken_at REAL NOT NULL) WITHOUT ROWID""",
            """CREATE TABLE journal(
                seq INTEGER PRIMARY KEY, target TEXT NOT NULL, t REAL NOT NULL,
                ok INTEGER, duration REAL)""",
            """CREATE TABLE series(
                id INTEGER PRIMARY KEY, sla TEXT NOT NULL, target TEXT NOT NULL,
                UNIQUE(sla, target))""",
            """CREATE TABLE leaves(
                series INTEGER NOT NULL, bucket INTEGER NOT NULL, good INTEGER NOT NULL,
                valid INTEGER NOT NULL, no_data INTEGER NOT NULL,
                PRIMARY KEY(series, bucket)) WITHOUT ROWID""",
            """CREATE TABLE sla_progress(
                sla TEXT PRIMARY KEY, last_closed INTEGER NOT NULL,
                first_period INTEGER NOT NULL) WITHOUT ROWID""",
            """CREATE TABLE periods(
                sla TEXT NOT NULL, period INTEGER NOT NULL, start INTEGER NOT NULL,
                end INTEGER NOT NULL, closed_at REAL NOT NULL, result TEXT NOT NULL,
                root BLOB NOT NULL, policy_digest BLOB NOT NULL,
                PRIMARY KEY(sla, period)) WITHOUT ROWID""",
            # the oracle's report journal: one row per (sla, period, signer)
            """CREATE TABLE reports(
                sla TEXT NOT NULL, period INTEGER NOT NULL, signer TEXT NOT NULL,
                state TEXT NOT NULL, payload TEXT NOT NULL, signature BLOB,
                tx_hash TEXT, nonce INTEGER, block INTEGER, reason TEXT,
                attempts INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
                PRIMARY KEY(sla, period, signer)) WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        (
            # The oracle journal's transaction history and its own key/value pairs.
            # IF NOT EXISTS: files written at schema 1 may already have them, with
            # this very shape, since the journal used to create them itself.
            """CREATE TABLE IF NOT EXISTS oracle_txs(
                sla TEXT NOT NULL, period INTEGER NOT NULL, signer TEXT NOT NULL,
                tx_hash TEXT NOT NULL, nonce INTEGER NOT NULL, max_fee INTEGER NOT NULL,
                priority_fee INTEGER NOT NULL, gas INTEGER NOT NULL, sent_at REAL NOT NULL,
                PRIMARY KEY(sla, period, signer, tx_hash)) WITHOUT ROWID""",
            """CREATE TABLE IF NOT EXISTS oracle_meta(
                key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID""",
        ),
    ),
    Migration(
        3,
        (
            # incidents for the status page: automatic (a target down) and posted by
            # operators; an incident's state is its last update, updates are never
            # edited, so its whole history stays
            """CREATE TABLE incidents(
                id INTEGER PRIMARY KEY, title TEXT NOT NULL, source TEXT NOT NULL,
                targets TEXT NOT NULL, started_at REAL NOT NULL, reason TEXT)""",
            """CREATE TABLE incident_updates(
                id INTEGER PRIMARY KEY,
                incident INTEGER NOT NULL REFERENCES incidents(id),
                at REAL NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL)""",
            "CREATE INDEX incident_updates_by_incident ON incident_updates(incident, id)",
        ),
    ),
    Migration(
        4,
        (
            # The oracle journal is keyed by the EIP-712 domain too ("<chain id>:<contract>",
            # lower case): a daemon pointed at a new contract or chain must neither take the
            # old contract's reports as sent nor send them to the new one. Existing rows get
            # the domain their signed payload names; skipped rows (no payload domain) get ''
            # and are simply judged again under the new key.
            """CREATE TABLE reports_v4(
                domain TEXT NOT NULL,
                sla TEXT NOT NULL, period INTEGER NOT NULL, signer TEXT NOT NULL,
                state TEXT NOT NULL, payload TEXT NOT NULL, signature BLOB,
                tx_hash TEXT, nonce INTEGER, block INTEGER, reason TEXT,
                attempts INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
                PRIMARY KEY(domain, sla, period, signer)) WITHOUT ROWID""",
            """INSERT INTO reports_v4 SELECT
                CASE WHEN json_valid(payload)
                          AND json_extract(payload, '$.chainId') IS NOT NULL
                          AND json_extract(payload, '$.contract') IS NOT NULL
                     THEN json_extract(payload, '$.chainId') || ':'
                          || lower(json_extract(payload, '$.contract'))
                     ELSE '' END,
                sla, period, signer, state, payload, signature, tx_hash, nonce, block,
                reason, attempts, updated_at
              FROM reports""",
            "DROP TABLE reports",
            "ALTER TABLE reports_v4 RENAME TO reports",
            """CREATE TABLE oracle_txs_v4(
                domain TEXT NOT NULL,
                sla TEXT NOT NULL, period INTEGER NOT NULL, signer TEXT NOT NULL,
                tx_hash TEXT NOT NULL, nonce INTEGER NOT NULL, max_fee INTEGER NOT NULL,
                priority_fee INTEGER NOT NULL, gas INTEGER NOT NULL, sent_at REAL NOT NULL,
                PRIMARY KEY(domain, sla, period, signer, tx_hash)) WITHOUT ROWID""",
            """INSERT INTO oracle_txs_v4 SELECT
                COALESCE((SELECT r.domain FROM reports r WHERE r.sla = t.sla
                          AND r.period = t.period AND r.signer = t.signer), ''),
                t.sla, t.period, t.signer, t.tx_hash, t.nonce, t.max_fee, t.priority_fee,
                t.gas, t.sent_at
              FROM oracle_txs t""",
            "DROP TABLE oracle_txs",
            "ALTER TABLE oracle_txs_v4 RENAME TO oracle_txs",
        ),
    ),
    Migration(
        5,
        (
            # the exact calldata of a transaction that also carries co-signers' reports, so
            # that a rebroadcast after a restart is the same transaction; NULL: our report alone
            "ALTER TABLE oracle_txs ADD COLUMN data BLOB",
        ),
    ),
    Migration(
        6,
        (
            # the period schedule an SLA's periods are numbered by (kind, length, zone,
            # evidence resolution, as canonical JSON): a config that changes it under the
            # same SLA id is refused; NULL for rows written before this step
            "ALTER TABLE sla_progress ADD COLUMN schedule TEXT",
        ),
    ),
    Migration(
        7,
        (
            # the policies (SLA, SLO, maintenance windows, digest; JSON) the SLA's
            # unclosed periods are judged by: an edit reaches the periods that begin after
            # it, and a restart must not forget what the open one began under
            "ALTER TABLE sla_progress ADD COLUMN policies TEXT",
        ),
    ),
    Migration(
        8,
        (
            # the policy (as in sla_progress.policies) a closed period was judged by: the
            # config may have moved on by the time it is signed or audited; NULL before
            "ALTER TABLE periods ADD COLUMN policy TEXT",
        ),
    ),
)

#: the schema a file has once every migration ran (``PRAGMA user_version``)
SCHEMA_VERSION: Final = MIGRATIONS[-1].version


# The shared PostgreSQL backend's schema (slamon.store.postgres): its own steps, as
# the types and keys differ (BYTEA, identity columns, a quoted "end", an instance
# column on the journal, who closed a period). Applied by PostgresStore under an
# advisory lock; the version is kept in meta under 'schema_version'.
POSTGRES_MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        (
            "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE progress(target TEXT PRIMARY KEY, last_tick DOUBLE PRECISION NOT NULL)",
            """CREATE TABLE snapshots(
                slo TEXT PRIMARY KEY, shape TEXT NOT NULL, data BYTEA NOT NULL,
                taken_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE journal(
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                instance TEXT NOT NULL, target TEXT NOT NULL, t DOUBLE PRECISION NOT NULL,
                ok SMALLINT, duration DOUBLE PRECISION)""",
            "CREATE INDEX journal_by_instance ON journal(instance, seq)",
            """CREATE TABLE series(
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, sla TEXT NOT NULL,
                target TEXT NOT NULL, UNIQUE(sla, target))""",
            """CREATE TABLE leaves(
                series BIGINT NOT NULL REFERENCES series(id), bucket BIGINT NOT NULL,
                good BIGINT NOT NULL, valid BIGINT NOT NULL, no_data BIGINT NOT NULL,
                PRIMARY KEY(series, bucket))""",
            """CREATE TABLE sla_progress(
                sla TEXT PRIMARY KEY, last_closed BIGINT NOT NULL,
                first_period BIGINT NOT NULL)""",
            """CREATE TABLE periods(
                sla TEXT NOT NULL, period BIGINT NOT NULL, start BIGINT NOT NULL,
                "end" BIGINT NOT NULL, closed_at DOUBLE PRECISION NOT NULL,
                result TEXT NOT NULL, root BYTEA NOT NULL, policy_digest BYTEA NOT NULL,
                closed_by TEXT NOT NULL, PRIMARY KEY(sla, period))""",
            """CREATE TABLE incidents(
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, title TEXT NOT NULL,
                source TEXT NOT NULL, targets TEXT NOT NULL,
                started_at DOUBLE PRECISION NOT NULL, reason TEXT)""",
            """CREATE TABLE incident_updates(
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                incident BIGINT NOT NULL REFERENCES incidents(id),
                at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL)""",
            "CREATE INDEX incident_updates_by_incident ON incident_updates(incident, id)",
            # the oracle's report journal, as the SQLite file has it at schema 5
            """CREATE TABLE reports(
                domain TEXT NOT NULL, sla TEXT NOT NULL, period BIGINT NOT NULL,
                signer TEXT NOT NULL, state TEXT NOT NULL, payload TEXT NOT NULL,
                signature BYTEA, tx_hash TEXT, nonce BIGINT, block BIGINT, reason TEXT,
                attempts INTEGER NOT NULL DEFAULT 0, updated_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY(domain, sla, period, signer))""",
            """CREATE TABLE oracle_txs(
                domain TEXT NOT NULL, sla TEXT NOT NULL, period BIGINT NOT NULL,
                signer TEXT NOT NULL, tx_hash TEXT NOT NULL, nonce BIGINT NOT NULL,
                max_fee NUMERIC(78) NOT NULL, priority_fee NUMERIC(78) NOT NULL,
                gas BIGINT NOT NULL, sent_at DOUBLE PRECISION NOT NULL, data BYTEA,
                PRIMARY KEY(domain, sla, period, signer, tx_hash))""",
            "CREATE TABLE oracle_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            # which instance writes a target's rows (kind 'target') or an SLO's window
            # snapshot (kind 'slo'): the last to claim it
            """CREATE TABLE owners(
                kind TEXT NOT NULL, id TEXT NOT NULL, instance TEXT NOT NULL,
                since DOUBLE PRECISION NOT NULL, PRIMARY KEY(kind, id))""",
        ),
    ),
    Migration(2, ("ALTER TABLE sla_progress ADD COLUMN schedule TEXT",)),
    Migration(3, ("ALTER TABLE sla_progress ADD COLUMN policies TEXT",)),
    Migration(4, ("ALTER TABLE periods ADD COLUMN policy TEXT",)),
)

#: the schema a PostgreSQL database has once every step ran
POSTGRES_SCHEMA_VERSION: Final = POSTGRES_MIGRATIONS[-1].version


def migrate(
    conn: sqlite3.Connection, version: int, clock: Callable[[], float] = time.time
) -> int:
    """Apply every step above ``version``, each in its own transaction; the new version.

    `conn` is in autocommit mode (``isolation_level=None``). A step and the
    version it reaches commit together, so a crash mid-way leaves the file at
    the last complete step and the next open resumes from there.
    """
    for step in MIGRATIONS:
        if step.version <= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in step.statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={step.version:d}")
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_migrated_at', ?)",
                (str(clock()),),
            )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        version = step.version
    return version
