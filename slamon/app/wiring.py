"""What one Config builds, and how the parts are connected.

`Components` owns every part (live state, metrics, state store, SLA tracker,
oracle, notification dispatcher, HTTP server, scheduler), builds them in the
order start-up needs, routes a probe's outcome to each of them, applies a new
config to each, and closes them. When to do which is the daemon's business
(slamon.app.daemon): nothing here knows about signals, readiness or reloads.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from slamon.app import digests_ahead
from slamon.app.events import period_event, target_event
from slamon.app.runtime import collect_young
from slamon.app.upkeep import ADVANCE_EVERY, PRUNE_EVERY, PeriodCloser, StateWriter, prune_evidence
from slamon.config.root import Config
from slamon.config.targets import Target
from slamon.metrics.collector import SlamonCollector, make_registry, sla_pieces, state_metrics
from slamon.notify import BurnWatch, CertWatch, Dispatcher, live_streak
from slamon.probers.base import ProbeResult
from slamon.scheduler import Scheduler, SchedulerStats, resolve_slot, target_phase
from slamon.sla.policy import PolicyDigests
from slamon.sla.result import PeriodResult
from slamon.sla.tracker import Policy, PreparedBuild, SlaTracker, schedule_changes
from slamon.sli.live import LiveState, TargetStatus
from slamon.store.base import ClosedPeriod, Restored, Store, StoreError, StoreWriteError
from slamon.store.sqlite import StateStore
from slamon.util.events import EventBus
from slamon.util.log import get_logger
from slamon.util.pace import BUDGET, Pacer
from slamon.util.schema import split_listen
from slamon.web.server import HttpServer, build_app
from slamon.web.status.incidents import IncidentLog

if TYPE_CHECKING:
    from slamon.oracle.service import OracleService


def make_store(config: Config) -> Store:
    """The state backend the config names, not yet opened (StoreError: unusable)."""
    state = config.state
    if state.backend == "sqlite":
        return StateStore(state.resolved_path())
    try:
        from slamon.store.postgres import PostgresStore
    except ModuleNotFoundError:
        raise StoreError("state.backend postgres needs psycopg: pip install "
                         "'slamon[postgres]'") from None
    from slamon.util.fsutil import read_secret

    try:
        dsn = read_secret(state.dsn, state.dsn_file)
    except OSError as exc:
        raise StoreError(f"state.dsn_file {state.dsn_file}: cannot read it "
                         f"({exc.strerror or exc})") from None
    if not dsn:
        raise StoreError("state.dsn is empty")
    return PostgresStore(dsn, state.instance_name(config.shard))


class StartupError(Exception):
    """A problem that stops the daemon from starting; the message is for the user."""


#: how a snapshot is cut into turns of the event loop (each SLO state or target's
#: events takes ~8-15 us to serialise; tests pass one that yields after each)
SNAPSHOT_PACE = BUDGET

#: how long a probe's outcome waits, at most, to be counted together with those that
#: arrive meanwhile (see `Components.queue_result`)
RECORD_EVERY = 1.0
#: how many outcomes are counted in one go, at most (and their transitions announced):
#: ~15-30 us each, so a batch holds the event loop 1-2 ms (at 10,000 targets, a
#: second's outcomes held it ~20 ms, and batches of 256 made twice as many probes start
#: over 10 ms late)
RECORD_BATCH = 64

#: an outcome waiting to be counted: the counting method and its arguments
_Queued = tuple[Any, tuple[Any, ...]]

class Components:
    """Every part one Config builds. The cheap, in-memory parts exist from the
    start; the store, server and scheduler once their `open_*`/`start_*` ran."""

    def __init__(self, config: Config, *, config_path: str | Path | None = None) -> None:
        self.config = config
        # the SLAs' policy digests are worked out on the other core from here on: the
        # parts below take ~60 ms at 10,000 targets, which the child then has too
        self._ahead = digests_ahead.start(config)
        self._ahead_for = config
        if self._ahead is not None:  # parts never opened must not leave it behind
            # the child's pid and pipe only: a reference to the config would keep it alive
            weakref.finalize(self, self._ahead.child.cancel)
        #: relative paths in the config (the oracle's keystore) are from here
        self.config_dir = Path(config_path).parent if config_path is not None else None
        self.log = get_logger()
        self.events = EventBus()
        self.incidents = IncidentLog()
        #: outcomes from the scheduler not yet counted, in arrival order (before the live
        #: state, whose readers count them)
        self._queued: list[_Queued] = []
        #: transitions not announced yet, in arrival order (see `_on_transition`)
        self._transitions: list[tuple[Target, float, ProbeResult, bool]] = []
        self._record_timer: asyncio.TimerHandle | None = None
        self.live = LiveState(config, on_transition=self._on_transition, pending=self._settle)
        self.burn_watch = BurnWatch()
        self.cert_watch = CertWatch(
            tuple(config.notify.cert_expiry_days) if config.notify else (21, 14, 7)
        )
        self.collector = SlamonCollector(
            lambda: self.live, self._scheduler_stats,
            window_ratios=lambda: self.config.metrics.window_ratios,
            window_series=lambda: self.config.metrics.window_series)
        self.registry = make_registry(self.collector)
        self.store: Store | None = None
        self.writer: StateWriter | None = None
        self.tracker: SlaTracker | None = None
        self.closer: PeriodCloser | None = None
        self.oracle: OracleService | None = None
        self.dispatcher: Dispatcher | None = None
        self.server: HttpServer | None = None
        #: the status page's own listener (status_page.listen), when set
        self.public_server: HttpServer | None = None
        self.scheduler: Scheduler | None = None
        #: wall time from which ticks run; the store fills the ticks before it as no data
        self.start_at = 0.0
        self._configure_beats(config)

    def _configure_beats(self, config: Config) -> None:
        """Tell the heartbeat registry the tokens of the heartbeat targets."""
        from slamon.probers.heartbeat import BEATS
        from slamon.util.fsutil import read_secret

        tokens: list[tuple[str, str]] = []
        for target in config.targets:
            spec = target.heartbeat
            if spec is None:
                continue
            try:
                token = read_secret(spec.token, spec.token_file)
            except OSError as exc:
                # its ticks fail (no beat can arrive): visible on /metrics and in alerts
                self.log.error("heartbeat_token_unreadable", target=target.id,
                               file=spec.token_file, error=exc.strerror or str(exc))
                continue
            if token:
                tokens.append((target.id, token))
        BEATS.configure(tokens)

    # -- state ------------------------------------------------------------------
    async def open_state(self) -> None:
        """Open the store and resume: windows, SLA periods, downtime as no data."""
        ahead, self._ahead = self._ahead, None
        if self._ahead_for is not self.config:  # replaced since (discovery's first read)
            if ahead is not None:
                ahead.cancel()
            ahead = digests_ahead.start(self.config)
        try:
            await self._open_state(ahead)
        finally:
            if ahead is not None:
                ahead.cancel()

    async def _open_state(self, ahead: digests_ahead.DigestsAhead | None) -> None:
        try:
            store = make_store(self.config)
        except StoreError as exc:
            raise StartupError(str(exc)) from None
        try:
            await store.open()
            # a shared database: take the targets over before reading where they stand,
            # so that a previous owner still running can add nothing after that point
            store.own((t.id for t in self.config.targets), (s.id for s in self.config.slos))
            await store.flush()
            restored = await store.load()
            errors = schedule_changes(self.config.slas, restored.sla_schedules)
        except (StoreError, StoreWriteError) as exc:
            await store.close()
            raise StartupError(str(exc)) from None
        if errors:
            await store.close()
            raise StartupError("\n".join(errors))
        # the file's integrity check reads all of it (~0.2 s at 40 MB): on the store's
        # thread while the windows are restored here
        verified = store.verify()
        self.start_at = time.time()
        replayed = self._restore_windows(restored)
        try:
            await verified
        except StoreError as exc:
            await store.close()
            raise StartupError(str(exc)) from None
        self.store = store
        await self.incidents.load(store)
        self.writer = StateWriter(store, self._snapshots, self.log)
        self.collector.extra.append(lambda: state_metrics(store))
        tracker = SlaTracker(
            self.config, store, self.log, flush_interval=self.config.state.flush_interval,
            on_closed=self._on_period_closed,
        )
        self.tracker = tracker
        self.closer = PeriodCloser(tracker, self.writer, self.log)
        self.collector.sliced.append(
            lambda chunk: sla_pieces(tracker, self.config, time.time(), chunk))
        if self.config.oracle is not None:
            self._open_oracle(store, tracker)
        await tracker.start(restored.sla_progress, self.start_at, restored.sla_schedules,
                            restored.sla_policies, await self._digests(ahead, restored))
        # the writer's first flush stores the filled ticks: waiting for them here held
        # /readyz ~0.15 s at 10,000 SLAs, and a stop before that flush loses nothing,
        # since they are filled from the same stored progress at the next start
        filled = tracker.fill_gaps(restored.progress, self.start_at, self.offset)
        self.log.info(
            "state_restored",
            backend=store.backend,
            path=store.where(),
            snapshots=len(restored.snapshots),
            journal_replayed=replayed,
            no_data_ticks_filled=filled,
        )

    @staticmethod
    async def _digests(ahead: digests_ahead.DigestsAhead | None,
                       restored: Restored) -> PolicyDigests | None:
        """The child's digests, when they spare work: on a first start every SLA's
        document is built to be stored, and its digest with it (the child is stopped)."""
        if ahead is None or not restored.sla_policies:
            return None
        return await ahead.take()

    def onchain_note(self, sla_id: str) -> dict[str, Any] | None:
        """The on-chain SLA as the oracle read it, for the API and the status page."""
        return None if self.oracle is None else self.oracle.sla_note(sla_id)

    def _open_oracle(self, store: Store, tracker: SlaTracker) -> None:
        """Load the signing key now: a bad key must stop start-up with a clear message."""
        from slamon.oracle.keys import KeyLoadError
        from slamon.oracle.service import OracleService

        oracle = OracleService(self.config, store, self.log, events=self.events,
                               config_dir=self.config_dir)
        try:
            oracle.load_key()
        except KeyLoadError as exc:
            raise StartupError(str(exc)) from None
        self.collector.extra.append(oracle.metrics)
        oracle.policies = tracker.known_policies
        self.oracle = oracle

    def _restore_windows(self, restored: Restored) -> int:
        for key, reason in self.live.restore(restored.snapshots):
            self.log.warning("snapshot_ignored", key=key, reason=reason)
        replayed = 0
        for target_id, t, ok, duration in restored.journal:
            replayed += self.live.replay(target_id, t, ok, duration)
        return replayed

    async def _snapshots(self) -> Mapping[str, tuple[str, bytes]]:
        """Every target's events and SLO's state as of this call's start (the
        journal's cut), serialised in turns of the event loop of SNAPSHOT_PACE
        seconds."""
        live = self.live
        live.hold()  # before any await: the windows are those of the cut
        try:
            parked = dict(live.parked)
            running: dict[str, tuple[str, bytes]] = {}
            pacer = Pacer(SNAPSHOT_PACE)
            for key, shape, serialise in live.snapshot_sources():
                running[key] = (shape, serialise())
                if pacer.due():
                    await pacer.rest()
        finally:
            live.release()
        return {**parked, **running}

    async def flush(self, snapshot: bool = False) -> None:
        if self.writer is not None:
            await self.writer.flush(snapshot=snapshot)

    async def close_periods(self) -> None:
        self.record_queued()
        if self.closer is not None:
            await self.closer.close_due()
            self._hand_held()

    def _hand_held(self) -> None:
        """Give the scheduler the held definitions, when they changed (`held.py`)."""
        if (self.tracker is not None and self.scheduler is not None
                and self.tracker.take_held_changed()):
            self.scheduler.update_held(self.tracker.held_targets())

    async def prune(self, now: float) -> int:
        if self.store is None or self.tracker is None:
            return 0
        return await prune_evidence(
            self.store, self.tracker, self.config.state.evidence_retention, now, self.log
        )

    # -- services ---------------------------------------------------------------
    async def start_notifications(self) -> None:
        """The incident log (status page) and, when configured, the dispatcher."""
        self.incidents.start(self.events)
        if self.config.notify is not None:
            self.dispatcher = Dispatcher(
                self.config.notify, self.config, streak=live_streak(lambda: self.live)
            )
            await self.dispatcher.start(self.events)
            self.collector.extra.append(self.dispatcher.metrics)

    async def start_server(self, ready: asyncio.Event) -> HttpServer:
        try:
            app = build_app(self.registry, ready, self.collector, extra_routes=self._routes,
                            gzip=lambda: self.config.metrics.gzip)
        except OSError as exc:
            raise StartupError(f"cannot read a credential file: {exc.strerror or exc} "
                               f"({exc.filename})") from None
        server = await self._listen(app, self.config.server.listen, "server.listen")
        page = self.config.status_page
        if page.enabled and page.listen is not None:
            public = web.Application()
            self._status_routes(public)
            try:
                self.public_server = await self._listen(public, page.listen, "status_page.listen")
            except StartupError:
                await server.stop()
                raise
        self.server = server
        return server

    @staticmethod
    async def _listen(app: web.Application, listen: str, setting: str) -> HttpServer:
        host, port = split_listen(listen)
        server = HttpServer(app, host, port)
        try:
            await server.start()
        except OSError as exc:
            raise StartupError(
                f"{setting}: cannot listen on {listen}: {exc.strerror or exc}"
            ) from None
        return server

    def _status_routes(self, app: web.Application) -> None:
        from slamon.web.status import add_routes as status_routes

        try:
            status_routes(app, self, self.config.status_page, self.incidents)
        except OSError as exc:
            raise StartupError(f"status_page.basic_auth: cannot read the password file: "
                               f"{exc.strerror or exc}") from None

    def _routes(self, app: web.Application) -> None:
        from slamon.web.api import api_routes

        page = self.config.status_page
        page_here = page.enabled and page.listen is None
        if self.config.server.auth is not None:
            from slamon.web.api import PREFIX
            from slamon.web.auth import api_auth_middleware

            def is_open(path: str) -> bool:
                if path.startswith(f"{PREFIX}/push/"):
                    return True  # the token in the path is the credential
                # the status page keeps its own (optional) basic_auth: it is public
                return page_here and (path == page.path or path.startswith(page.path + "/")
                                      or path == f"{PREFIX}/status")

            app.middlewares.append(api_auth_middleware(self.config.server.auth, is_open))
        api_routes(lambda: self.tracker, onchain=self.onchain_note)(app)
        from slamon.web.incidents import incident_routes
        from slamon.web.push import push_routes

        push_routes(app)

        incident_routes(self.incidents, self.config.server.auth is not None,
                        lambda: [t.id for t in self.config.targets])(app)
        if page_here:
            self._status_routes(app)
        if self.oracle is not None:
            from slamon.oracle.http import add_routes

            assert self.config.oracle is not None
            add_routes(app, self.oracle.outbox, self.config.oracle)

    def build_scheduler(self) -> Scheduler:
        self.scheduler = Scheduler(
            self.config.targets,
            max_concurrency=self.config.scheduler.max_concurrency,
            on_result=self.queue_result,
            on_missed=self.queue_missed,
            spread=self.config.scheduler.spread,
            slot=self.slot,
            start_at=self.start_at,
            on_held=self.queue_held,
        )
        if self.tracker is not None:
            self.scheduler.update_held(self.tracker.held_targets())
        return self.scheduler

    @functools.cached_property
    def slot(self) -> float:
        """The grid of phases, fixed at the first use for the process's life: the
        scheduler's and the gap filler's must agree."""
        return resolve_slot(self.config.scheduler.slot, self.config.targets)

    def offset(self, target: Target) -> float:
        return target_phase(target, self.config.scheduler.spread, self.slot)

    def reports_queued(self) -> int | None:
        """Signed reports not yet on-chain, or None without a publisher."""
        if self.oracle is None or self.oracle.publisher is None:
            return None
        backlog: int = self.oracle.publisher.metrics().backlog
        return backlog

    def in_flight(self) -> int:
        return self.scheduler.stats.in_flight if self.scheduler is not None else 0

    # -- periodic work ----------------------------------------------------------
    async def advance_loop(self) -> None:
        """Every second: collect the young objects, close composite SLO slices, publish
        burn-rate and certificate events, close due SLA periods; every hour, prune old
        evidence."""
        next_prune = 0.0
        while True:
            collect_young()
            self.record_queued()
            now = time.time()
            self.live.advance(now)
            for event in (await self.burn_watch.check_in_pieces(self.live, now)
                          + self.cert_watch.check(self.live, now)):
                self.events.publish(event)
            await self.close_periods()
            if now >= next_prune:
                await self.prune(now)
                next_prune = now + PRUNE_EVERY
            await asyncio.sleep(ADVANCE_EVERY)

    async def flush_loop(self) -> None:
        if self.writer is not None:
            state = self.config.state
            await self.writer.run(state.flush_interval, state.snapshot_interval)

    # -- a probe's outcome, to every part that keeps it -------------------------
    # What the scheduler reports is counted in batches, all of it: the target's last
    # result, counters and up/down state, its events and windows, SLA leaves and journal
    # row, then a transition's event and log line. Counted one at a time, as each probe
    # ended, that code and what it shares ran from a cold CPU cache every time, on a loop
    # that mostly waits for sockets (one TargetEvents.add took ~40 us of CPU in the daemon
    # against ~6 us in a row, docs/benchmarks.md). A batch is counted in the order the
    # outcomes came, within RECORD_EVERY or once RECORD_BATCH wait, and always before
    # whatever reads the live state: /metrics, the status page and the notify streak
    # (`LiveState.settle`), the advance and burn check, a period's close, a config's
    # hand-over, the last write. So no reader sees a probe's status late.
    def on_result(self, target: Target, scheduled: float, result: ProbeResult) -> None:
        """A probe's outcome, all of it at once (after whatever was queued before it)."""
        self._queued.append((self._take_result, (target, scheduled, result)))
        self.record_queued()

    def on_missed(self, target: Target, scheduled: float) -> None:
        """A tick slamon could not run (no data), all of it at once."""
        self._queued.append((self._take_missed, (target, scheduled)))
        self.record_queued()

    def on_held(self, key: str, target: Target, scheduled: float,
                result: ProbeResult | None) -> None:
        """A held definition's outcome: for the SLA periods that hold it, nothing else
        (the SLOs, metrics and notifications follow the config's definition)."""
        try:
            if self.tracker is not None:
                if result is None:
                    self.tracker.record_held(key, target, scheduled, None)
                else:
                    self.tracker.record_held(key, target, scheduled, result.ok,
                                             result.duration)
        except Exception:
            self.log.exception("record_failed", target=target.id, probe=key)

    def queue_result(self, target: Target, scheduled: float, result: ProbeResult) -> None:
        """The scheduler's `on_result`: all of it with the batch."""
        self._queue((self._take_result, (target, scheduled, result)))

    def queue_missed(self, target: Target, scheduled: float) -> None:
        self._queue((self._take_missed, (target, scheduled)))

    def queue_held(self, key: str, target: Target, scheduled: float,
                   result: ProbeResult | None) -> None:
        self._queue((self.on_held, (key, target, scheduled, result)))

    def _queue(self, outcome: _Queued) -> None:
        self._queued.append(outcome)
        if len(self._queued) >= RECORD_BATCH:
            self.record_queued()
        elif self._record_timer is None:
            self._record_timer = asyncio.get_running_loop().call_later(
                RECORD_EVERY, self.record_queued)

    def record_queued(self) -> None:
        """Count every outcome queued so far, in the order they came, then announce
        the transitions among them."""
        if self._record_timer is not None:
            self._record_timer.cancel()
            self._record_timer = None
        queued, self._queued = self._queued, []
        for count, args in queued:
            count(*args)
        # after the counts, in a row: each takes the same code path (the event, the log
        # line), which then runs from a warm cache
        transitions, self._transitions = self._transitions, []
        if transitions:
            # one logger for the batch: each call through the lazy proxy binds anew
            log = self.log.bind()
            for transition in transitions:
                self._announce(log, *transition)

    def _settle(self) -> None:
        """What a reader of the live state calls first (`LiveState.settle`): the status
        and windows with every outcome so far (transitions are found only while a batch
        is counted, and announced before it ends)."""
        if self._queued:
            self.record_queued()

    def _take_result(self, target: Target, scheduled: float, result: ProbeResult) -> None:
        self._note_result(target, scheduled, result)
        self._count_result(target, scheduled, result)

    def _take_missed(self, target: Target, scheduled: float) -> None:
        self._note_missed(target)
        self._count_missed(target, scheduled)

    def _note_result(self, target: Target, scheduled: float, result: ProbeResult) -> None:
        try:
            self.live.record_status(target, scheduled, result)
        except Exception:
            self.log.exception("record_failed", target=target.id)

    def _note_missed(self, target: Target) -> None:
        try:
            self.live.record_missed_status(target)
        except Exception:
            self.log.exception("record_failed", target=target.id)

    def _count_result(self, target: Target, scheduled: float, result: ProbeResult) -> None:
        try:
            self.live.record_windows(target.id, scheduled, result.ok, result.duration)
            if self.tracker is not None:
                self.tracker.record(target, scheduled, result.ok, result.duration)
            if self.store is not None:  # every target's events are kept
                self.store.note_outcome(target.id, scheduled, result.ok, result.duration)
        except Exception:
            self.log.exception("record_failed", target=target.id)

    def _count_missed(self, target: Target, scheduled: float) -> None:
        try:
            self.live.record_windows(target.id, scheduled, None, None)
            if self.tracker is not None:
                self.tracker.record_missed(target, scheduled)
            if self.store is not None:
                self.store.note_outcome(target.id, scheduled, None, None)
        except Exception:
            self.log.exception("record_failed", target=target.id)

    def _on_transition(self, status: TargetStatus, result: ProbeResult) -> None:
        # announced once the batch it came in is counted: one at a time, from a cold
        # cache, an event and its log line took ~130 us of CPU, a quarter of a probe's
        # bookkeeping where targets flap; notifications, which the event starts, wait a
        # second at most for it
        first = status.successes + status.failures == 1
        scheduled = status.last_scheduled if status.last_scheduled is not None else time.time()
        self._transitions.append((status.target, scheduled, result, first))

    def _announce(self, log: Any, target: Target, scheduled: float, result: ProbeResult,
                  first: bool) -> None:
        """A target's up/down transition: its event and its line in `log`."""
        try:
            self.events.publish(target_event(target, scheduled, result))
            if result.ok:
                # a target's first result (after a start, or an edit of the target) being
                # up is no news: at debug, or every restart of a large fleet logs a line
                # per target
                (log.debug if first else log.info)(
                    "target_up", target=target.id, duration=round(result.duration, 4))
            else:
                log.warning(
                    "target_down",
                    target=target.id,
                    reason=result.reason.value if result.reason else None,
                    detail=result.detail,
                )
        except Exception:
            log.exception("announce_failed", target=target.id)

    async def _on_period_closed(
        self, policy: Policy, result: PeriodResult, record: ClosedPeriod
    ) -> None:
        event = period_event(policy.sla.id, result)
        if event is not None:
            self.events.publish(event)
        if self.oracle is not None:
            await self.oracle.on_period_closed(policy, result, record)

    def _scheduler_stats(self) -> SchedulerStats | None:
        return self.scheduler.stats if self.scheduler is not None else None

    # -- reload and stop --------------------------------------------------------
    def reload_errors(self, new: Config) -> list[str]:
        """What makes `new` unusable for the running state, though valid on its own."""
        return [] if self.tracker is None else self.tracker.schedule_errors(new)

    def intern_targets(self, new: Config) -> Config:
        """`new` with each target equal to a running one replaced by that one (pure: for a
        thread). The live state and the scheduler then tell an unchanged target by
        identity: comparing 10,000 target models field by field held the loop ~0.1 s."""
        running = {t.id: t for t in self.config.targets}
        targets = [t if (old := running.get(t.id)) is None or old != t else old
                   for t in new.targets]
        if all(a is b for a, b in zip(targets, new.targets, strict=True)):
            return new
        return new.model_copy(update={"targets": targets})

    async def prepare_config(self, new: Config,
                             digests: PolicyDigests | None = None) -> PreparedBuild | None:
        """What `apply_config(new)` would otherwise work out in the event loop, worked out
        on a thread first: the SLA tracker's policy digests and runtimes (~0.5 s at 10,000
        SLAs, which a reload held the loop for, delaying every probe due meanwhile)."""
        if self.tracker is None or not new.slas:
            return None
        return await self.tracker.prepare(new, digests)

    def apply_config(self, new: Config, prepared: PreparedBuild | None = None) -> None:
        """Hand a validated config to every part; each keeps what did not change.
        `prepared`: `prepare_config(new)`'s answer, if the caller has it."""
        self.record_queued()  # under the definitions they were probed with
        self.config = new
        self._configure_beats(new)
        self.live.apply_config(new)
        if self.tracker is not None:
            self.tracker.apply_config(new, time.time(), prepared)
        if self.oracle is not None:
            self.oracle.apply_config(new)
        if self.dispatcher is not None:
            self.dispatcher.update_config(new)
        if self.scheduler is not None:
            self.scheduler.update_targets(new.targets)
            self._hand_held()
        if self.store is not None:
            self.store.own((t.id for t in new.targets), (s.id for s in new.slos))

    async def close(self) -> None:
        """Stop the services, then write the state a last time and close it.

        The scheduler must have drained first: its last results are in that write.
        """
        self.record_queued()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
            self.dispatcher = None
        await self.incidents.stop()
        for server in (self.server, self.public_server):
            if server is not None:
                await server.stop()
        self.server = self.public_server = None
        if self.store is not None:
            await self.flush(snapshot=True)
            await self.close_periods()
            if self.oracle is not None:
                await self.oracle.stop()
                self.oracle = None
            await self.store.close()
            self.store = None
