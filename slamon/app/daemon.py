"""The long-running process: start, run, reload, shut down.

Only the lifecycle lives here, as in uvicorn's split between config, server and
supervisor: what a Config builds and how the parts connect is
slamon.app.wiring; the event loop, the GC settings and the capture of signals
are slamon.app.runtime.

Signals:

- SIGHUP reloads the config file. One reload runs at a time: SIGHUPs that
  arrive while one runs (or while the daemon starts) are remembered as one
  more reload, run as soon as the current one ends. The file may have changed
  again after the running reload read it, and one more read sees the latest;
  any number of SIGHUPs meanwhile need no more than that one.
- SIGTERM or SIGINT drains: scheduling stops, probes in flight finish or time
  out, the state is written, exit 0. A second one during the drain exits at
  once with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from prometheus_client.core import CounterMetricFamily, Metric

from slamon.app import config_child, runtime
from slamon.app.discovery import DiscoveryManager
from slamon.app.sdnotify import SystemdNotifier, status_line, watchdog_loop
from slamon.app.shard import apply_shard
from slamon.app.wiring import Components, StartupError
from slamon.config.discovery import resolve
from slamon.config.loader import ConfigError, load_config
from slamon.config.root import Config
from slamon.config.targets import Target
from slamon.probers.base import ProbeResult
from slamon.scheduler import SAFETY_MARGIN
from slamon.sla.policy import PolicyDigests
from slamon.sli.live import LiveState
from slamon.store.base import Store
from slamon.util.log import configure_logging, get_logger
from slamon.web.server import HttpServer

__all__ = ["Daemon", "ReloadCounts", "StartupError", "serve"]

#: the extra settle waits this long past the slowest target's first probe
SETTLE_SLACK = 1.0


@dataclass(slots=True)
class ReloadCounts:
    ok: int = 0
    failed: int = 0

    def metrics(self) -> Iterator[Metric]:
        reloads = CounterMetricFamily(
            "slamon_config_reloads", "Config reloads (SIGHUP) by result", labels=["result"]
        )
        reloads.add_metric(["success"], self.ok)
        reloads.add_metric(["failure"], self.failed)
        yield reloads


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        config_path: str | Path | None = None,
        loader: Callable[[str | Path], Config] | None = None,
        on_forced_exit: Callable[[], object] | None = None,
    ) -> None:
        self.log = get_logger()
        #: the config as the file says; the running one adds what discovery found
        self.file_config = config
        self.discovery = DiscoveryManager(self.log, self._discovery_changed)
        self.parts = Components(self._running(config), config_path=config_path)
        self.config_path = config_path
        self._loader = loader
        #: run (synchronously) just before a forced exit: what must not outlive
        #: the process, such as a child in a session of its own
        self._on_forced_exit = on_forced_exit
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.reloads = ReloadCounts()
        self._reload_task: asyncio.Task[None] | None = None
        #: a SIGHUP came while a reload ran (or during start-up): reload once more
        self._reload_again = False
        #: a reload and a discovery change apply one at a time: each builds on the
        #: config the other left
        self._config_lock = asyncio.Lock()
        self._discovery_task: asyncio.Task[None] | None = None
        #: the targets discovered changed while a change was being applied: once more
        self._discovery_again = False
        #: systemd's notify socket (None outside systemd)
        self.notifier = SystemdNotifier.from_env()
        self.parts.collector.extra.append(self.reloads.metrics)
        self.parts.collector.extra.append(self.discovery.metrics)

    # -- views ------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self.parts.config

    @property
    def live(self) -> LiveState:
        return self.parts.live

    @property
    def store(self) -> Store | None:
        return self.parts.store

    @property
    def server(self) -> HttpServer | None:
        return self.parts.server

    # tests/test_store.py feeds a daemon that is not running through these
    async def _open_state(self) -> None:
        await self.parts.open_state()

    def _on_result(self, target: Target, scheduled: float, result: ProbeResult) -> None:
        self.parts.on_result(target, scheduled, result)

    def _on_missed(self, target: Target, scheduled: float) -> None:
        self.parts.on_missed(target, scheduled)

    async def _flush(self, snapshot: bool = False) -> None:
        await self.parts.flush(snapshot=snapshot)

    # -- lifecycle --------------------------------------------------------------
    def _running(self, config: Config) -> Config:
        """The file's config plus the discovered targets, cut to this shard's share."""
        running, problems = running_config(config, self.discovery.discovered())
        self._log_conflicts(problems)
        return running

    def _log_conflicts(self, problems: list[str]) -> None:
        for problem in problems:
            self.log.warning("discovery_conflict", error=problem)

    def _discovery_changed(self) -> None:
        """A source's targets changed: apply like a reload (start-up applies its own)."""
        if not self.ready.is_set() or self._stop.is_set():
            return
        if self._discovery_task is not None:
            self._discovery_again = True
            return
        self._discovery_task = asyncio.get_running_loop().create_task(
            self._apply_discovery(), name="discovery-apply")

    async def _apply_discovery(self) -> None:
        """Apply the discovered targets as a reload applies a file: the SLA runtimes and
        policy digests worked out on a thread first (at 10,000 targets, ~0.5 s that held
        the event loop and delayed every probe due meanwhile)."""
        try:
            while True:
                self._discovery_again = False
                try:
                    async with self._config_lock:
                        await self._discovered()
                except Exception as exc:  # the daemon keeps running whatever this hits
                    self.log.exception("discovery_apply_failed", error=str(exc))
                if not self._discovery_again or self._stop.is_set():
                    return
        finally:
            self._discovery_task = None

    async def _discovered(self) -> None:
        running, problems = await asyncio.to_thread(
            running_config, self.file_config, self.discovery.discovered())
        self._log_conflicts(problems)
        # interned first: an unchanged target is then the running one, which the
        # comparison takes by identity instead of field by field
        new = await asyncio.to_thread(self.parts.intern_targets, running)
        if new == self.parts.config:
            return
        prepared = await self.parts.prepare_config(new)
        if self._stop.is_set():
            return
        self.parts.apply_config(new, prepared)
        self.log.info("discovery_applied", targets=len(new.targets), slos=len(new.slos))

    async def start(self) -> None:
        parts = self.parts
        if self.file_config.discovery:
            # the first read comes before the state: a restored SLO finds its target
            await self.discovery.start(self.file_config.discovery)
            parts.apply_config(self._running(self.file_config))
        # state first: a broken state file must stop start-up before anything runs
        await parts.open_state()
        await parts.start_notifications()
        server = await parts.start_server(self.ready)
        scheduler = parts.build_scheduler()
        if parts.oracle is not None:
            from slamon.oracle.onchain import OracleStartError

            try:
                await parts.oracle.start()
            except OracleStartError as exc:  # the on-chain SLA differs: a message, not a trace
                raise StartupError(str(exc)) from None
        self._spawn(scheduler.run(), "scheduler")
        self._spawn(parts.flush_loop(), "flush")
        await scheduler.wait_scheduled()
        self._settled(runtime.settle_heap())
        targets = parts.config.targets
        if targets:
            first_round = max(t.interval + t.timeout for t in targets) + SETTLE_SLACK
            self._spawn(self._settle_after(first_round), "settle")
        self.ready.set()
        # after ready: its first round evaluates the burn rates of every restored SLO
        # (~0.5 s at 10,000), which need not hold back /readyz
        self._spawn(parts.advance_loop(), "advance")
        if self.notifier is not None:
            self.notifier.ready(self.status_text())
            self._spawn(watchdog_loop(self.notifier, self.status_text), "watchdog")
        self.log.info(
            "started",
            listen=parts.config.server.listen,
            port=server.bound_port,
            targets=len(targets),
            slos=len(parts.config.slos),
        )
        if self._reload_again and not self._stop.is_set():
            self._start_reload()

    def _settled(self, done: runtime.HeapSettled) -> None:
        self.log.info("heap_settled", full=done.full, freed=done.freed,
                      ms=round(done.seconds * 1000, 1))

    async def _settle_after(self, delay: float) -> None:
        self._settled(await runtime.settle_heap_after(delay))

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT; SIGHUP reloads the config file."""
        # the handlers stay for the whole drain: a second stop signal must reach it
        with runtime.capture_signals(self.request_stop, self.request_reload), \
                runtime.loop_first():
            try:
                await self.start()
                await self._stop.wait()
            finally:
                await self.shutdown()

    def request_stop(self, sig: signal.Signals | None = None) -> None:
        """The first stop signal drains; a second one exits at once."""
        if self._stop.is_set():
            if sig is not None:
                self._force_exit(sig)
            return
        self.log.info("stopping", signal=sig.name if sig else None)
        self._stop.set()
        if self.notifier is not None:
            self.notifier.stopping()

    def _force_exit(self, sig: signal.Signals) -> NoReturn:
        code = runtime.forced_exit_code(sig)
        self.log.warning(
            "forced_exit",
            signal=sig.name,
            in_flight=self.parts.in_flight(),
            exit_code=code,
            detail="second stop signal during the drain: probes in flight and results not "
                   "yet written are dropped; their ticks count as no data on the next start",
        )
        if self._on_forced_exit is not None:
            with contextlib.suppress(Exception):
                self._on_forced_exit()
        runtime.force_exit(code)

    def status_text(self) -> str:
        """systemd STATUS= line: `probing 1200 targets, 3 reports queued`."""
        return status_line(
            len(self.parts.config.targets), self.parts.reports_queued(), self.reloads.failed
        )

    async def shutdown(self) -> None:
        """Stop scheduling, let in-flight probes finish (bounded by their timeouts)."""
        await self._cancel_reload()
        if self._discovery_task is not None:
            self._discovery_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery_task
        await self.discovery.stop()
        scheduler = self.parts.scheduler
        if scheduler is not None:
            scheduler.stop()
            longest = max((t.timeout for t in self.parts.config.targets), default=0.0)
            bound = longest + SAFETY_MARGIN + 1
            if scheduler.stats.in_flight:
                self.log.info("draining", in_flight=scheduler.stats.in_flight,
                              within_seconds=bound)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(bound):
                    await scheduler.drain()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.parts.close()
        self.log.info("stopped")

    # -- reload -----------------------------------------------------------------
    def request_reload(self) -> None:
        """SIGHUP: reload now, or once more after the reload (or start-up) under way."""
        if self._stop.is_set():
            self.log.info("reload_ignored", reason="stopping")
            return
        if self._reload_task is not None or not self.ready.is_set():
            self._reload_again = True
            self.log.info(
                "reload_queued",
                reason="a reload is running" if self._reload_task is not None else "starting",
            )
            return
        self._start_reload()

    def _start_reload(self) -> None:
        self._reload_task = asyncio.create_task(self._reload_loop(), name="reload")

    async def _reload_loop(self) -> None:
        try:
            while True:
                self._reload_again = False
                try:
                    await self._notified_reload()
                except Exception as exc:  # the daemon keeps running whatever a reload hits
                    self.reloads.failed += 1
                    self.log.exception("reload_failed", errors=[f"unexpected: {exc}"])
                # no await between the check and the loop's end: a SIGHUP cannot
                # slip in after it and find neither a running reload nor a flag
                if not self._reload_again or self._stop.is_set():
                    return
        finally:
            self._reload_task = None

    async def _cancel_reload(self) -> None:
        task = self._reload_task
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

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
        async with self._config_lock:
            return await self._reload()

    async def _reload(self) -> bool:
        if self.config_path is None or self._loader is None:
            self.log.warning("reload_unavailable", reason="no config file")
            return False
        # a large config is read in a child process (on another core, so probes start on
        # time meanwhile), a small one on a thread; the child runs `load_config`, so
        # another loader (tests) reads on the thread
        apart = (self._loader is load_config
                 and len(self.parts.config.targets) >= config_child.FROM_TARGETS)
        self.log.info("reload_started", path=str(self.config_path),
                      reader="child" if apart else "thread")
        try:
            new, digests = await self._read_config(self.config_path, self._loader, apart)
        except ConfigError as exc:
            self.reloads.failed += 1
            self.log.error("reload_failed", errors=exc.errors)
            return False
        # a canonical schedule per SLA, ~20 ms per 1,000: on the thread too
        if errors := await asyncio.to_thread(self.parts.reload_errors, new):
            self.reloads.failed += 1
            self.log.error("reload_failed", errors=errors)
            return False
        self.file_config = new
        await self.discovery.update(new.discovery)
        running = self._running(new)
        new = await asyncio.to_thread(self.parts.intern_targets, running)
        # the child's digests describe the file's config; they hold for the running one
        # when discovery and sharding left it as it is (interning only swaps targets
        # for equal ones)
        known = (PolicyDigests(new, digests.digests, digests.documents)
                 if digests is not None and running is self.file_config else None)
        prepared = await self.parts.prepare_config(new, known)
        if new.server != self.parts.config.server:
            self.log.warning("reload_server_unchanged",
                             reason="server.listen and server.auth need a restart")
        if new.status_page.listen != self.parts.config.status_page.listen:
            self.log.warning("reload_server_unchanged", reason="status_page.listen needs a restart")
        if new.scheduler != self.parts.config.scheduler:
            # probes already scheduled keep their phases; a restart re-reads the section
            self.log.warning("reload_scheduler_unchanged",
                             reason="the scheduler section needs a restart")
        self.parts.apply_config(new, prepared)
        self._settled(runtime.settle_heap(full=False))
        self.reloads.ok += 1
        self.log.info("reloaded", targets=len(new.targets), slos=len(new.slos))
        return True

    async def _read_config(self, path: str | Path, loader: Callable[[str | Path], Config],
                           apart: bool) -> tuple[Config, PolicyDigests | None]:
        """The reload's new config, read in a child process when `apart` (with its SLAs'
        policy digests and documents); a child that gives no answer (killed, out of
        memory) is logged and the thread reads instead."""
        if apart:
            try:
                digests = await config_child.load_apart(path)
                return digests.config, digests
            except config_child.ChildFailed as exc:
                self.log.warning("reload_reader_failed", reason=str(exc),
                                 fallback="reading on a thread")
        return await runtime.in_daemon_thread(partial(loader, path), "reload"), None


def running_config(config: Config, discovered: Mapping[str, Sequence[Target]]
                   ) -> tuple[Config, list[str]]:
    """The file's config plus the discovered targets, cut to this shard's share (`shard:
    {index, count}`), and what conflicted; pure, for a thread."""
    resolved, problems = resolve(config, discovered)
    return apply_shard(resolved), problems


def serve(
    config: Config,
    config_path: str,
    *,
    before: Callable[[], Awaitable[None]] | None = None,
    after: Callable[[], Awaitable[None]] | None = None,
    on_forced_exit: Callable[[], object] | None = None,
) -> int:
    """`slamon run`: the daemon on the runtime's loop until it stops; the exit code.

    `before`/`after` run on the same loop around it (`slamon demo` starts its
    targets there). Raises StartupError, whose message is for the user.
    """
    configure_logging(config.logging.level, config.logging.format)

    async def main() -> int:
        if before is not None:
            await before()
        daemon = Daemon(
            config, config_path=config_path, loader=load_config, on_forced_exit=on_forced_exit
        )
        try:
            await daemon.run()
        finally:
            if after is not None:
                await after()
        return 0

    return runtime.run(main)
