"""The long-running process: wires config -> scheduler -> live state -> server.

uvicorn's split: the config object (slamon.config), the server (slamon.server)
and this supervisor that owns the lifecycle: start, reload, graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric

from slamon.app.sdnotify import SystemdNotifier, status_line, watchdog_loop
from slamon.app.shard import apply_shard
from slamon.config.root import Config
from slamon.config.sla import Sla
from slamon.config.targets import Target
from slamon.metrics.collector import SlamonCollector, make_registry, sla_metrics, state_metrics
from slamon.notify import BurnWatch, CertWatch, Dispatcher, live_streak
from slamon.probers.base import ProbeResult
from slamon.scheduler import SAFETY_MARGIN, Scheduler, phase_offset
from slamon.sla.result import PeriodResult
from slamon.sla.tracker import SlaTracker
from slamon.sli.live import LiveState, TargetStatus
from slamon.store.sqlite import ClosedPeriod, Restored, StateStore, StoreError, StoreWriteError
from slamon.util.events import Event, EventBus, EventKind
from slamon.util.log import get_logger
from slamon.web.server import HttpServer, build_app
from slamon.web.status.incidents import IncidentLog

if TYPE_CHECKING:
    from slamon.oracle.service import OracleService

#: how often composite SLO slices are closed and due SLA periods looked for
ADVANCE_EVERY = 1.0
#: how often evidence leaves past their retention are deleted
PRUNE_EVERY = 3600.0


class StartupError(Exception):
    """A problem that stops the daemon from starting; the message is for the user."""


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        config_path: str | Path | None = None,
        loader: Callable[[str | Path], Config] | None = None,
    ) -> None:
        config = apply_shard(config)  # shard: {index, count}: keep only this instance's share
        self.config = config
        self.config_path = config_path
        self._loader = loader
        self.log = get_logger()
        self.live = LiveState(config, on_transition=self._log_transition)
        self.scheduler: Scheduler | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self.collector = SlamonCollector(lambda: self.live, self._scheduler_stats)
        self.registry = make_registry(self.collector)
        self.server: HttpServer | None = None
        self.reloads_failed = 0
        self.reloads_ok = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self.store: StateStore | None = None
        self.tracker: SlaTracker | None = None
        self.oracle: OracleService | None = None
        self.events = EventBus()
        self.incidents = IncidentLog()
        self.burn_watch = BurnWatch()
        self.cert_watch = CertWatch(
            tuple(config.notify.cert_expiry_days) if config.notify else (21, 14, 7)
        )
        self.dispatcher: Dispatcher | None = None
        self.start_at = 0.0
        self._store_failing = False
        self._close_failing = False
        #: systemd's notify socket (None outside systemd)
        self.notifier = SystemdNotifier.from_env()
        self.collector.extra.append(self._reload_metrics)

    # -- state ------------------------------------------------------------
    async def _open_state(self) -> None:
        """Open the store and resume: windows, SLA periods, downtime as no data."""
        path = self.config.state.resolved_path()
        store = StateStore(path)
        try:
            await store.open()
            restored = await store.load()
        except StoreError as exc:
            await store.close()
            raise StartupError(str(exc)) from None
        self.store = store
        self.collector.extra.append(lambda: state_metrics(store))
        self.start_at = time.time()
        replayed = self._restore_windows(restored)
        self.tracker = SlaTracker(
            self.config, store, self.log, flush_interval=self.config.state.flush_interval,
            on_closed=self._on_period_closed,
        )
        tracker = self.tracker
        self.collector.extra.append(lambda: sla_metrics(tracker, self.config, time.time()))
        if self.config.oracle is not None:
            self._open_oracle(store, tracker)
        await self.tracker.start(restored.sla_progress, self.start_at)
        filled = self.tracker.fill_gaps(restored.progress, self.start_at, self._offset)
        await store.flush()
        self.log.info(
            "state_restored",
            path=str(path),
            snapshots=len(restored.snapshots),
            journal_replayed=replayed,
            no_data_ticks_filled=filled,
        )

    def _open_oracle(self, store: StateStore, tracker: SlaTracker) -> None:
        """Load the signing key now: a bad key must stop start-up with a clear message."""
        from slamon.oracle.keys import KeyLoadError
        from slamon.oracle.service import OracleService

        config_dir = Path(self.config_path).parent if self.config_path is not None else None
        oracle = OracleService(self.config, store, self.log, events=self.events,
                               config_dir=config_dir)
        try:
            oracle.load_key()
        except KeyLoadError as exc:
            raise StartupError(str(exc)) from None
        self.collector.extra.append(oracle.metrics)
        self.oracle = oracle

    async def _on_period_closed(
        self, sla: Sla, result: PeriodResult, record: ClosedPeriod
    ) -> None:
        if result.breached is not None:
            kind = EventKind.SLA_BREACHED if result.breached else EventKind.SLA_MET
            sli = "n/a" if result.sli_ppm is None else f"{result.sli_ppm / 10_000:.4f}%"
            self.events.publish(Event(
                kind, time.time(), sla=sla.id,
                summary=f"SLA {sla.id} period {result.period_id} {result.verdict}: SLI {sli}",
                details={"period": result.period_id, "sli_ppm": result.sli_ppm,
                         "objective_ppm": result.objective_ppm, "start": result.start,
                         "end": result.end},
            ))
        if self.oracle is not None:
            await self.oracle.on_period_closed(sla, result, record)

    def _routes(self, app: web.Application) -> None:
        from slamon.web.api import api_routes

        api_routes(lambda: self.tracker)(app)
        if self.config.status_page.enabled:
            from slamon.web.status import add_routes as status_routes

            status_routes(app, self, self.config.status_page, self.incidents)
        if self.oracle is not None:
            from slamon.oracle.http import add_routes

            assert self.config.oracle is not None
            add_routes(app, self.oracle.outbox, self.config.oracle)

    def _offset(self, target: Target) -> float:
        return phase_offset(target.id, target.interval) if self.config.scheduler.spread else 0.0

    def _restore_windows(self, restored: Restored) -> int:
        for slo_id, state in self.live.slos.items():
            snap = restored.snapshots.get(slo_id)
            if snap is not None and snap[0] == self.live.shape(slo_id):
                try:
                    state.restore(snap[1])
                except ValueError as exc:
                    self.log.warning("snapshot_ignored", slo=slo_id, reason=str(exc))
        replayed = 0
        for target_id, t, ok, duration in restored.journal:
            replayed += self.live.replay(target_id, t, ok, duration)
        return replayed

    def _snapshots(self) -> dict[str, tuple[str, bytes]]:
        return {
            slo_id: (self.live.shape(slo_id), state.to_bytes())
            for slo_id, state in self.live.slos.items()
        }

    async def _flush(self, snapshot: bool = False) -> None:
        if self.store is None:
            return
        try:
            await self.store.flush(self._snapshots if snapshot else None)
        except StoreWriteError as exc:
            if not self._store_failing:
                self.log.error("state_write_failed", reason=str(exc),
                               detail="probing continues; results are kept in memory")
            self._store_failing = True
            return
        if self._store_failing:
            self.log.info("state_write_recovered")
        self._store_failing = False

    async def _flush_loop(self) -> None:
        state = self.config.state
        loop = asyncio.get_running_loop()
        next_snapshot = loop.time() + state.snapshot_interval
        while True:
            await asyncio.sleep(state.flush_interval)
            snap = loop.time() >= next_snapshot
            if snap:
                next_snapshot = loop.time() + state.snapshot_interval
            await self._flush(snapshot=snap)

    async def _prune(self, now: float) -> int:
        """Drop evidence leaves past `state.evidence_retention` (closed periods only)."""
        if self.tracker is None or self.store is None:
            return 0
        horizon = now - self.config.state.evidence_retention
        removed = 0
        for sla_id, rt in self.tracker.slas.items():
            before = int(min(horizon, rt.open_from))
            try:
                removed += await self.store.prune_leaves(sla_id, before)
            except Exception as exc:  # retention must never stop probing
                self.log.warning("prune_failed", sla=sla_id, reason=str(exc))
        if removed:
            self.log.info("evidence_pruned", leaves=removed)
        return removed

    async def _close_periods(self) -> None:
        if self.tracker is None or self._store_failing:
            return
        try:
            await self.tracker.close_due()
        except Exception as exc:  # keep probing whatever happens here; retried next second
            if not self._close_failing:
                self.log.error("period_close_failed", reason=str(exc)[:300])
            self._close_failing = True
        else:
            if self._close_failing:
                self.log.info("period_close_recovered")
            self._close_failing = False

    # -- lifecycle --------------------------------------------------------
    async def start(self) -> None:
        # state first: a broken state file must stop start-up before anything runs
        await self._open_state()
        self.incidents.start(self.events)
        if self.config.notify is not None:
            self.dispatcher = Dispatcher(
                self.config.notify, self.config, streak=live_streak(lambda: self.live)
            )
            await self.dispatcher.start(self.events)
            self.collector.extra.append(self.dispatcher.metrics)
        app = build_app(
            self.registry, self.ready, self.collector, extra_routes=self._routes
        )
        self.server = HttpServer(app, self.config.server.host, self.config.server.port)
        try:
            await self.server.start()
        except OSError as exc:
            self.server = None
            raise StartupError(
                f"cannot listen on {self.config.server.listen}: {exc.strerror or exc}"
            ) from None
        self.scheduler = Scheduler(
            self.config.targets,
            max_concurrency=self.config.scheduler.max_concurrency,
            on_result=self._on_result,
            on_missed=self._on_missed,
            spread=self.config.scheduler.spread,
            start_at=self.start_at,
        )
        if self.oracle is not None:
            await self.oracle.start()
        self._tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
        self._tasks.append(asyncio.create_task(self._advance_loop(), name="advance"))
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="flush"))
        await self.scheduler.wait_scheduled()
        settle_heap()
        self._tasks.append(asyncio.create_task(self._settle_after_first_round(), name="settle"))
        self.ready.set()
        if self.notifier is not None:
            self.notifier.ready(self.status_text())
            self._tasks.append(
                asyncio.create_task(watchdog_loop(self.notifier, self.status_text), name="watchdog")
            )
        self.log.info(
            "started",
            listen=self.config.server.listen,
            port=self.server.bound_port,
            targets=len(self.config.targets),
            slos=len(self.config.slos),
        )

    async def _settle_after_first_round(self) -> None:
        """Settle again once every target has been probed: each probe's prepared
        request and first results are long-lived, and left young they made every
        full collection walk ~80k more objects (docs/benchmarks.md)."""
        targets = self.config.targets
        if targets:
            await asyncio.sleep(max(t.interval + t.timeout for t in targets) + 1.0)
            settle_heap()

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT; SIGHUP reloads the config file."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop, sig)
                installed.append(sig)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._spawn_reload)
            installed.append(signal.SIGHUP)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            await self.shutdown()
            for sig in installed:
                loop.remove_signal_handler(sig)

    def request_stop(self, sig: signal.Signals | None = None) -> None:
        if not self._stop.is_set():
            self.log.info("stopping", signal=sig.name if sig else None)
        self._stop.set()
        if self.notifier is not None:
            self.notifier.stopping()

    def status_text(self) -> str:
        """systemd STATUS= line: `probing 1200 targets, 3 reports queued`."""
        queued = None
        if self.oracle is not None and self.oracle.publisher is not None:
            queued = self.oracle.publisher.metrics().backlog
        return status_line(len(self.config.targets), queued, self.reloads_failed)

    def _reload_metrics(self) -> Iterator[Metric]:
        reloads = CounterMetricFamily(
            "slamon_config_reloads", "Config reloads (SIGHUP) by result", labels=["result"]
        )
        reloads.add_metric(["success"], self.reloads_ok)
        reloads.add_metric(["failure"], self.reloads_failed)
        yield reloads

    async def shutdown(self) -> None:
        """Stop scheduling, let in-flight probes finish (bounded by their timeouts)."""
        if self.scheduler is not None:
            self.scheduler.stop()
            longest = max((t.timeout for t in self.config.targets), default=0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(longest + SAFETY_MARGIN + 1):
                    await self.scheduler.drain()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
            self.dispatcher = None
        await self.incidents.stop()
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self.store is not None:
            await self._flush(snapshot=True)
            await self._close_periods()
            if self.oracle is not None:
                await self.oracle.stop()
                self.oracle = None
            await self.store.close()
            self.store = None
        self.log.info("stopped")

    # -- reload -----------------------------------------------------------
    def _spawn_reload(self) -> None:
        self._tasks.append(asyncio.create_task(self._notified_reload(), name="reload"))

    async def _notified_reload(self) -> bool:
        if self.notifier is not None:
            self.notifier.reloading()
        try:
            return await self.reload()
        finally:
            if self.notifier is not None:
                self.notifier.ready(self.status_text())

    async def reload(self) -> bool:
        """Validate the new config first; on any error keep running the old one."""
        if self.config_path is None or self._loader is None:
            self.log.warning("reload_unavailable", reason="no config file")
            return False
        from slamon.config.loader import ConfigError

        try:
            new = await asyncio.to_thread(self._loader, self.config_path)
        except ConfigError as exc:
            self.reloads_failed += 1
            self.log.error("reload_failed", errors=exc.errors)
            return False
        new = apply_shard(new)
        if new.server != self.config.server:
            self.log.warning("reload_server_unchanged", reason="server.listen needs a restart")
        self.config = new
        self.live.apply_config(new)
        if self.tracker is not None:
            self.tracker.apply_config(new, time.time())
        if self.oracle is not None:
            self.oracle.apply_config(new)
        if self.dispatcher is not None:
            self.dispatcher.update_config(new)
        if self.scheduler is not None:
            self.scheduler.update_targets(new.targets)
        settle_heap()
        self.reloads_ok += 1
        self.log.info("reloaded", targets=len(new.targets), slos=len(new.slos))
        return True

    # -- callbacks --------------------------------------------------------
    def _scheduler_stats(self) -> Any:
        return self.scheduler.stats if self.scheduler is not None else None

    def _on_result(self, target: Target, scheduled: float, result: ProbeResult) -> None:
        try:
            self.live.record(target, scheduled, result)
            if self.tracker is not None:
                self.tracker.record(target, scheduled, result.ok, result.duration)
            if self.store is not None and self.live.has_slos(target.id):
                self.store.note_outcome(target.id, scheduled, result.ok, result.duration)
        except Exception:
            self.log.exception("record_failed", target=target.id)

    def _on_missed(self, target: Target, scheduled: float) -> None:
        try:
            self.live.record_missed(target, scheduled)
            if self.tracker is not None:
                self.tracker.record_missed(target, scheduled)
            if self.store is not None and self.live.has_slos(target.id):
                self.store.note_outcome(target.id, scheduled, None, None)
        except Exception:
            self.log.exception("record_failed", target=target.id)

    def _log_transition(self, status: TargetStatus, result: ProbeResult) -> None:
        target = status.target
        self.events.publish(Event(
            EventKind.TARGET_UP if result.ok else EventKind.TARGET_DOWN,
            status.last_scheduled if status.last_scheduled is not None else time.time(),
            target=target.id,
            labels=target.labels,
            summary=(f"{target.id} is up" if result.ok else
                     f"{target.id} is down: {result.reason.value if result.reason else 'other'}"),
            details={"reason": result.reason.value if result.reason else None,
                     "detail": result.detail, "status_code": result.status_code,
                     "duration": result.duration},
        ))
        if result.ok:
            self.log.info("target_up", target=status.target.id, duration=round(result.duration, 4))
        else:
            self.log.warning(
                "target_down",
                target=status.target.id,
                reason=result.reason.value if result.reason else None,
                detail=result.detail,
            )

    async def _advance_loop(self) -> None:
        next_prune = 0.0
        while True:
            now = time.time()
            self.live.advance(now)
            for event in self.burn_watch.check(self.live, now) + self.cert_watch.check(
                self.live, now
            ):
                self.events.publish(event)
            await self._close_periods()
            if now >= next_prune:
                await self._prune(now)
                next_prune = now + PRUNE_EVERY
            await asyncio.sleep(ADVANCE_EVERY)


def settle_heap() -> None:
    """Collect once, then keep the long-lived objects (config, windows) out of GC.

    At 10,000 targets full collections walking them took 0.3-0.5 s every few
    seconds: loop stalls that delay probes (bench/compare, docs/benchmarks.md).
    """
    gc.collect()
    gc.freeze()
    gc.enable()  # `slamon run` starts with it disabled
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, FULL_GC_AFTER)


#: young (gen 1) collections between full ones, instead of CPython's 10. Probes leave
#: no reference cycles, so full collections found nothing to free, yet at 10,000
#: targets they ran every ~7 s and stalled the loop 45-90 ms (docs/benchmarks.md).
#: CPython's own rule (only once survivors grow by 25 %) still applies on top.
FULL_GC_AFTER = 200


def install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
