"""Routes events to channels: thresholds, filters, reminders, resolution, delivery.

One `Dispatcher` consumes its own EventBus subscription (bounded: a stuck
dispatcher loses the oldest events, never stalls the daemon) and keeps, per
route, a state machine per condition and a bounded queue served by one
asyncio task. Nothing here runs on the probing path: the daemon only calls
`EventBus.publish`, which is a few `put_nowait`s.

Target thresholds: TARGET_DOWN/TARGET_UP arrive on every change of probe
outcome. A route notifies "down" only after `failure_threshold` consecutive
failures and "up" after `success_threshold` consecutive successes. With a
`streak` source (LiveState's per-target streak) this is exact; without one it
is timed: the N-th failing probe of a target with interval I and timeout T,
first failing at t0, has answered by t0 + (N-1)*I + T, so "down" is
confirmed at that time unless an UP came first.

Delivery: per attempt a timeout; retryable failures (connect errors, 5xx,
408/429, timeouts, SMTP 4xx) retry with exponential back-off and full jitter
in [b/2, b]; the message carries an idempotency key that is identical across
retries, so a receiver that got a request whose answer was lost can drop the
retry. A key delivered once is remembered (bounded) and never sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from slamon.channels.base import Context, DeliveryError, Message, Notifier, Status
from slamon.config.notify import NotifyConfig, Route
from slamon.notify.messages import RESOLVES, build_message
from slamon.sla.maintenance import Interval, covering, slas_by_target
from slamon.util.events import Event, EventBus, EventKind, Subscription
from slamon.util.log import get_logger

if TYPE_CHECKING:
    import aiohttp

    from slamon.config.maintenance import MaintenanceWindow
    from slamon.config.root import Config
    from slamon.sli.live import LiveState

#: (last probe ok, consecutive results with that outcome) of a target, or None if unknown
StreakSource = Callable[[str], "tuple[bool, int] | None"]
Clock = Callable[[], float]

#: kinds tracked as conditions (fire once, remind, resolve)
CONDITIONS = {EventKind.TARGET_DOWN, EventKind.BURN_RATE_FIRING}
#: one-shot kinds and the status their message carries
ONE_SHOT: dict[EventKind, Status] = {
    EventKind.SLA_BREACHED: "firing",
    EventKind.REPORT_FAILED: "firing",
    EventKind.CERT_EXPIRING: "firing",
    EventKind.SLA_MET: "info",
    EventKind.REPORT_PUBLISHED: "info",
    EventKind.INCIDENT_UPDATED: "info",
}
#: kinds that a maintenance window holds back
SILENCEABLE = {EventKind.TARGET_DOWN, EventKind.TARGET_UP,
               EventKind.BURN_RATE_FIRING, EventKind.BURN_RATE_RESOLVED}
#: delivered idempotency keys remembered per route
DELIVERED_MEMORY = 10_000
#: extra wait on top of the timed threshold (scheduling noise)
THRESHOLD_SLACK = 1.0


def condition_of(event: Event) -> str:
    """Event.key(), plus the window pair for burn-rate alerts (one condition per pair)."""
    key = event.key()
    if event.kind in (EventKind.BURN_RATE_FIRING, EventKind.BURN_RATE_RESOLVED):
        key += f":{event.details.get('window', '')}"
    return key


def live_streak(live: Callable[[], LiveState]) -> StreakSource:
    """A StreakSource reading the daemon's LiveState (exact thresholds)."""

    def streak(target_id: str) -> tuple[bool, int] | None:
        state = live()
        state.settle()
        status = state.targets.get(target_id)
        if status is None or status.last is None:
            return None
        return status.last.ok, status.streak

    return streak


@dataclass(slots=True)
class _Cond:
    event: Event
    since: float
    #: "pending" (threshold not reached), "firing" (notified)
    state: str = "pending"
    deadline: float = 0.0
    last_sent: float = 0.0
    reminders: int = 0
    #: a pending resolution (UP seen while firing) and when it is confirmed
    resolving: Event | None = None
    resolve_deadline: float = 0.0
    #: firing, but held by a maintenance window: sent if it still fires after it
    silenced: bool = False


@dataclass(slots=True)
class _RouteRuntime:
    id: str
    route: Route
    notifier: Notifier
    failure_threshold: int
    success_threshold: int
    repeat_interval: float
    send_resolved: bool
    queue: deque[Message] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    conds: dict[str, _Cond] = field(default_factory=dict)
    delivered: OrderedDict[str, None] = field(default_factory=OrderedDict)
    sent: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    in_flight: bool = False
    task: asyncio.Task[None] | None = None


def build_notifiers(cfg: NotifyConfig, session: aiohttp.ClientSession) -> dict[str, Notifier]:
    """One notifier per configured channel (secret files are read here)."""
    from slamon.channels import CHANNELS

    ctx = Context(session, cfg.delivery.timeout)
    return {ch.id: CHANNELS[ch.kind].build(ch.id, ch.section, ctx) for ch in cfg.channels}


class Dispatcher:
    def __init__(
        self,
        cfg: NotifyConfig,
        config: Config | None = None,
        notifiers: Mapping[str, Notifier] | None = None,
        *,
        streak: StreakSource | None = None,
        clock: Clock = time.time,
        rng: Callable[[], float] = random.random,
        tick: float = 0.5,
    ) -> None:
        self.cfg = cfg
        self._notifiers: dict[str, Notifier] = dict(notifiers or {})
        self._own_session: aiohttp.ClientSession | None = None
        self._streak = streak
        self._clock = clock
        self._rng = rng
        self._tick = tick
        self._timing: dict[str, tuple[float, float]] = {}
        self._slo_targets: dict[str, set[str]] = {}
        self._sla_slo: dict[str, str] = {}
        self._maintenance: list[MaintenanceWindow] = []
        self._target_slas: dict[str, set[str]] = {}
        #: maintenance occurrences already logged as silencing (window, start)
        self._silence_logged: set[tuple[int, float]] = set()
        self.silenced = 0
        if config is not None:
            self.update_config(config)
        self.routes: list[_RouteRuntime] = []
        self._sub: Subscription | None = None
        self._bus: EventBus | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.events_seen = 0
        self.log = get_logger()

    # -- set-up -------------------------------------------------------------
    def update_config(self, config: Config) -> None:
        """Target intervals (timed thresholds) and SLO/SLA membership (filters)."""
        self._timing = {t.id: (t.interval, t.timeout) for t in config.targets}
        self._slo_targets = {s.id: set(s.targets) for s in config.slos}
        self._sla_slo = {s.id: s.slo for s in config.slas}
        self._maintenance = list(config.maintenance)
        self._target_slas = slas_by_target(
            (sla.id, self._slo_targets.get(sla.slo, ())) for sla in config.slas)

    def _covering(self, event: Event, now: float) -> tuple[int, Interval] | None:
        """The maintenance occurrence that holds `event`'s notifications now, if any:
        one covering its target, or for a burn rate one of its SLO's targets."""
        if not self._maintenance or event.kind not in SILENCEABLE:
            return None
        targets = ([event.target] if event.target is not None
                   else sorted(self._slo_targets.get(event.slo or "", ())))
        for tid in targets:
            found = covering(self._maintenance, now, tid, self._target_slas.get(tid, ()))
            if found is not None:
                return found
        return None

    def _held(self, rt: _RouteRuntime, cond: _Cond, now: float) -> bool:
        """Whether maintenance holds this condition's notifications on this route now;
        each maintenance occurrence is logged once."""
        if not rt.route.silence_in_maintenance:
            return False
        found = self._covering(cond.event, now)
        if found is None:
            return False
        index, (start, end) = found
        if (index, start) not in self._silence_logged:
            if len(self._silence_logged) >= 10_000:  # bounded: old occurrences are over
                self._silence_logged.clear()
            self._silence_logged.add((index, start))
            window = self._maintenance[index]
            self.log.info("notifications_silenced",
                          maintenance=window.id or f"maintenance[{index}]",
                          start=start, end=end, target=cond.event.target, slo=cond.event.slo)
        return True

    def _build_routes(self) -> None:
        d = self.cfg.defaults
        self.routes = []
        for i, route in enumerate(self.cfg.routes):
            notifier = self._notifiers[route.channel]
            repeat = d.repeat_interval
            if route.repeat_interval is not None:
                repeat = route.repeat_interval
            refresh = getattr(notifier, "refresh", None)
            if isinstance(refresh, float | int) and refresh > 0:
                # Alertmanager resolves alerts that are not re-pushed: refresh them
                repeat = min(repeat, float(refresh)) if repeat > 0 else float(refresh)
            self.routes.append(_RouteRuntime(
                id=self.cfg.route_id(i),
                route=route,
                notifier=notifier,
                failure_threshold=route.failure_threshold or d.failure_threshold,
                success_threshold=route.success_threshold or d.success_threshold,
                repeat_interval=repeat,
                send_resolved=(route.send_resolved if route.send_resolved is not None
                               else d.send_resolved),
            ))

    async def start(self, bus: EventBus | None = None, *, queue: int = 10_000) -> None:
        """Build channels (an HTTP session if none were given), subscribe, start tasks."""
        if not self._notifiers:
            import aiohttp

            self._own_session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.delivery.timeout),
                headers={"User-Agent": "slamon-notifier"},
            )
            self._notifiers = build_notifiers(self.cfg, self._own_session)
        self._build_routes()
        for rt in self.routes:
            rt.task = asyncio.create_task(self._worker(rt), name=f"notify:{rt.id}")
        self._tasks.append(asyncio.create_task(self._ticker(), name="notify:tick"))
        if bus is not None:
            self._bus = bus
            self._sub = bus.subscribe(queue)
            self._tasks.append(asyncio.create_task(self._consume(self._sub), name="notify:bus"))

    async def stop(self, drain: float = 2.0) -> None:
        """Give queued messages up to `drain` seconds, then cancel everything."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        while loop.time() < deadline and any(rt.queue or rt.in_flight for rt in self.routes):
            await asyncio.sleep(0.05)
        if self._bus is not None and self._sub is not None:
            self._bus.unsubscribe(self._sub)
        tasks = self._tasks + [rt.task for rt in self.routes if rt.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for notifier in self._notifiers.values():
            with contextlib.suppress(Exception):
                await notifier.close()
        if self._own_session is not None:
            await self._own_session.close()
            self._own_session = None

    async def _consume(self, sub: Subscription) -> None:
        while True:
            event = await sub.queue.get()
            try:
                self.handle(event)
            except Exception:  # a bad event must not stop notifications
                self.log.exception("notify_event_failed", kind=event.kind.value)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            try:
                self.tick()
            except Exception:
                self.log.exception("notify_tick_failed")

    # -- routing -------------------------------------------------------------
    def matches(self, route: Route, event: Event) -> bool:
        kind = RESOLVES.get(event.kind, event.kind)
        if kind.value not in route.events and event.kind.value not in route.events:
            return False
        if route.targets and event.target not in route.targets:
            return False
        if route.slos:
            slo_ok = event.slo in route.slos
            if not slo_ok and event.sla is not None:
                slo_ok = self._sla_slo.get(event.sla) in route.slos
            if not slo_ok and event.target is not None and event.slo is None:
                slo_ok = any(event.target in self._slo_targets.get(s, ()) for s in route.slos)
            if not slo_ok:
                return False
        if route.slas and event.sla not in route.slas:
            return False
        return all(event.labels.get(k) == v for k, v in route.labels.items())

    def handle(self, event: Event) -> None:
        """Apply one event to every matching route (synchronous, never blocks)."""
        self.events_seen += 1
        now = self._clock()
        for rt in self.routes:
            if not self.matches(rt.route, event):
                continue
            if event.kind in CONDITIONS:
                self._fire(rt, event, now)
            elif event.kind in RESOLVES:
                self._resolve(rt, event, now)
            else:
                status = ONE_SHOT.get(event.kind, "info")
                self._enqueue(rt, build_message(event, rt.id, status, event.at))
        self.tick(now)

    def _threshold_deadline(self, target: str | None, at: float, n: int) -> float:
        interval, timeout = self._timing.get(target or "", (0.0, 0.0))
        return at + (n - 1) * interval + timeout + THRESHOLD_SLACK

    def _fire(self, rt: _RouteRuntime, event: Event, now: float) -> None:
        key = condition_of(event)
        cond = rt.conds.get(key)
        if cond is not None:
            cond.resolving = None  # failed again while recovering: still down
            return
        cond = rt.conds[key] = _Cond(event=event, since=event.at)
        if event.kind == EventKind.TARGET_DOWN and rt.failure_threshold > 1:
            cond.deadline = self._threshold_deadline(event.target, event.at, rt.failure_threshold)
        else:
            self._notify_firing(rt, cond, now)

    def _resolve(self, rt: _RouteRuntime, event: Event, now: float) -> None:
        key = condition_of(event)
        cond = rt.conds.get(key)
        if cond is None:
            return
        if cond.state == "pending":  # recovered before the threshold: never notified
            del rt.conds[key]
            return
        if event.kind == EventKind.TARGET_UP and rt.success_threshold > 1:
            if cond.resolving is None:
                cond.resolving = event
                cond.resolve_deadline = self._threshold_deadline(
                    event.target, event.at, rt.success_threshold)
            return
        self._notify_resolved(rt, key, cond, event)

    def _confirmed(self, target: str | None, want_ok: bool, n: int, deadline: float,
                   now: float) -> bool | None:
        """True: threshold reached; None: the target is gone; False: keep waiting."""
        if self._streak is not None and target is not None:
            s = self._streak(target)
            if s is None:
                return None
            ok, count = s
            return ok == want_ok and count >= n
        return now >= deadline

    def tick(self, now: float | None = None) -> None:
        """Confirm thresholds and send reminders (called by the ticker and per event)."""
        now = self._clock() if now is None else now
        for rt in self.routes:
            for key, cond in list(rt.conds.items()):
                target = cond.event.target
                if cond.state == "pending":
                    done = self._confirmed(target, False, rt.failure_threshold,
                                           cond.deadline, now)
                    if done is None:
                        del rt.conds[key]
                    elif done:
                        self._notify_firing(rt, cond, now)
                    continue
                if cond.resolving is not None:
                    done = self._confirmed(target, True, rt.success_threshold,
                                           cond.resolve_deadline, now)
                    if done is None or done:
                        self._notify_resolved(rt, key, cond, cond.resolving)
                    continue
                if cond.silenced:
                    # still firing when the maintenance ends: tell now
                    if not self._held(rt, cond, now):
                        self._notify_firing(rt, cond, now)
                    continue
                if rt.repeat_interval > 0 and now - cond.last_sent >= rt.repeat_interval:
                    cond.reminders += 1
                    cond.last_sent = now
                    self._enqueue(rt, build_message(cond.event, rt.id, "firing", cond.since,
                                                    reminder=cond.reminders, at=now))

    def _notify_firing(self, rt: _RouteRuntime, cond: _Cond, now: float) -> None:
        cond.state = "firing"
        cond.last_sent = now
        if self._held(rt, cond, now):
            cond.silenced = True
            self.silenced += 1
            return
        cond.silenced = False
        details = dict(cond.event.details)
        if cond.event.kind == EventKind.TARGET_DOWN:
            details.setdefault("failures", rt.failure_threshold)
        event = Event(cond.event.kind, cond.event.at, cond.event.target, cond.event.slo,
                      cond.event.sla, cond.event.summary, cond.event.labels, details)
        cond.event = event
        self._enqueue(rt, build_message(event, rt.id, "firing", cond.since))

    def _notify_resolved(self, rt: _RouteRuntime, key: str, cond: _Cond, event: Event) -> None:
        del rt.conds[key]
        if cond.silenced:  # nobody was told it fired: nothing to resolve
            return
        if rt.send_resolved:
            self._enqueue(rt, build_message(event, rt.id, "resolved", cond.since))

    # -- delivery ------------------------------------------------------------
    def _enqueue(self, rt: _RouteRuntime, message: Message) -> None:
        if message.key in rt.delivered:
            return
        if len(rt.queue) >= self.cfg.delivery.queue_size:
            rt.queue.popleft()
            rt.dropped["queue_full"] = rt.dropped.get("queue_full", 0) + 1
        rt.queue.append(message)
        rt.wake.set()

    def _backoff(self, attempt: int) -> float:
        d = self.cfg.delivery
        delay = min(d.max_backoff, d.backoff * (2**attempt))
        return float(delay / 2 + self._rng() * delay / 2)

    async def _worker(self, rt: _RouteRuntime) -> None:
        while True:
            while not rt.queue:
                rt.wake.clear()
                await rt.wake.wait()
            message = rt.queue.popleft()
            if message.key in rt.delivered:
                continue
            rt.in_flight = True
            try:
                await self._deliver(rt, message)
            finally:
                rt.in_flight = False

    async def _deliver(self, rt: _RouteRuntime, message: Message) -> None:
        d = self.cfg.delivery
        attempt = 0
        while True:
            retryable = True
            try:
                async with asyncio.timeout(d.timeout):
                    await rt.notifier.send(message)
            except DeliveryError as exc:
                reason, retryable = exc.reason, exc.retryable
            except TimeoutError:
                reason = "timeout"
            except Exception as exc:  # a channel bug must not kill the route
                reason = "error"
                self.log.warning("notify_channel_error", route=rt.id, error=type(exc).__name__)
            else:
                rt.sent += 1
                rt.delivered[message.key] = None
                if len(rt.delivered) > DELIVERED_MEMORY:
                    rt.delivered.popitem(last=False)
                return
            rt.failed[reason] = rt.failed.get(reason, 0) + 1
            if not retryable or attempt >= d.retries:
                rt.dropped["gave_up"] = rt.dropped.get("gave_up", 0) + 1
                self.log.warning("notify_gave_up", route=rt.id, channel=rt.notifier.name,
                                 reason=reason, attempts=attempt + 1, kind=message.kind.value)
                return
            rt.retries += 1
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    # -- introspection ----------------------------------------------------------
    def route(self, route_id: str) -> _RouteRuntime:
        for rt in self.routes:
            if rt.id == route_id:
                return rt
        raise KeyError(route_id)

    def firing(self) -> dict[str, list[str]]:
        return {rt.id: [k for k, c in rt.conds.items() if c.state == "firing"]
                for rt in self.routes}

    def metrics(self) -> Iterator[Metric]:
        sent = CounterMetricFamily("slamon_notifications_sent_total",
                                   "Notifications accepted by the receiver",
                                   labels=["route", "channel"])
        failed = CounterMetricFamily("slamon_notifications_failed_total",
                                     "Failed delivery attempts (each retry counts)",
                                     labels=["route", "channel", "reason"])
        dropped = CounterMetricFamily("slamon_notifications_dropped_total",
                                      "Notifications never delivered (queue full, or gave up)",
                                      labels=["route", "reason"])
        retries = CounterMetricFamily("slamon_notifications_retries_total",
                                      "Delivery retries", labels=["route", "channel"])
        queued = GaugeMetricFamily("slamon_notifications_queue_length",
                                   "Notifications waiting per route", labels=["route"])
        firing = GaugeMetricFamily("slamon_notifications_firing",
                                   "Conditions notified and not yet resolved", labels=["route"])
        for rt in self.routes:
            ch = rt.notifier.name
            sent.add_metric([rt.id, ch], rt.sent)
            for reason, n in sorted(rt.failed.items()):
                failed.add_metric([rt.id, ch, reason], n)
            for reason in ("queue_full", "gave_up"):
                dropped.add_metric([rt.id, reason], rt.dropped.get(reason, 0))
            retries.add_metric([rt.id, ch], rt.retries)
            queued.add_metric([rt.id], len(rt.queue) + int(rt.in_flight))
            firing.add_metric([rt.id], sum(c.state == "firing" and not c.silenced
                                           for c in rt.conds.values()))
        bus = CounterMetricFamily("slamon_notify_events_dropped_total",
                                  "Events the notifier lost because its bus queue was full",
                                  value=self._sub.dropped if self._sub is not None else 0)
        silenced = CounterMetricFamily(
            "slamon_notifications_silenced_total",
            "Notifications held because a maintenance window covered the target",
            value=self.silenced)
        yield from (sent, failed, dropped, retries, queued, firing, bus, silenced)

    def stats(self) -> dict[str, Any]:
        return {rt.id: {"sent": rt.sent, "failed": dict(rt.failed), "dropped": dict(rt.dropped),
                        "queued": len(rt.queue)} for rt in self.routes}
