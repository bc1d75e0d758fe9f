"""The sliced /metrics renderer says exactly what prometheus_client would."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from slamon.config.root import Config
from slamon.metrics.collector import ListedRegistry, SlamonCollector, make_registry
from slamon.metrics.exposition import render
from slamon.probers.base import FailureReason, ProbeResult
from slamon.scheduler import SchedulerStats
from slamon.sli.live import LiveState
from slamon.util.durations import format_duration
from tests.promtext import parse_metrics, value

NOW = 1_800_000_000.0
T = TypeVar("T")


def target_dicts() -> list[dict[str, Any]]:
    return [
        {"id": f"t{i}", "kind": "http", "interval": "10s", "timeout": "2s",
         "labels": {"team": "a\"b\\c"},
         "http": {"url": f"http://user:pw@127.0.0.1:{8000 + i}/x?token=s3cret",
                  # the version is exposed only where a target asks about it
                  **({"http2": True} if i % 5 == 1 else {})}}
        for i in range(23)
    ]


def populated() -> tuple[LiveState, SchedulerStats]:
    targets = target_dicts()
    slos = [{"id": f"s{i}", "targets": [f"t{i}", f"t{i + 1}"] if i % 3 == 0 else [f"t{i}"],
             "objective": 0.99, "window": "1d"} for i in range(20)]
    config = Config.model_validate({"targets": targets, "slos": slos})
    live = LiveState(config)
    for k in range(30):
        for i, target in enumerate(config.targets):
            ok = (k + i) % 7 != 0
            result = ProbeResult(
                ok=ok, duration=0.01 * (i + 1), status_code=200 if ok else 503,
                reason=None if ok else FailureReason.STATUS, phases={"connect": 0.001},
                http_version="2.0" if i % 2 else "1.1",
            )
            live.record(target, NOW - 300 + 10 * k, result)
    stats = SchedulerStats()
    for lag in (0.001, 0.02, 0.3):
        stats.lag.observe(lag)
    return live, stats


@pytest.mark.parametrize("series", [False, True], ids=["counters", "window-series"])
def test_sliced_rendering_equals_prometheus_client(series: bool) -> None:
    live, stats = populated()
    collector = SlamonCollector(lambda: live, lambda: stats, clock=lambda: NOW,
                                window_series=lambda: series)
    registry = make_registry(collector)
    reference = parse_metrics(generate_latest(registry).decode())
    for chunk in (1, 7, 100):
        sliced = parse_metrics(asyncio.run(render(registry, collector, chunk)).decode())
        process = {k for k in reference if k[0].startswith("process_")}
        assert {k: v for k, v in sliced.items() if k not in process} == {
            k: v for k, v in reference.items() if k not in process
        }
        assert len(reference) > (500 if series else 400)


async def loop_turns(work: Awaitable[T]) -> tuple[int, T]:
    """What `work` gives, and how many turns another task got on the loop meanwhile."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    got = await work
    done = True
    await task
    return ticks, got


def test_render_yields_to_the_loop_between_slices() -> None:
    live, stats = populated()
    collector = SlamonCollector(lambda: live, lambda: stats, clock=lambda: NOW)
    registry = make_registry(collector)
    ticks, _text = asyncio.run(loop_turns(render(registry, collector, chunk=5)))
    # 23 targets and 20 SLOs in slices of 5: the loop ran other work between them
    assert ticks >= 9


def test_window_bytes_are_summed_in_pieces() -> None:
    """The counters' bytes are summed a chunk at a time, and the sum is every target's
    events and every SLO's own windows, whatever the chunk."""
    live, stats = populated()
    collector = SlamonCollector(lambda: live, lambda: stats, clock=lambda: NOW)
    registry = make_registry(collector)
    whole = live.window_bytes()
    assert whole > 0
    for chunk in (1, 7, 100):
        samples = parse_metrics(asyncio.run(render(registry, collector, chunk)).decode())
        assert value(samples, "slamon_sli_window_bytes") == whole


class _Fixed:
    """A second collector with a stable output, so whole texts can be compared."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("other_thing", "Not slamon's", value=3.0)
        counter = CounterMetricFamily("other_events", "Also not slamon's", labels=["kind"])
        counter.add_metric(["a"], 2.0)
        yield counter


def test_other_collectors_come_last_and_whole() -> None:
    live, stats = populated()
    collector = SlamonCollector(lambda: live, lambda: stats, clock=lambda: NOW)
    registry = ListedRegistry()
    registry.register(collector)
    registry.register(_Fixed())
    alone = ListedRegistry()
    alone.register(_Fixed())
    texts = {asyncio.run(render(registry, collector, chunk)) for chunk in (1, 7, 100)}
    # the slice size never shows in the text
    assert len(texts) == 1
    text = texts.pop()
    assert text.endswith(generate_latest(alone))
    assert parse_metrics(text.decode()) == parse_metrics(generate_latest(registry).decode())


def test_listed_registry_lists_what_collect_draws_from() -> None:
    registry = ListedRegistry()
    first, second = _Fixed(), _Fixed()
    registry.register(first)
    registry.register(second)
    assert registry.collectors == (first, second)
    registry.unregister(first)
    assert list(registry.collectors) == [second]
    assert [m.name for m in registry.collect()] == ["other_thing", "other_events"]


def test_slo_families_equal_a_recomputation_from_the_windows() -> None:
    """The SLO families are written as text: every sample against SloState's own answers."""
    live, stats = populated()
    collector = SlamonCollector(lambda: live, lambda: stats, clock=lambda: NOW,
                                window_ratios=lambda: True, window_series=lambda: True)
    samples = parse_metrics(asyncio.run(render(make_registry(collector), collector, 7)).decode())
    want: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for slo_id, state in live.slos.items():
        want[("slamon_slo_objective_ratio", frozenset({("slo", slo_id)}))] = state.slo.objective
        remaining = state.error_budget_remaining(NOW)
        assert remaining is not None
        want[("slamon_error_budget_remaining_ratio", frozenset({("slo", slo_id)}))] = remaining
        lengths = {state.slo.window} | {w for aw in state.slo.alert_windows
                                        for w in (aw.long, aw.short)}
        for length in lengths:
            labels = frozenset({("slo", slo_id), ("window", format_duration(length))})
            good, valid = state.counts(NOW, length)
            want[("slamon_sli_good_events", labels)] = good
            want[("slamon_sli_valid_events", labels)] = valid
            if valid:
                want[("slamon_sli_ratio", labels)] = good / valid
                want[("slamon_burn_rate", labels)] = (1 - good / valid) / (
                    1 - state.slo.objective)
            for part in state.parts if state.composite else ():
                ratio = state.sli(NOW, length, part)
                if ratio is not None:
                    want[("slamon_sli_part_ratio", labels | {("target", part)})] = ratio
    families = {name for name, _ in want}
    got = {k: v for k, v in samples.items() if k[0] in families}
    assert got == want
    assert any(v < 1 for (name, _), v in got.items() if name == "slamon_sli_ratio")
    assert any(name == "slamon_sli_part_ratio" for name, _ in got)


def test_slo_label_text_follows_a_reload() -> None:
    live, stats = populated()
    collector = SlamonCollector(lambda: live, lambda: stats, clock=lambda: NOW,
                                window_series=lambda: True)
    registry = make_registry(collector)
    before = parse_metrics(asyncio.run(render(registry, collector)).decode())
    assert value(before, "slamon_slo_objective_ratio", slo="s1") == 0.99
    targets = target_dicts()
    targets[1]["http"]["url"] = "http://127.0.0.1:9999/moved"
    targets[2]["labels"] = {"team": "shop"}
    targets[4]["labels"] = {"team": "shop", "tier": "front"}  # a label name new to all
    edited = Config.model_validate({
        "targets": targets,
        "slos": [{"id": "s1", "targets": ["t1"], "objective": 0.95, "window": "1d",
                  "alert_windows": [{"long": "2h", "short": "10m", "burn_rate": 5}]}],
    })
    live.apply_config(edited)
    after = parse_metrics(asyncio.run(render(registry, collector)).decode())
    assert value(after, "slamon_slo_objective_ratio", slo="s1") == 0.95
    assert value(after, "slamon_slo_objective_ratio", slo="s2") is None
    windows = {dict(k[1])["window"] for k in after if k[0] == "slamon_sli_valid_events"}
    assert windows == {"1d", "2h", "10m"}
    info = {dict(k[1])["target"]: dict(k[1]) for k in after if k[0] == "slamon_target_info"}
    assert info["t1"]["endpoint"] == "http://127.0.0.1:9999/moved"
    assert info["t2"]["team"] == "shop" and info["t3"]["team"] == 'a"b\\c'
    assert info["t4"]["tier"] == "front" and info["t1"].get("tier", "") == ""


def test_windows_are_left_to_prometheus_by_default() -> None:
    """By default two counters per SLO, from which the generated rules sum every window;
    they count every event the windows hold (all 30 rounds are inside the SLO window)."""
    live, stats = populated()
    lean = SlamonCollector(lambda: live, lambda: stats, clock=lambda: NOW)
    full = SlamonCollector(lambda: live, lambda: stats, clock=lambda: NOW,
                           window_ratios=lambda: True, window_series=lambda: True)
    lean_text = asyncio.run(render(make_registry(lean), lean))
    full_text = asyncio.run(render(make_registry(full), full))
    samples = parse_metrics(lean_text.decode())
    names = {k[0] for k in samples}
    assert not names & {"slamon_sli_ratio", "slamon_burn_rate", "slamon_sli_good_events",
                        "slamon_sli_valid_events"}
    assert {"slamon_error_budget_remaining_ratio", "slamon_sli_part_ratio"} <= names
    for slo_id, state in live.slos.items():
        good, valid = state.counts(NOW, state.slo.window)
        assert valid > 0
        assert value(samples, "slamon_sli_good_total", slo=slo_id) == good
        assert value(samples, "slamon_sli_valid_total", slo=slo_id) == valid
    assert len(lean_text) < 0.6 * len(full_text)


def test_probe_families_equal_the_live_state() -> None:
    """The per-target families are written as text: every sample against TargetStatus."""
    live, stats = populated()
    collector = SlamonCollector(lambda: live, lambda: stats, clock=lambda: NOW)
    samples = parse_metrics(asyncio.run(render(make_registry(collector), collector, 4)).decode())
    want: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

    def put(name: str, v: float, **labels: str) -> None:
        want[(name, frozenset(labels.items()))] = v

    for tid, st in live.targets.items():
        res = st.last
        assert res is not None and st.last_scheduled is not None
        put("probe_success", 1.0 if res.ok else 0.0, target=tid)
        put("probe_duration_seconds", res.duration, target=tid)
        put("probe_http_status_code", float(res.status_code or 0), target=tid)
        for phase, v in res.phases.items():
            put("probe_http_duration_seconds", v, target=tid, phase=phase)
        put("probe_http_redirects", res.redirects, target=tid)
        put("probe_http_uncompressed_body_length", res.body_bytes, target=tid)
        if int(tid[1:]) % 5 == 1:  # the targets with http2: true
            put("probe_http_version", float(res.http_version or 0), target=tid)
        if not res.ok:
            put("probe_failed_reason", 1, target=tid, reason=str(res.reason))
        put("slamon_probe_scheduled_timestamp_seconds", st.last_scheduled, target=tid)
        for result, n in (("success", st.successes), ("failure", st.failures),
                          ("missed", st.missed)):
            put("slamon_probes_total", n, target=tid, result=result)
        for reason, n in st.failures_by_reason.items():
            put("slamon_probe_failures_total", n, target=tid, reason=reason.value)
        port = 8000 + int(tid[1:])
        put("slamon_target_info", 1, target=tid, kind="http", team='a"b\\c',
            endpoint=f"http://user:xxxxx@127.0.0.1:{port}/x?token=xxxxx")
    families = {name for name, _ in want}
    got = {k: v for k, v in samples.items() if k[0] in families}
    assert got == want
    assert any(name == "probe_failed_reason" for name, _ in got)


async def test_sla_and_maintenance_families_come_in_pieces_equal_to_one_render(
    tmp_path: Path,
) -> None:
    """The SLA families (one sample per SLA and family) and the maintenance gauges (per
    target and per SLO) are drawn in pieces of `chunk` items, so that an SLA per target
    does not hold the event loop for one long piece; the text is the same."""
    from slamon.metrics.collector import sla_pieces
    from tests.test_api import P, make_state

    state = await make_state(tmp_path)
    try:
        live = LiveState(state.config)
        collector = SlamonCollector(lambda: live, lambda: None, clock=lambda: state.now)
        collector.sliced.append(
            lambda chunk: sla_pieces(state.tracker, state.config, state.now, chunk))
        registry = make_registry(collector)
        whole = parse_metrics(generate_latest(registry).decode())
        for chunk in (1, 2, 100):
            sliced = parse_metrics((await render(registry, collector, chunk)).decode())
            assert {k: v for k, v in sliced.items() if not k[0].startswith("process_")} == {
                k: v for k, v in whole.items() if not k[0].startswith("process_")}
        # the counter, one piece of SLAs, then the 2 targets and the 1 SLO one by one
        assert len(list(sla_pieces(state.tracker, state.config, state.now, 1))) == 5
        assert value(whole, "slamon_sla_periods_closed_total", sla="gold",
                     verdict="breached") == 1
        assert value(whole, "slamon_sla_last_closed_period", sla="gold") == P + 1
        assert value(whole, "slamon_sla_current_period", sla="gold") == P + 2
        assert value(whole, "slamon_maintenance_active", target="api") == 0
        assert value(whole, "slamon_slo_maintenance_active", slo="shop") == 0
    finally:
        await state.store.close()
