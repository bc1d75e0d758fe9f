"""The oracle's report journal, in the state store (tables ``reports``, ``oracle_txs``,
``oracle_meta``).

Every signed report moves through::

    signed -> sent(tx hash, nonce) -> confirmed(block) | failed(reason)
    skipped(reason)                    (a period with too little data: never signed)

One row per (sla, period, signer) in ``reports``. Every transaction ever broadcast for a
report — the first one and each same-nonce replacement, and a new nonce after the old one was
taken by someone else — is kept in ``oracle_txs``. After a restart the publisher looks up the
receipt of *every* recorded hash before it considers sending anything.

The journal creates no table: all three come from the store's migrations
(:mod:`slamon.store.migrations`), applied when the store opens, so the file's schema version
says what it holds. The journal only checks, once, that they are there.

A transaction is recorded *before* it is broadcast (its hash is known once it is signed), so a
crash between the two leaves a ``sent`` entry whose transaction may or may not exist: the
publisher then finds out from the chain, and never sends a second report transaction while the
first could still be mined.

All SQL runs on the store's thread through the store's ``run_sql``, in the SQL
both backends (SQLite, PostgreSQL) take as written.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from eth_utils.address import to_checksum_address

from slamon.chain.eip712 import SignedReport
from slamon.store.base import Sql, StoreError

T = TypeVar("T")

SIGNED: Final = "signed"
SENT: Final = "sent"
CONFIRMED: Final = "confirmed"
FAILED: Final = "failed"
SKIPPED: Final = "skipped"
STATES: Final = (SIGNED, SENT, CONFIRMED, FAILED, SKIPPED)

#: the tables the journal reads and writes (made by the store's migrations)
TABLES: Final = ("reports", "oracle_txs", "oracle_meta")


class JournalSchemaError(StoreError):
    """The connection lacks the journal's tables: it is not one of an opened StateStore."""


class StoreLike(Protocol):
    """What the journal needs from a store (either backend): SQL both run as written."""

    async def run_sql(self, fn: Callable[[Sql], T]) -> T: ...


@dataclass(frozen=True, slots=True, order=True)
class JournalKey:
    sla: str
    period: int
    signer: str

    def __str__(self) -> str:
        return f"{self.sla}/{self.period}/{self.signer}"


@dataclass(frozen=True, slots=True)
class SentTx:
    """One broadcast transaction (enough to rebuild it: same nonce, fees and gas)."""

    tx_hash: str
    nonce: int
    max_fee: int
    priority_fee: int
    gas: int
    sent_at: float
    #: the calldata when it is not our report alone (co-signers' reports relayed with it)
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    key: JournalKey
    state: str
    signed: SignedReport | None
    tx_hash: str | None
    nonce: int | None
    block: int | None
    reason: str | None
    attempts: int
    updated_at: float
    txs: tuple[SentTx, ...] = ()

    @property
    def sort_key(self) -> tuple[int, int, int, JournalKey]:
        """Sent entries first (they hold nonces, lowest first), then the oldest period end."""
        if self.state == SENT:
            return (0, self.nonce if self.nonce is not None else -1, 0, self.key)
        end = self.signed.report.period_end if self.signed is not None else 0
        return (1, 0, end, self.key)


def default_sla_label(signed: SignedReport) -> str:
    """The journal's ``sla`` column when the caller gives no name: the on-chain id in hex."""
    return "0x" + signed.report.sla_id.hex()


def key_of(signed: SignedReport, sla: str | None = None) -> JournalKey:
    return JournalKey(
        sla if sla is not None else default_sla_label(signed),
        int(signed.report.period_id),
        to_checksum_address(signed.signer),
    )


def domain_of(chain_id: int, contract: str) -> str:
    """The journal's ``domain`` column: chain id and contract address (lower case)."""
    return f"{int(chain_id)}:{contract.lower()}"


def check_schema(conn: Sql) -> None:
    """Raise JournalSchemaError unless every table of the journal exists (creates nothing)."""
    missing = []
    for table in TABLES:
        try:
            conn.execute(f"SELECT count(*) FROM {table} WHERE 1 = 0").fetchall()
        except Exception:  # either driver's "no such table"; nothing else can fail here
            missing.append(table)
    if missing:
        raise JournalSchemaError(
            f"the state has no {', '.join(missing)} table: the oracle journal needs a "
            "store opened by slamon, whose migrations create every table"
        )


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT / ROLLBACK around a block (autocommit connection)."""

    def __init__(self, conn: Sql) -> None:
        self.conn = conn

    def __enter__(self) -> Sql:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            with contextlib.suppress(Exception):  # the original error is what matters
                self.conn.execute("ROLLBACK")


_COLUMNS: Final = (
    "sla, period, signer, state, payload, tx_hash, nonce, block, reason, attempts, updated_at"
)


class Journal:
    """Async API over the ``reports`` table of a :class:`slamon.store.sqlite.StateStore`."""

    def __init__(self, store: StoreLike, *, clock: Callable[[], float] = time.time,
                 domain: str = "") -> None:
        self.store = store
        self.clock = clock
        #: every row is scoped to the EIP-712 domain (``domain_of(chain_id, contract)``):
        #: pointed at another contract or chain, the daemon starts a fresh journal instead
        #: of taking the old contract's reports for its own (or sending them there)
        self.domain = domain
        self._ready = False

    async def ensure_schema(self) -> None:
        """Check (once) that the store holds the journal's tables; raises JournalSchemaError.

        The store's migrations create them when it opens: a failure here means a
        connection that did not come from an opened StateStore, not something to
        repair from here.
        """
        if not self._ready:
            await self.store.run_sql(check_schema)
            self._ready = True

    async def _run(self, fn: Callable[[Sql], T]) -> T:
        await self.ensure_schema()
        return await self.store.run_sql(fn)

    # -- writes -----------------------------------------------------------------------------
    async def add_signed(self, signed: SignedReport, sla: str | None = None) -> bool:
        """Journal a signed report; False (no change) if (sla, period, signer) is known."""
        key = key_of(signed, sla)
        now = self.clock()

        def fn(conn: Sql) -> bool:
            cur = conn.execute(
                "INSERT INTO reports(domain, sla, period, signer, state, payload, signature, "
                "attempts, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?) "
                "ON CONFLICT DO NOTHING",
                (self.domain, key.sla, key.period, key.signer, SIGNED, signed.to_json(),
                 signed.signature, now),
            )
            return cur.rowcount == 1

        return await self._run(fn)

    async def add_skipped(
        self,
        sla: str,
        period: int,
        signer: str,
        reason: str,
        detail: dict[str, object] | None = None,
    ) -> bool:
        """Journal a period that is not reported (e.g. too few samples); False if known."""
        key = JournalKey(sla, int(period), to_checksum_address(signer))
        payload = json.dumps({"skipped": reason, **(detail or {})}, sort_keys=True, default=str)
        now = self.clock()

        def fn(conn: Sql) -> bool:
            cur = conn.execute(
                "INSERT INTO reports(domain, sla, period, signer, state, payload, reason, "
                "attempts, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?) "
                "ON CONFLICT DO NOTHING",
                (self.domain, key.sla, key.period, key.signer, SKIPPED, payload, reason, now),
            )
            return cur.rowcount == 1

        return await self._run(fn)

    async def mark_sent(self, key: JournalKey, tx: SentTx) -> None:
        """Record a broadcast (or about to be broadcast) transaction; keeps every earlier hash."""
        now = self.clock()

        def fn(conn: Sql) -> None:
            with _Tx(conn):
                conn.execute(
                    "INSERT INTO oracle_txs(domain, sla, period, signer, tx_hash, "
                    "nonce, max_fee, priority_fee, gas, sent_at, data) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(domain, sla, period, signer, tx_hash) DO UPDATE SET "
                    "nonce = excluded.nonce, max_fee = excluded.max_fee, "
                    "priority_fee = excluded.priority_fee, gas = excluded.gas, "
                    "sent_at = excluded.sent_at, data = excluded.data",
                    (self.domain, key.sla, key.period, key.signer, tx.tx_hash, tx.nonce, tx.max_fee,
                     tx.priority_fee, tx.gas, tx.sent_at, tx.data),
                )
                conn.execute(
                    "UPDATE reports SET state = ?, tx_hash = ?, nonce = ?, reason = NULL, "
                    "attempts = attempts + 1, updated_at = ? "
                    "WHERE domain = ? AND sla = ? AND period = ? AND signer = ?",
                    (SENT, tx.tx_hash, tx.nonce, now, self.domain, key.sla, key.period, key.signer),
                )

        await self._run(fn)

    async def forget_tx(self, key: JournalKey, tx_hash: str) -> None:
        """Drop a transaction the node refused outright (it exists nowhere). With no other
        transaction left the entry goes back to ``signed``."""
        now = self.clock()

        def fn(conn: Sql) -> None:
            with _Tx(conn):
                conn.execute(
                    "DELETE FROM oracle_txs WHERE domain = ? AND sla = ? AND period = ? "
                    "AND signer = ? "
                    "AND tx_hash = ?",
                    (self.domain, key.sla, key.period, key.signer, tx_hash),
                )
                last = conn.execute(
                    "SELECT tx_hash, nonce FROM oracle_txs WHERE domain = ? AND sla = ? "
                    "AND period = ? AND signer = ? ORDER BY sent_at DESC LIMIT 1",
                    (self.domain, key.sla, key.period, key.signer),
                ).fetchone()
                if last is None:
                    conn.execute(
                        "UPDATE reports SET state = ?, tx_hash = NULL, nonce = NULL, "
                        "updated_at = ? WHERE domain = ? AND sla = ? AND period = ? AND signer = ? "
                        "AND state = ?",
                        (SIGNED, now, self.domain, key.sla, key.period, key.signer, SENT),
                    )
                else:
                    conn.execute(
                        "UPDATE reports SET tx_hash = ?, nonce = ?, updated_at = ? "
                        "WHERE domain = ? AND sla = ? AND period = ? AND signer = ?",
                        (last[0], last[1], now, self.domain, key.sla, key.period, key.signer),
                    )

        await self._run(fn)

    async def mark_confirmed(
        self,
        key: JournalKey,
        block: int | None,
        *,
        tx_hash: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Final success: mined in ``block`` (by ``tx_hash``), or already recorded on-chain
        (``block`` None, ``reason`` says why)."""
        now = self.clock()

        def fn(conn: Sql) -> None:
            with _Tx(conn):
                conn.execute(
                    "UPDATE reports SET state = ?, block = ?, reason = ?, "
                    "tx_hash = COALESCE(?, tx_hash), updated_at = ? "
                    "WHERE domain = ? AND sla = ? AND period = ? AND signer = ?",
                    (CONFIRMED, block, reason, tx_hash, now, self.domain, key.sla, key.period,
                     key.signer),
                )
                conn.execute(
                    "INSERT INTO oracle_meta(key, value) VALUES ('last_success', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (repr(now),),
                )

        await self._run(fn)

    async def mark_failed(self, key: JournalKey, reason: str) -> None:
        """Final failure (not retried)."""
        await self._set_state(key, FAILED, reason)

    async def note(self, key: JournalKey, reason: str | None) -> None:
        """Record why an entry is waiting (fee cap, period not finished, RPC down...)."""
        now = self.clock()

        def fn(conn: Sql) -> None:
            conn.execute(
                "UPDATE reports SET reason = ?, updated_at = ? "
                "WHERE domain = ? AND sla = ? AND period = ? AND signer = ?",
                (reason, now, self.domain, key.sla, key.period, key.signer),
            )

        await self._run(fn)

    async def _set_state(self, key: JournalKey, state: str, reason: str | None) -> None:
        now = self.clock()

        def fn(conn: Sql) -> None:
            conn.execute(
                "UPDATE reports SET state = ?, reason = ?, updated_at = ? "
                "WHERE domain = ? AND sla = ? AND period = ? AND signer = ?",
                (state, reason, now, self.domain, key.sla, key.period, key.signer),
            )

        await self._run(fn)

    # -- reads ------------------------------------------------------------------------------
    async def get(self, key: JournalKey) -> JournalEntry | None:
        def fn(conn: Sql) -> JournalEntry | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM reports "
                "WHERE domain = ? AND sla = ? AND period = ? AND signer = ?",
                (self.domain, key.sla, key.period, key.signer),
            ).fetchone()
            return None if row is None else _entry(conn, row, self.domain)

        return await self._run(fn)

    async def pending(self, signer: str | None = None) -> list[JournalEntry]:
        """Entries still to publish (signed or sent): sent ones first by nonce, then by the
        oldest period end. With ``signer``, only that signer's entries."""

        def fn(conn: Sql) -> list[JournalEntry]:
            sql = f"SELECT {_COLUMNS} FROM reports WHERE domain = ? AND state IN (?, ?)"
            params: list[object] = [self.domain, SIGNED, SENT]
            if signer is not None:
                sql += " AND signer = ?"
                params.append(to_checksum_address(signer))
            return [_entry(conn, row, self.domain) for row in conn.execute(sql, params).fetchall()]

        entries = await self._run(fn)
        entries.sort(key=lambda e: e.sort_key)
        return entries

    async def entries(self, state: str | None = None) -> list[JournalEntry]:
        """Every entry (or those in ``state``), by key."""

        def fn(conn: Sql) -> list[JournalEntry]:
            if state is None:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM reports WHERE domain = ?", (self.domain,)
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM reports WHERE domain = ? AND state = ?",
                    (self.domain, state),
                ).fetchall()
            return sorted((_entry(conn, row, self.domain) for row in rows), key=lambda e: e.key)

        return await self._run(fn)

    async def recent(self, state: str, limit: int) -> list[JournalEntry]:
        """The ``limit`` entries in ``state`` updated last, newest first."""

        def fn(conn: Sql) -> list[JournalEntry]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM reports WHERE domain = ? AND state = ? "
                "ORDER BY updated_at DESC LIMIT ?",
                (self.domain, state, limit),
            ).fetchall()
            return [_entry(conn, row, self.domain) for row in rows]

        return await self._run(fn)

    async def counts(self) -> dict[str, int]:
        """Number of entries per state (every state present, 0 when none)."""

        def fn(conn: Sql) -> dict[str, int]:
            out = dict.fromkeys(STATES, 0)
            for state, n in conn.execute(
                "SELECT state, count(*) FROM reports WHERE domain = ? GROUP BY state",
                (self.domain,),
            ):
                out[str(state)] = int(n)
            return out

        return await self._run(fn)

    async def last_success(self) -> float | None:
        """Wall-clock time of the last confirmation (persisted across restarts)."""

        def fn(conn: Sql) -> float | None:
            row = conn.execute(
                "SELECT value FROM oracle_meta WHERE key = 'last_success'"
            ).fetchone()
            return None if row is None else float(row[0])

        return await self._run(fn)


def _entry(conn: Sql, row: tuple[object, ...], domain: str) -> JournalEntry:
    sla, period, signer, state, payload, tx_hash, nonce, block, reason, attempts, updated = row
    key = JournalKey(str(sla), int(period), str(signer))  # type: ignore[call-overload]
    signed: SignedReport | None = None
    if state != SKIPPED:
        # verify=False: the report was verified when it was signed; a journal row must stay
        # readable even if the signature check changes
        signed = SignedReport.from_json(str(payload), verify=False)
    txs = tuple(
        SentTx(str(h), int(n), int(mf), int(pf), int(g), float(at),
               None if data is None else bytes(data))
        for h, n, mf, pf, g, at, data in conn.execute(
            "SELECT tx_hash, nonce, max_fee, priority_fee, gas, sent_at, data FROM oracle_txs "
            "WHERE domain = ? AND sla = ? AND period = ? AND signer = ? ORDER BY sent_at, tx_hash",
            (domain, key.sla, key.period, key.signer),
        )
    )
    return JournalEntry(
        key=key,
        state=str(state),
        signed=signed,
        tx_hash=None if tx_hash is None else str(tx_hash),
        nonce=None if nonce is None else int(nonce),  # type: ignore[call-overload]
        block=None if block is None else int(block),  # type: ignore[call-overload]
        reason=None if reason is None else str(reason),
        attempts=int(attempts),  # type: ignore[call-overload]
        updated_at=float(updated),  # type: ignore[arg-type]
        txs=txs,
    )
