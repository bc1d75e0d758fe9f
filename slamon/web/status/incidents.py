"""Incidents for the status page, and the last on-chain report per SLA.

Two sources: the daemon's TARGET_DOWN/TARGET_UP transitions open and resolve
*automatic* incidents, and operators post *manual* ones (title, affected
targets, status, message) through the API or `slamon incident`. Both are kept
in the state file when there is one, so a restart loses none: an incident is
its list of updates, each (time, status, message), only ever appended to; its
state is its last update.

Memory stays bounded: the most recent `capacity` incidents are held (open ones
always, and up to a tenth of `capacity` more between two trims), older ones stay in
the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from slamon.util.events import Event, EventBus, EventKind, Subscription
from slamon.util.log import get_logger

if TYPE_CHECKING:
    from slamon.store.base import Sql, Store

Status = Literal["investigating", "identified", "monitoring", "resolved"]
STATUSES: tuple[Status, ...] = ("investigating", "identified", "monitoring", "resolved")
#: longest title and message kept (the page and notifications stay readable)
MAX_TITLE, MAX_MESSAGE = 200, 5000
#: automatic incidents are written in batches: the transitions that arrive within this
#: many seconds of the first go in one transaction. One store round trip per transition
#: cost ~0.1 ms of CPU (a thread hand-off and a commit) and a flapping fleet makes dozens
#: a second; the status page shows an automatic incident this much later.
BATCH_WAIT = 0.25
#: at most this many transitions per transaction (a mass outage is written in pieces)
BATCH_MAX = 1000

#: one write: an incident to insert (update None) or an update to append to one
_Op = tuple["Incident", "Update | None"]


@dataclass(slots=True)
class Update:
    at: float
    status: Status
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "status": self.status, "message": self.message}


@dataclass(slots=True)
class Incident:
    id: int
    title: str
    source: Literal["auto", "manual"]
    targets: tuple[str, ...]
    start: float
    updates: list[Update] = field(default_factory=list)
    #: automatic incidents: the failure reason of the probe that opened it
    reason: str | None = None

    @property
    def status(self) -> Status:
        return self.updates[-1].status if self.updates else "investigating"

    @property
    def ongoing(self) -> bool:
        return self.status != "resolved"

    @property
    def end(self) -> float | None:
        return None if self.ongoing else self.updates[-1].at

    @property
    def target(self) -> str:
        return self.targets[0] if self.targets else ""

    def to_json(self, now: float) -> dict[str, Any]:
        end = self.end if self.end is not None else now
        return {"id": self.id, "title": self.title, "source": self.source,
                "status": self.status, "targets": list(self.targets),
                "target": self.target, "start": self.start, "end": self.end,
                "duration": max(0.0, end - self.start), "reason": self.reason,
                "ongoing": self.ongoing, "updates": [u.to_json() for u in self.updates]}


@dataclass(slots=True)
class Report:
    sla: str
    at: float
    period: int | None
    tx_hash: str | None
    chain_id: int | None = None


class IncidentError(ValueError):
    """A request that cannot become an incident or an update; the message says why."""


class IncidentLog:
    def __init__(self, capacity: int = 500, clock: Any = time.time) -> None:
        self.capacity = capacity
        self.incidents: deque[Incident] = deque()
        #: how many of `incidents` are resolved: with none, a trim has nothing to drop and
        #: need not look (10,000 targets down at once made each insert walk them all)
        self._resolved = 0
        self._open_auto: dict[str, Incident] = {}
        self.reports: dict[str, Report] = {}
        self.store: Store | None = None
        self._clock = clock
        self._next_id = 1
        self._sub: Subscription | None = None
        self._bus: EventBus | None = None
        self._task: asyncio.Task[None] | None = None
        #: transitions taken from the bus and not written yet (see BATCH_WAIT)
        self._batch: list[Event] = []
        self._writing: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self.log = get_logger()

    # -- persistence ---------------------------------------------------------
    async def load(self, store: Store) -> None:
        """Use `store` from now on, and hold its recent and open incidents."""
        self.store = store
        loaded = await store.run_sql(lambda db: _load(db, self.capacity))
        self.incidents = deque(loaded)
        self._resolved = sum(1 for i in loaded if not i.ongoing)
        self._open_auto = {i.target: i for i in loaded if i.source == "auto" and i.ongoing}
        self._next_id = max((i.id for i in loaded), default=0) + 1

    async def _commit(self, ops: list[_Op]) -> None:
        """Write `ops` in one transaction, then hold what they add and update."""
        if self.store is not None:
            ids = await self.store.run_sql(lambda db: _write(db, ops))
        else:
            ids = list(range(self._next_id, self._next_id + len(ops)))
        new = iter(ids)
        for inc, update in ops:
            if update is None:
                self._added(inc, next(new))
            else:
                self._updated(inc, update)

    def _added(self, inc: Incident, incident_id: int) -> None:
        """`inc`, written under `incident_id`, is now held."""
        inc.id = incident_id
        self._next_id = incident_id + 1
        self.incidents.append(inc)
        self._trim()

    def _updated(self, inc: Incident, update: Update) -> None:
        was_ongoing = inc.ongoing
        inc.updates.append(update)
        if was_ongoing and not inc.ongoing:
            self._resolved += 1  # an ongoing incident is never trimmed: it is in the deque

    @property
    def trim_step(self) -> int:
        """How many resolved incidents past `capacity` start a trim (a tenth of it)."""
        return max(1, self.capacity // 10)

    def _trim(self) -> None:
        """Past `capacity`, the oldest resolved incidents go; open ones stay whatever
        their age. In one pass once a tenth of `capacity` can go: with thousands of
        targets down, a walk past every open incident (and `remove`, comparing each
        as a dataclass) for each incident added held the event loop for seconds a
        second at 10,000 flapping targets."""
        excess = min(len(self.incidents) - self.capacity, self._resolved)
        if excess < self.trim_step:
            return
        kept: deque[Incident] = deque()
        keep = kept.append
        for inc in self.incidents:
            if excess and not inc.ongoing:
                excess -= 1
                self._resolved -= 1
            else:
                keep(inc)
        self.incidents = kept

    # -- automatic incidents -------------------------------------------------
    async def record(self, event: Event) -> None:
        await self.record_many([event])

    async def record_many(self, events: list[Event]) -> None:
        """Apply `events` in order, writing what they open and resolve in one transaction.

        If the write fails nothing of it is applied (and the open incidents are as
        before), as for a single event; the error is raised."""
        async with self._lock:
            ops: list[_Op] = []
            undo: list[tuple[str, Incident | None]] = []
            for event in events:
                self._plan(event, ops, undo)
            if not ops:
                return
            try:
                await self._commit(ops)
            except BaseException:
                for target, before in reversed(undo):
                    if before is None:
                        self._open_auto.pop(target, None)
                    else:
                        self._open_auto[target] = before
                raise

    def _plan(self, event: Event, ops: list[_Op], undo: list[tuple[str, Incident | None]]
              ) -> None:
        """What `event` writes, in `ops`; the open automatic incidents are moved on at
        once (so later events of the batch see them) and `undo` says how to move back."""
        if event.kind == EventKind.TARGET_DOWN and event.target:
            if event.target in self._open_auto:
                return
            reason = event.details.get("reason")
            reason_text = str(reason) if reason is not None else None
            inc = Incident(0, f"{event.target} is down", "auto", (event.target,), event.at,
                           [Update(event.at, "investigating",
                                   f"probes fail ({reason_text or 'other'})")],
                           reason=reason_text)
            ops.append((inc, None))
            undo.append((event.target, None))
            self._open_auto[event.target] = inc
        elif event.kind == EventKind.TARGET_UP and event.target:
            open_inc = self._open_auto.pop(event.target, None)
            if open_inc is not None:
                undo.append((event.target, open_inc))
                ops.append((open_inc, Update(event.at, "resolved", "probes succeed again")))
        elif event.kind == EventKind.REPORT_PUBLISHED and event.sla:
            period = event.details.get("period")
            chain = event.details.get("chain_id")
            tx = event.details.get("tx_hash")
            self.reports[event.sla] = Report(
                event.sla, event.at, int(period) if isinstance(period, int) else None,
                str(tx) if tx is not None else None,
                int(chain) if isinstance(chain, int) else None)

    # -- manual incidents ----------------------------------------------------
    async def open(self, title: str, message: str, targets: tuple[str, ...] = (),
                   status: Status = "investigating") -> Incident:
        title, message = _text(title, "title", MAX_TITLE), _text(message, "message", MAX_MESSAGE)
        if status == "resolved":
            raise IncidentError("status: a new incident cannot start resolved")
        async with self._lock:
            now = self._clock()
            inc = Incident(0, title, "manual", tuple(dict.fromkeys(targets)), now,
                           [Update(now, status, message)])
            await self._commit([(inc, None)])
        self.log.info("incident_opened", incident=inc.id, status=status, targets=list(targets))
        self._publish(inc)
        return inc

    async def update(self, incident_id: int, status: Status, message: str) -> Incident:
        message = _text(message, "message", MAX_MESSAGE)
        async with self._lock:
            inc = await self.get(incident_id)
            if inc is None:
                raise LookupError(incident_id)
            if not inc.ongoing:
                raise IncidentError(f"incident {incident_id} is resolved: open a new one")
            await self._commit([(inc, Update(self._clock(), status, message))])
            if inc.source == "auto" and status == "resolved":
                self._open_auto.pop(inc.target, None)
        self.log.info("incident_updated", incident=inc.id, status=status)
        self._publish(inc)
        return inc

    async def get(self, incident_id: int) -> Incident | None:
        for inc in self.incidents:
            if inc.id == incident_id:
                return inc
        if self.store is not None:
            return await self.store.run_sql(lambda db: _one(db, incident_id))
        return None

    def _publish(self, inc: Incident) -> None:
        if self._bus is None:
            return
        last = inc.updates[-1]
        self._bus.publish(Event(
            EventKind.INCIDENT_UPDATED, last.at, target=inc.target or None,
            summary=f"[{last.status}] {inc.title}: {last.message}",
            details={"incident": inc.id, "title": inc.title, "status": last.status,
                     "message": last.message, "targets": list(inc.targets)}))

    # -- views ---------------------------------------------------------------
    def for_targets(self, targets: set[str] | tuple[str, ...], limit: int) -> list[Incident]:
        """Incidents touching any of `targets`, most recent first."""
        wanted = set(targets)
        out = [i for i in reversed(self.incidents) if wanted.intersection(i.targets)]
        return out[:limit]

    def general(self, limit: int) -> list[Incident]:
        """Manual incidents that name no target (the whole service), most recent first."""
        return [i for i in reversed(self.incidents) if not i.targets][:limit]

    def recent(self, limit: int, ongoing_only: bool = False) -> list[Incident]:
        out = [i for i in reversed(self.incidents) if i.ongoing or not ongoing_only]
        return out[:limit]

    # -- EventBus plumbing ---------------------------------------------------
    def start(self, bus: EventBus, queue: int = 10_000) -> None:
        self._bus = bus
        self._sub = bus.subscribe(queue)
        self._task = asyncio.create_task(self._run(self._sub), name="incident-log")

    async def _run(self, sub: Subscription) -> None:
        while True:
            self._batch.append(await sub.queue.get())
            if sub.queue.empty():
                await asyncio.sleep(BATCH_WAIT)
            self._take(sub)
            # shielded: a stop waits for a write under way rather than cancelling it,
            # which could leave a transaction committed that the log never applied
            self._writing = asyncio.ensure_future(self._write_batch())
            await asyncio.shield(self._writing)

    def _take(self, sub: Subscription) -> None:
        while len(self._batch) < BATCH_MAX and not sub.queue.empty():
            self._batch.append(sub.queue.get_nowait())

    async def _write_batch(self) -> None:
        batch, self._batch = self._batch, []
        try:
            await self.record_many(batch)
        except Exception as exc:  # a store error must not stop the page
            self.log.warning("incident_record_failed", error=type(exc).__name__,
                             events=len(batch))

    async def stop(self) -> None:
        """Stop taking events; write the ones taken or queued (the store is still open)."""
        if self._bus is not None and self._sub is not None:
            self._bus.unsubscribe(self._sub)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._writing is not None:
            await self._writing
            self._writing = None
        if self._sub is not None:
            while self._batch or not self._sub.queue.empty():
                self._take(self._sub)
                await self._write_batch()


def _text(value: str, name: str, limit: int) -> str:
    value = value.strip()
    if not value:
        raise IncidentError(f"{name}: must not be empty")
    if len(value) > limit:
        raise IncidentError(f"{name}: at most {limit} characters")
    return value


# -- rows (on the store's thread) ----------------------------------------------

def _write(db: Sql, ops: list[_Op]) -> list[int]:
    """Insert the incidents and append the updates of `ops` in order, in one transaction;
    the new incidents' ids, in order."""
    ids: list[int] = []
    #: id(Incident) -> its row, for an update to an incident inserted in this transaction
    inserted: dict[int, int] = {}
    db.execute("BEGIN IMMEDIATE")
    try:
        for inc, update in ops:
            if update is None:
                new_id = _insert(db, inc)
                inserted[id(inc)] = new_id
                ids.append(new_id)
            else:
                _append(db, inserted.get(id(inc), inc.id), update)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return ids


def _insert(db: Sql, inc: Incident) -> int:
    row = db.execute(
        "INSERT INTO incidents(title, source, targets, started_at, reason) "
        "VALUES (?, ?, ?, ?, ?) RETURNING id",
        (inc.title, inc.source, json.dumps(list(inc.targets)), inc.start, inc.reason)
    ).fetchone()
    new_id = int(row[0])
    for u in inc.updates:
        _append(db, new_id, u)
    return new_id


def _append(db: Sql, incident_id: int, u: Update) -> None:
    db.execute("INSERT INTO incident_updates(incident, at, status, message) VALUES (?, ?, ?, ?)",
               (incident_id, u.at, u.status, u.message))


#: incidents whose updates one query reads (`IN (?, ...)`: SQLite allowed 999 parameters
#: before 3.32)
_UPDATES_PER_QUERY = 500


def _rows_to_incidents(db: Sql, rows: list[Any]) -> list[Incident]:
    """The incidents of `rows`, each with its updates in order. The updates are read a
    few hundred incidents at a time: one query per incident cost ~5 us each, 50 ms at a
    restart with 10,000 targets down."""
    ids = [int(row[0]) for row in rows]
    updates: dict[int, list[Update]] = {iid: [] for iid in ids}
    for i in range(0, len(ids), _UPDATES_PER_QUERY):
        chunk = ids[i:i + _UPDATES_PER_QUERY]
        for iid, at, status, message in db.execute(
                "SELECT incident, at, status, message FROM incident_updates WHERE incident "
                f"IN ({','.join('?' * len(chunk))}) ORDER BY incident, id", chunk):
            updates[int(iid)].append(Update(float(at), status, message))
    return [Incident(iid, str(title), source, tuple(json.loads(targets)), float(started),
                     updates[iid], reason)
            for iid, (_, title, source, targets, started, reason) in zip(ids, rows, strict=True)]


def _load(db: Sql, capacity: int) -> list[Incident]:
    """The `capacity` most recent incidents and every open one, oldest first."""
    recent = db.execute(
        "SELECT id, title, source, targets, started_at, reason FROM incidents "
        "ORDER BY id DESC LIMIT ?", (capacity,)).fetchall()
    open_ = db.execute(
        "SELECT i.id, i.title, i.source, i.targets, i.started_at, i.reason FROM incidents i "
        "WHERE (SELECT status FROM incident_updates u WHERE u.incident = i.id "
        "ORDER BY u.id DESC LIMIT 1) != 'resolved' AND i.id < ?",
        (min((r[0] for r in recent), default=0),)).fetchall()
    rows = sorted({r[0]: r for r in [*recent, *open_]}.values())
    return _rows_to_incidents(db, rows)


def _one(db: Sql, incident_id: int) -> Incident | None:
    rows = db.execute("SELECT id, title, source, targets, started_at, reason FROM incidents "
                      "WHERE id = ?", (incident_id,)).fetchall()
    found = _rows_to_incidents(db, rows)
    return found[0] if found else None
