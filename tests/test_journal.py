"""The oracle's report journal over a real store (no chain): a SQLite file, and a
PostgreSQL database (tests/pg.py) for the tests that take `any_store`."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from eth_utils.crypto import keccak

from slamon.chain.eip712 import Report, SignedReport
from slamon.oracle.journal import (
    CONFIRMED,
    FAILED,
    SENT,
    SIGNED,
    SKIPPED,
    STATES,
    TABLES,
    Journal,
    JournalKey,
    JournalSchemaError,
    SentTx,
    domain_of,
    key_of,
)
from slamon.store.base import Store
from slamon.store.migrations import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from slamon.store.postgres import PostgresStore
from slamon.store.sqlite import StateStore

T = TypeVar("T")

KEY = keccak(text="journal-test-signer")
OTHER_KEY = keccak(text="journal-test-other")
CONTRACT = "0x" + "42" * 20


def signed(period: int, sla: str = "a", key: bytes = KEY, end: int | None = None) -> SignedReport:
    start = 1_000_000 + period * 3600
    stop = end if end is not None else start + 3600
    report = Report(
        sla_id=keccak(text=sla),
        period_id=period,
        period_start=start,
        period_end=stop,
        sli_ppm=999_500,
        slo_ppm=999_000,
        good=9995,
        valid=10_000,
        no_data=0,
        breached=False,
        evidence_root=keccak(text=f"root-{period}"),
        policy_digest=b"\xa1" * 32,
        issued_at=stop + 1,
    )
    return SignedReport.sign(report, key, 31337, CONTRACT)


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "sqlite":
        return lambda: StateStore(tmp_path / "state.sqlite3")
    dsn = request.getfixturevalue("pg_dsn")
    return lambda: PostgresStore(dsn, "default")


@pytest.fixture
async def any_store(opener: Callable[[], Store]) -> AsyncIterator[Store]:
    s = opener()
    await s.open()
    yield s
    await s.close()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def tx(h: str, nonce: int, fee: int = 100, at: float = 0.0) -> SentTx:
    return SentTx("0x" + h * 64, nonce, fee, fee // 10, 200_000, at)


async def test_add_is_idempotent_and_pending_sorted(any_store: Store) -> None:
    store = any_store
    j = Journal(store, clock=Clock())
    late, early = signed(5), signed(2)
    assert await j.add_signed(late, "checkout")
    assert await j.add_signed(early, "checkout")
    assert not await j.add_signed(early, "checkout")  # same (sla, period, signer): no-op
    assert await j.add_signed(signed(1, key=OTHER_KEY), "checkout")  # another signer
    mine = await j.pending(early.signer)
    assert [e.key.period for e in mine] == [2, 5]  # oldest period end first
    assert all(e.state == SIGNED and e.attempts == 0 for e in mine)
    assert mine[0].signed == early
    assert len(await j.pending()) == 3
    # a sent entry comes first: it holds a nonce
    await j.mark_sent(key_of(late, "checkout"), tx("a", 7))
    assert [e.key.period for e in await j.pending(early.signer)] == [5, 2]
    counts = await j.counts()
    assert counts[SIGNED] == 2 and counts[SENT] == 1 and counts[CONFIRMED] == 0


async def test_default_label_is_onchain_id(any_store: Store) -> None:
    store = any_store
    j = Journal(store)
    s = signed(0)
    await j.add_signed(s)
    (entry,) = await j.pending()
    assert entry.key == JournalKey("0x" + s.report.sla_id.hex(), 0, s.signer)


async def test_sent_history_confirm_and_restart(opener: Callable[[], Store]) -> None:
    s = opener()
    await s.open()
    clock = Clock()
    j = Journal(s, clock=clock)
    rep = signed(3)
    key = key_of(rep, "api")
    await j.add_signed(rep, "api")
    await j.mark_sent(key, tx("a", 4, 100, 1.0))
    await j.mark_sent(key, tx("b", 4, 113, 2.0))  # replacement, same nonce
    entry = await j.get(key)
    assert entry is not None and entry.state == SENT
    assert entry.tx_hash == "0x" + "b" * 64 and entry.nonce == 4 and entry.attempts == 2
    assert [t.tx_hash[2:3] for t in entry.txs] == ["a", "b"]
    assert await j.last_success() is None
    await s.close()

    # restart: the journal is resumed as it was
    s2 = opener()
    await s2.open()
    j2 = Journal(s2, clock=clock)
    (again,) = await j2.pending()
    assert again == entry
    await j2.mark_confirmed(key, 1234, tx_hash=entry.tx_hash)
    assert await j2.pending() == []
    done = await j2.get(key)
    assert done is not None and done.state == CONFIRMED and done.block == 1234
    success = await j2.last_success()
    assert success is not None and success == done.updated_at
    await s2.close()


async def test_forget_tx_returns_to_signed(any_store: Store) -> None:
    store = any_store
    j = Journal(store, clock=Clock())
    rep = signed(1)
    key = key_of(rep)
    await j.add_signed(rep)
    await j.mark_sent(key, tx("c", 9))
    await j.forget_tx(key, "0x" + "c" * 64)
    entry = await j.get(key)
    assert entry is not None and entry.state == SIGNED and entry.txs == ()
    assert entry.tx_hash is None and entry.nonce is None
    # with an older transaction left, the entry stays sent and points at it
    await j.mark_sent(key, tx("d", 9, at=1.0))
    await j.mark_sent(key, tx("e", 9, at=2.0))
    await j.forget_tx(key, "0x" + "e" * 64)
    entry = await j.get(key)
    assert entry is not None and entry.state == SENT and entry.tx_hash == "0x" + "d" * 64


async def test_failed_skipped_and_notes(any_store: Store) -> None:
    store = any_store
    j = Journal(store, clock=Clock())
    rep = signed(1)
    key = key_of(rep, "x")
    await j.add_signed(rep, "x")
    await j.note(key, "PeriodNotFinished")
    entry = await j.get(key)
    assert entry is not None and entry.reason == "PeriodNotFinished" and entry.state == SIGNED
    await j.mark_failed(key, "PolicyMismatch")
    assert await j.pending() == []
    assert await j.add_skipped("x", 2, rep.signer, "TooFewSamples", {"valid": 3})
    assert not await j.add_skipped("x", 2, rep.signer, "TooFewSamples")
    skipped = await j.entries(SKIPPED)
    assert len(skipped) == 1 and skipped[0].signed is None and skipped[0].reason == "TooFewSamples"
    counts = await j.counts()
    assert counts[FAILED] == 1 and counts[SKIPPED] == 1 and counts[SIGNED] == 0
    failed = await j.entries(FAILED)
    assert failed[0].reason == "PolicyMismatch"


class _BareStore:
    """A StoreLike over a plain connection that no StateStore migrated."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def run_sql(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self.conn)


async def test_journal_creates_no_table(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "bare.sqlite3", isolation_level=None)
    try:
        j = Journal(_BareStore(conn), clock=Clock())
        with pytest.raises(JournalSchemaError, match="reports, oracle_txs, oracle_meta"):
            await j.counts()
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    finally:
        conn.close()


async def test_store_makes_every_journal_table(store: StateStore) -> None:
    j = Journal(store, clock=Clock())
    await j.ensure_schema()
    assert set(TABLES) <= set(await store.run_sql(
        lambda c: [r[0] for r in c.execute("SELECT name FROM sqlite_master")]))


#: what the previous journal ran on its own on a schema-1 state file
_OLD_JOURNAL_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS oracle_txs(
    sla TEXT NOT NULL, period INTEGER NOT NULL, signer TEXT NOT NULL,
    tx_hash TEXT NOT NULL, nonce INTEGER NOT NULL, max_fee INTEGER NOT NULL,
    priority_fee INTEGER NOT NULL, gas INTEGER NOT NULL, sent_at REAL NOT NULL,
    PRIMARY KEY(sla, period, signer, tx_hash)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS oracle_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) "
    "WITHOUT ROWID",
)


async def test_journal_of_a_previous_version_file_is_resumed(tmp_path: Path) -> None:
    """Schema 1 plus the tables the journal used to create itself, with a sent report:
    the new store migrates the file and the journal reads every entry and transaction."""
    path = tmp_path / "state.sqlite3"
    rep = signed(3)
    key = key_of(rep, "api")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("PRAGMA journal_mode=WAL")
    for statement in (*MIGRATIONS[0].statements, *_OLD_JOURNAL_SCHEMA):
        conn.execute(statement)
    conn.execute("PRAGMA user_version=1")
    conn.execute(
        "INSERT INTO reports(sla, period, signer, state, payload, signature, tx_hash, nonce, "
        "attempts, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 2, 50.0)",
        (key.sla, key.period, key.signer, SENT, rep.to_json(), rep.signature,
         "0x" + "b" * 64, 4),
    )
    for h, fee, at in (("a", 100, 1.0), ("b", 113, 2.0)):
        conn.execute(
            "INSERT INTO oracle_txs VALUES (?, ?, ?, ?, 4, ?, ?, 200000, ?)",
            (key.sla, key.period, key.signer, "0x" + h * 64, fee, fee // 10, at),
        )
    conn.execute("INSERT INTO oracle_meta(key, value) VALUES ('last_success', '40.0')")
    conn.close()

    s = StateStore(path)
    await s.open()
    try:
        assert await s.run_sql(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == (
            SCHEMA_VERSION
        )
        # the migration keys the row by the domain its signed payload names
        assert await Journal(s, clock=Clock(), domain=domain_of(1, CONTRACT)).pending() == []
        j = Journal(s, clock=Clock(), domain=domain_of(31337, CONTRACT))
        (entry,) = await j.pending()
        assert entry.key == key and entry.state == SENT and entry.attempts == 2
        assert entry.signed == rep
        assert entry.txs == (tx("a", 4, 100, 1.0), tx("b", 4, 113, 2.0))
        assert await j.last_success() == 40.0
        await j.mark_confirmed(key, 99, tx_hash=entry.tx_hash)
        assert await j.counts() == {**dict.fromkeys(STATES, 0), CONFIRMED: 1}
    finally:
        await s.close()


async def test_another_chain_or_contract_has_its_own_journal(any_store: Store) -> None:
    store = any_store
    """Pointed at a new contract or chain, the daemon must neither take the old domain's
    reports as done nor publish them to the new one."""
    old = Journal(store, clock=Clock(), domain=domain_of(31337, CONTRACT))
    rep = signed(3)
    assert await old.add_signed(rep, "api")
    await old.mark_sent(key_of(rep, "api"), tx("a", 4, 100, 1.0))
    for other in (domain_of(31337, "0x" + "43" * 20), domain_of(1, CONTRACT)):
        new = Journal(store, clock=Clock(), domain=other)
        assert await new.get(key_of(rep, "api")) is None
        assert await new.pending() == []
        assert await new.counts() == dict.fromkeys(STATES, 0)
        # the same (sla, period, signer) is a fresh entry there
        assert await new.add_signed(rep, "api")
        assert (await new.get(key_of(rep, "api"))).state == SIGNED  # type: ignore[union-attr]
        assert (await new.get(key_of(rep, "api"))).txs == ()  # type: ignore[union-attr]
    (entry,) = await old.pending()
    assert entry.state == SENT and len(entry.txs) == 1
    # the contract address is compared case-insensitively
    assert domain_of(31337, CONTRACT.upper().replace("0X", "0x")) == domain_of(31337, CONTRACT)
