"""Prometheus exposition, built from live state at scrape time.

A custom collector rather than thousands of gauge children updated per probe:
probing stays cheap and the scrape pays only for what it reads. Names follow
blackbox_exporter where they overlap, with a `target` label since one slamon
serves many targets.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Generic, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from slamon import __version__
from slamon.config.root import Config
from slamon.config.targets import Target, target_label_names
from slamon.metrics.probe_kinds import KindMetrics
from slamon.metrics.probe_kinds import endpoint as kind_endpoint
from slamon.metrics.text import Exposition, escape, value_text
from slamon.probers.base import PHASES, FailureReason, TlsFacts
from slamon.scheduler import SchedulerStats
from slamon.sla.maintenance import covering, slas_by_target
from slamon.sla.periods import period_bounds, period_index
from slamon.sla.tracker import SlaRuntime, SlaTracker
from slamon.sli.live import LiveState, TargetStatus
from slamon.sli.slo import SloState
from slamon.store.base import Store
from slamon.util.durations import format_duration
from slamon.util.redact import redact_url
from slamon.util.units import ppm_to_ratio

Clock = Callable[[], float]
V = TypeVar("V")
#: one piece of the exposition: writes its families into the exposition given
Piece = Callable[[Exposition], None]


def slo_windows(state: SloState) -> list[float]:
    """The SLO's own window plus every alert window, longest first, no repeats."""
    return state.slo.windows[::-1]


class _Kept(Generic[V]):
    """Text derived from a config object (a target's or an SLO's escaped labels),
    kept while the config holds that same object.

    Ids, labels, windows and endpoints change only with the config, and a reload
    replaces the objects it changes: escaping them once, not for every sample of
    every scrape, is a good part of what makes a scrape cheap.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[object, V]] = {}

    def get(self, key: str, source: object) -> V | None:
        """What `put` kept for `key`, if it was built from this very `source`."""
        held = self._by_id.get(key)
        return held[1] if held is not None and held[0] is source else None

    def put(self, key: str, source: object, value: V) -> V:
        self._by_id[key] = (source, value)
        return value

    def forget(self, current: Collection[str]) -> None:
        """Drop what a reload removed (once per scrape; cheap when nothing was)."""
        if len(self._by_id) > len(current):
            for key in [k for k in self._by_id if k not in current]:
                del self._by_id[key]

    def clear(self) -> None:
        self._by_id.clear()


#: an SLO's '{slo="id"', its [(length, ',window="1h"}')], its [(part, '{slo="id",target="t"')]
#: and its whole slamon_slo_objective_ratio line
SloText = tuple[str, list[tuple[float, str]], list[tuple[str, str]], str]


def _slo_text(slo_id: str, state: SloState) -> SloText:
    own = f'{{slo="{escape(slo_id)}"'
    windows = [(length, f',window="{format_duration(length)}"}}')
               for length in slo_windows(state)]
    parts = [(part, f'{own},target="{escape(part)}"') for part in state.parts
             ] if state.composite else []
    objective = f"slamon_slo_objective_ratio{own}}} {value_text(state.slo.objective)}\n"
    return own, windows, parts, objective


def _target_text(tid: str, target: Target, extra: tuple[str, ...]) -> tuple[str, str]:
    """A target's '{target="id"' and its whole slamon_target_info line."""
    own = f'{{target="{escape(tid)}"'
    if target.http is not None:
        endpoint = redact_url(target.http.url)
    elif target.tcp is not None:
        endpoint = f"{target.tcp.host}:{target.tcp.port}"
    else:
        endpoint = kind_endpoint(target)
    # the config's `labels` of every target, as blackbox users get theirs from
    # relabelling: a target without one of the names has it empty (= absent)
    pairs = [("kind", target.kind), ("endpoint", endpoint),
             *((k, target.labels.get(k, "")) for k in extra)]
    inner = "".join(f',{k}="{escape(v)}"' for k, v in pairs)
    return own, f"slamon_target_info{own}{inner}}} 1\n"


def _tls_text(tls: TlsFacts) -> tuple[str, str]:
    """The label text after `target` of probe_ssl_last_chain_info and of
    probe_tls_version_info (blackbox_exporter's labels)."""
    info = (f',fingerprint_sha256="{tls.fingerprint_sha256}",issuer="{escape(tls.issuer)}"'
            f',serialnumber="{escape(tls.serialnumber)}",subject="{escape(tls.subject)}"'
            f',subjectalternative="{escape(tls.subjectalternative)}"}} 1\n')
    return info, f',version="{escape(tls.version)}"}} 1\n'


class SlamonCollector(Collector):
    def __init__(
        self,
        live: Callable[[], LiveState],
        scheduler_stats: Callable[[], SchedulerStats | None],
        clock: Clock = time.time,
        window_ratios: Callable[[], bool] = lambda: False,
        window_series: Callable[[], bool] = lambda: False,
    ) -> None:
        self._live = live
        self._window_ratios = window_ratios
        self._window_series = window_series
        self._stats = scheduler_stats
        self._clock = clock
        self.extra: list[Callable[[], Iterable[Metric]]] = []
        #: producers of large families in pieces of at most the given number of items
        self.sliced: list[Callable[[int], Iterable[Piece]]] = []
        self._slo_labels: _Kept[SloText] = _Kept()
        self._target_labels: _Kept[tuple[str, str]] = _Kept()
        #: per target, the TLS label text of its last result's (shared) TlsFacts
        self._tls_labels: _Kept[tuple[str, str]] = _Kept()
        self._label_names: tuple[str, ...] = ()
        #: the live state's config generation at the last look at the label names
        self._generation = 0

    def collect(self) -> Iterator[Metric]:
        """For prometheus_client's registry API: the same text, parsed back.

        GET /metrics does not come here (see `exposition.render_chunks`); this
        serves `generate_latest` users and keeps one source for every value.
        """
        out = Exposition()
        for piece in self.slices():
            piece(out)
        yield from text_string_to_metric_families(out.text())

    def slices(self, chunk: int = 0) -> Iterator[Piece]:
        """The exposition as pieces of at most `chunk` targets or SLOs (0: one piece each).

        An async renderer yields to the event loop between pieces: at 10,000
        targets a whole exposition is a good part of a second of CPU, and probes
        due meanwhile must not wait that long. The same family may come in
        several pieces.
        """
        live = self._live()
        live.settle()
        now = self._clock()
        targets = list(live.targets.items())
        slos = list(live.slos.items())
        step_t = chunk or max(1, len(targets))
        step_s = chunk or max(1, len(slos))
        if live.generation != self._generation:
            # only a reload (a new config generation) can change the label names (a walk
            # of every target's labels, ~40 ms at 10,000 on a slow host, in one piece) or
            # remove targets
            self._generation = live.generation
            # one set of label names for every piece of slamon_target_info
            names = target_label_names(st.target for _, st in targets)
            if names != self._label_names:
                self._target_labels.clear()  # every info line has the union of label names
                self._label_names = names
            self._target_labels.forget(live.targets.keys())
            self._tls_labels.forget(live.targets.keys())
        names = self._label_names
        for i in range(0, len(targets), step_t):
            part = targets[i : i + step_t]
            yield lambda out, part=part: self._probe_text(out, part, names)  # type: ignore[misc]
        self._slo_labels.forget(live.slos.keys())
        for i in range(0, len(slos), step_s):
            slo_part = slos[i : i + step_s]
            yield lambda out, slo_part=slo_part: self._slo_text(  # type: ignore[misc]
                out, slo_part, now)
        # the counters' bytes, summed in pieces too (~5 us a target on a slow host)
        held: list[int] = []
        counters = live.counters()
        for i in range(0, len(counters), step_t):
            yield lambda out, part=counters[i : i + step_t]: held.append(  # type: ignore[misc]
                sum(c.nbytes() for c in part))
        yield lambda out: out.add_all(self._scheduler_metrics(live, sum(held)))
        for extra in list(self.extra):
            yield lambda out, extra=extra: out.add_all(extra())  # type: ignore[misc]
        for producer in list(self.sliced):
            yield from producer(chunk)
        yield lambda out: out.add_all(self._build_info())

    @staticmethod
    def _build_info() -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "slamon_build_info", "slamon build information", labels=["version", "python"]
        )
        info.add_metric([__version__, platform.python_version()], 1)
        yield info

    def _probe_text(
        self, out: Exposition, targets: Iterable[tuple[str, TargetStatus]],
        extra: tuple[str, ...] = (),
    ) -> None:
        """The per-target families, written as text (see metrics/text.py)."""
        success: list[str] = []
        duration: list[str] = []
        status_code: list[str] = []
        phases: list[str] = []
        tcp_phases: list[str] = []
        redirects: list[str] = []
        body_bytes: list[str] = []
        version: list[str] = []
        cert: list[str] = []
        chain_expiry: list[str] = []
        chain_info: list[str] = []
        tls_version: list[str] = []
        failed: list[str] = []
        last_time: list[str] = []
        probes: list[str] = []
        reasons: list[str] = []
        info: list[str] = []
        by_kind = KindMetrics()  # dns, icmp, grpc: metrics/probe_kinds.py
        kept = self._target_labels
        for tid, st in targets:
            target = st.target
            text = kept.get(tid, target) or kept.put(
                tid, target, _target_text(tid, target, extra))
            own, info_line = text
            info.append(info_line)
            probes.append(f'slamon_probes_total{own},result="success"}} {st.successes}\n'
                          f'slamon_probes_total{own},result="failure"}} {st.failures}\n'
                          f'slamon_probes_total{own},result="missed"}} {st.missed}\n')
            for reason, n in st.failures_by_reason.items():
                reasons.append(f'slamon_probe_failures_total{own},reason="{reason.value}"}} {n}\n')
            res = st.last
            if res is None:
                continue
            success.append(f"probe_success{own}}} {1 if res.ok else 0}\n")
            # a duration is a finite float (a monotonic clock's difference), whose repr is
            # value_text's answer: ~60,000 of them a scrape at 10,000 targets, and the call
            # and its checks were ~150 ns each on top of the repr's ~450
            duration.append(f"probe_duration_seconds{own}}} {res.duration!r}\n")
            if st.last_scheduled is not None:
                last_time.append(f"slamon_probe_scheduled_timestamp_seconds{own}}}"
                                 f" {value_text(st.last_scheduled)}\n")
            if not res.ok:
                why = (res.reason or FailureReason.OTHER).value
                failed.append(f'probe_failed_reason{own},reason="{why}"}} 1\n')
            if res.cert_expiry is not None:
                expiry = value_text(res.cert_expiry)
                cert.append(f"probe_ssl_earliest_cert_expiry{own}}} {expiry}\n")
            tls = res.tls
            if tls is not None:
                info_text, version_text = self._tls_labels.get(tid, tls) or \
                    self._tls_labels.put(tid, tls, _tls_text(tls))
                chain_info.append(f"probe_ssl_last_chain_info{own}{info_text}")
                tls_version.append(f"probe_tls_version_info{own}{version_text}")
                if tls.last_chain_expiry is not None:
                    chain_expiry.append(f"probe_ssl_last_chain_expiry_timestamp_seconds{own}}}"
                                        f" {value_text(tls.last_chain_expiry)}\n")
            kind = target.kind
            if kind != "http" and kind != "tcp":
                by_kind.add(tid, kind, res)
                continue
            http = kind == "http"
            fam, name = (phases, "probe_http_duration_seconds") if http else (
                tcp_phases, "probe_tcp_duration_seconds")
            got = res.phases
            for phase in PHASES:
                value = got.get(phase)
                if value is not None:
                    fam.append(f'{name}{own},phase="{phase}"}} {value!r}\n')
            if http:
                if res.status_code is not None:
                    status_code.append(f"probe_http_status_code{own}}} {res.status_code}\n")
                redirects.append(f"probe_http_redirects{own}}} {res.redirects}\n")
                body_bytes.append(f"probe_http_uncompressed_body_length{own}}} {res.body_bytes}\n")
                spec = target.http
                # only where the version is asked about: ~45 bytes per target otherwise
                if res.http_version and spec is not None and (
                        spec.http2 or spec.valid_http_versions):
                    version.append(f"probe_http_version{own}}} {res.http_version}\n")
        family = out.family
        family("probe_success", "Whether the last probe succeeded", "gauge", success)
        family("probe_duration_seconds", "Duration of the last probe", "gauge", duration)
        family("probe_http_status_code", "HTTP status code of the last probe", "gauge",
               status_code)
        family("probe_http_duration_seconds", "Duration of each phase of the last HTTP probe",
               "gauge", phases)
        family("probe_tcp_duration_seconds", "Duration of each phase of the last TCP probe",
               "gauge", tcp_phases)
        family("probe_http_redirects", "Redirects followed by the last probe", "gauge",
               redirects)
        family("probe_http_uncompressed_body_length", "Body bytes read by the last probe",
               "gauge", body_bytes)
        family("probe_http_version", "HTTP version of the last probe's response (targets "
               "with http2 or valid_http_versions)", "gauge", version)
        out.add_all(by_kind.families())
        family("probe_ssl_earliest_cert_expiry",
               "Earliest expiry of the certificates in the verified chain as unix time",
               "gauge", cert)
        family("probe_ssl_last_chain_expiry_timestamp_seconds",
               "Earliest expiry of the certificates in the verified chain as unix time "
               "(absent when not verified)", "gauge", chain_expiry)
        family("probe_ssl_last_chain_info", "The leaf certificate of the last TLS handshake",
               "gauge", chain_info)
        family("probe_tls_version_info", "TLS version of the last TLS handshake", "gauge",
               tls_version)
        family("probe_failed_reason",
               "1 for the reason the last probe failed (absent when it succeeded)", "gauge",
               failed)
        family("slamon_probe_scheduled_timestamp_seconds",
               "Scheduled time of the last completed probe", "gauge", last_time)
        family("slamon_probes_total", "Probe ticks by outcome", "counter", probes)
        family("slamon_probe_failures_total", "Failed probes by reason", "counter", reasons)
        family("slamon_target_info", "Target configuration and labels (join on target)",
               "gauge", info)

    def _slo_text(
        self, out: Exposition, slos: Iterable[tuple[str, SloState]], now: float
    ) -> None:
        """The SLO families, written as text from the windows (see metrics/text.py)."""
        sli: list[str] = []
        part_sli: list[str] = []
        good: list[str] = []
        valid: list[str] = []
        good_total: list[str] = []
        valid_total: list[str] = []
        objective: list[str] = []
        budget: list[str] = []
        burn: list[str] = []
        labels = self._slo_labels
        ratios = self._window_ratios()
        series = self._window_series()
        for slo_id, state in slos:
            own, windows, parts, objective_line = labels.get(slo_id, state.slo) or labels.put(
                slo_id, state.slo, _slo_text(slo_id, state))
            slo = state.slo
            objective.append(objective_line)
            allowed = 1 - slo.objective
            remaining = state.error_budget_remaining(now)
            if remaining is not None:
                budget.append(
                    f"slamon_error_budget_remaining_ratio{own}}} {value_text(remaining)}\n")
            if not series:
                good_total.append(f"slamon_sli_good_total{own}}} {state.good_total}\n")
                valid_total.append(f"slamon_sli_valid_total{own}}} {state.valid_total}\n")
            # the window counts are only queried for a family that shows them
            for length, win in windows if series or ratios or parts else ():
                g, v = state.counts(now, length)
                if series:
                    good.append(f"slamon_sli_good_events{own}{win} {g}\n")
                    valid.append(f"slamon_sli_valid_events{own}{win} {v}\n")
                if v and ratios:
                    ratio = g / v
                    sli.append(f"slamon_sli_ratio{own}{win} {value_text(ratio)}\n")
                    burn.append(f"slamon_burn_rate{own}{win} {value_text((1 - ratio) / allowed)}\n")
                for part, part_labels in parts:
                    value = state.sli(now, length, part)
                    if value is not None:
                        part_sli.append(
                            f"slamon_sli_part_ratio{part_labels}{win} {value_text(value)}\n")
        out.family("slamon_sli_ratio", "SLI (good/valid) over a window", "gauge", sli)
        out.family("slamon_sli_part_ratio", "SLI of one part of a composite SLO", "gauge",
                   part_sli)
        out.family("slamon_sli_good_events", "Good events in a window", "gauge", good)
        out.family("slamon_sli_valid_events", "Valid events in a window", "gauge", valid)
        out.family("slamon_sli_good_total", "Good events counted since slamon started",
                   "counter", good_total)
        out.family("slamon_sli_valid_total", "Valid events counted since slamon started",
                   "counter", valid_total)
        out.family("slamon_slo_objective_ratio", "Objective of the SLO", "gauge", objective)
        out.family(
            "slamon_error_budget_remaining_ratio",
            "Share of the error budget left over the SLO window (negative when overspent)",
            "gauge", budget)
        out.family(
            "slamon_burn_rate",
            "Error budget burn rate over a window (1 = spending exactly the budget)",
            "gauge", burn)

    def _scheduler_metrics(self, live: LiveState, window_bytes: int) -> Iterator[Metric]:
        yield GaugeMetricFamily("slamon_targets", "Targets being probed", value=len(live.targets))
        stats = self._stats()
        if stats is None:
            return
        lag = HistogramMetricFamily(
            "slamon_scheduler_lag_seconds",
            "Delay between a probe's scheduled time and its start",
        )
        lag.add_metric([], stats.lag.cumulative(), sum_value=stats.lag.total)
        yield lag
        yield GaugeMetricFamily(
            "slamon_scheduler_lag_max_seconds", "Largest scheduling lag seen since start",
            value=stats.lag.max,
        )
        yield CounterMetricFamily(
            "slamon_scheduler_missed",
            "Ticks slamon could not run in time (counted as no data)",
            value=stats.missed,
        )
        yield CounterMetricFamily(
            "slamon_scheduler_stalled_probes",
            "Failed probes counted as no data because slamon's event loop froze during them",
            value=stats.stalled,
        )
        yield CounterMetricFamily(
            "slamon_scheduler_probes_started", "Probes started", value=stats.started
        )
        yield GaugeMetricFamily(
            "slamon_scheduler_in_flight", "Probes in flight", value=stats.in_flight
        )
        yield GaugeMetricFamily(
            "slamon_sli_window_bytes", "Memory held by SLI window counters",
            value=window_bytes,
        )


def state_metrics(store: Store) -> Iterator[Metric]:
    """Health of the durable state: a read-only or full disk shows here at once."""
    health = store.health
    yield GaugeMetricFamily(
        "slamon_state_healthy", "1 if the last write to the state file succeeded",
        value=1.0 if health.healthy else 0.0,
    )
    yield CounterMetricFamily(
        "slamon_state_write_errors", "Failed writes to the state file (data kept in memory)",
        value=health.write_errors,
    )
    yield GaugeMetricFamily(
        "slamon_state_last_flush_seconds", "Duration of the last successful flush",
        value=health.last_flush_seconds,
    )
    yield GaugeMetricFamily(
        "slamon_state_pending_events", "Outcomes waiting to be written to the state file",
        value=len(store.batch.journal) + len(store.batch.leaves),
    )
    yield GaugeMetricFamily(
        "slamon_state_file_bytes",
        "Size of the state file and its WAL (postgres: slamon's tables, read each minute)",
        value=store.size_bytes(),
    )
    yield CounterMetricFamily(
        "slamon_state_journal_dropped",
        "Window journal events dropped while the disk refused writes",
        value=health.journal_dropped,
    )
    yield CounterMetricFamily(
        "slamon_state_rows_not_owned",
        "Outcomes not written because another instance owns their target (shared state)",
        value=health.not_owned,
    )


#: (name, help, type) of the per-SLA families, in exposition order
_SLA_FAMILIES = (
    ("slamon_sla_last_period_sli_ratio", "SLI of the last closed period", "gauge"),
    ("slamon_sla_last_period_breached", "1 if the last closed period breached its objective",
     "gauge"),
    ("slamon_sla_last_closed_period", "Id of the last closed period", "gauge"),
    ("slamon_sla_current_period", "Id of the period now accumulating", "gauge"),
    ("slamon_sla_current_period_end_timestamp_seconds",
     "When the current period ends (it closes after its grace delay)", "gauge"),
    ("slamon_sla_objective_ratio", "Objective of the SLA", "gauge"),
)
_MAINT_TARGET = ("slamon_maintenance_active", "1 while a maintenance window covers the target")
_MAINT_SLO = ("slamon_slo_maintenance_active",
              "1 while a maintenance window covers one of the SLO's targets (burn alerts hold off)")


def sla_pieces(tracker: SlaTracker, config: Config, now: float, chunk: int = 0
               ) -> Iterator[Piece]:
    """The SLA and maintenance families as text, `chunk` SLAs, targets or SLOs a piece
    (0: one piece each): with an SLA per target they hold ~80,000 samples at 10,000
    targets, which as one piece held the event loop for ~30 ms."""
    yield lambda out: _sla_totals(out, tracker)
    for slas in _batches(list(tracker.slas.items()), chunk):
        yield lambda out, slas=slas: _sla_text(out, tracker, slas, now)  # type: ignore[misc]
    covered: set[str] = set()
    if config.maintenance:
        # a window scoped to an SLA covers the targets of that SLA's SLO
        slos = {s.id: s for s in config.slos}
        by_target = slas_by_target(
            (rt.sla.id, slos[rt.sla.slo].targets if rt.sla.slo in slos else ())
            for rt in tracker.slas.values())
        covered = {t.id for t in config.targets if covering(
            config.maintenance, now, t.id, by_target.get(t.id, ())) is not None}
    for ids in _batches([t.id for t in config.targets], chunk):
        yield lambda out, ids=ids: out.family(  # type: ignore[misc]
            *_MAINT_TARGET, "gauge",
            [f'{_MAINT_TARGET[0]}{{target="{escape(t)}"}} {1.0 if t in covered else 0.0}\n'
             for t in ids])
    for slos_part in _batches(list(config.slos), chunk):
        yield lambda out, part=slos_part: out.family(  # type: ignore[misc]
            *_MAINT_SLO, "gauge",
            [f'{_MAINT_SLO[0]}{{slo="{escape(s.id)}"}} '
             f"{1.0 if covered.intersection(s.targets) else 0.0}\n" for s in part])


def _sla_totals(out: Exposition, tracker: SlaTracker) -> None:
    out.family(
        "slamon_sla_periods_closed_total", "Closed SLA periods by verdict", "counter",
        [f'slamon_sla_periods_closed_total{{sla="{escape(sla_id)}",verdict="{escape(v)}"}} '
         f"{value_text(n)}\n" for (sla_id, v), n in sorted(tracker.closed_total.items())])
    out.family(
        "slamon_sla_held_probes",
        "Edited or removed target definitions still probed for the open SLA periods "
        "whose policy names them", "gauge",
        [f"slamon_sla_held_probes {value_text(tracker.held_count)}\n"])


def _batches(items: list[V], chunk: int) -> Iterator[list[V]]:
    """`items` in lists of at most `chunk` (0: all in one); one empty list for none, so
    that every family is exposed (its HELP and TYPE) even without samples."""
    step = chunk or max(1, len(items))
    for i in range(0, max(1, len(items)), step):
        yield items[i : i + step]


def _sla_text(out: Exposition, tracker: SlaTracker, slas: Iterable[tuple[str, SlaRuntime]],
              now: float) -> None:
    lines: tuple[list[str], ...] = ([], [], [], [], [], [])
    sli, breached, last_id, current, ends, objective = lines
    last = tracker.last_result
    for sla_id, rt in slas:
        own = f'{{sla="{escape(sla_id)}"}} '
        result = last.get(sla_id)
        if result is not None:
            if result.sli_ppm is not None:
                sli.append(f"{own}{value_text(ppm_to_ratio(result.sli_ppm))}\n")
            if result.breached is not None:
                breached.append(f"{own}{1.0 if result.breached else 0.0}\n")
            last_id.append(f"{own}{value_text(result.period_id)}\n")
        n = period_index(rt.sla.period, now)
        current.append(f"{own}{value_text(n)}\n")
        ends.append(f"{own}{value_text(period_bounds(rt.sla.period, n)[1])}\n")
        # the current period's: an edit reaches the periods after the one it was made in
        judged = rt.policy_of(n)
        objective.append(f"{own}{value_text(ppm_to_ratio(judged.objective_ppm))}\n")
    for (name, doc, mtype), body in zip(_SLA_FAMILIES, lines, strict=True):
        out.family(name, doc, mtype, [name + line for line in body])


class ListedRegistry(CollectorRegistry):
    """A registry that can tell which collectors it holds, in registration order.

    The sliced /metrics renderer draws our collector piece by piece and every
    other one (process metrics) in one go, so it must list them, and
    prometheus_client has no public way to: this keeps our own list, fed by the
    public `register`/`unregister` that every collector goes through.
    """

    def __init__(self) -> None:
        super().__init__(auto_describe=False)
        self._listed: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self._listed.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self._listed.remove(collector)

    @property
    def collectors(self) -> tuple[Collector, ...]:
        """The collectors `collect()` draws from, in the order it does."""
        return tuple(self._listed)


def make_registry(collector: SlamonCollector) -> ListedRegistry:
    registry = ListedRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry
