"""Editing an SLA, or the SLO and targets it judges, while a period is open.

An SLA's period schedule (kind, length, anchor, zone, week start, evidence
resolution) numbers its periods: stored periods, the progress row and the on-chain
registration count in it. A config that changes it under the same SLA id is refused,
by a reload (the old config keeps running, nothing is lost) and at start-up (a clear
error and a non-zero exit, before anything is written).

Every other edit reaches the SLA's periods from the one after the period it was made
in: a period is judged whole by the SLA, SLO, parts and maintenance windows in force
when it began, and closes with their policy digest, the one the contract registered.
Each period equals a recount of its outcomes under that config, after the reload and
after a restart (the open period's policy is stored), also when the edit was made
while slamon was stopped."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from slamon.app.daemon import Daemon, StartupError
from slamon.config.loader import load_config
from slamon.config.root import Config
from slamon.probers.base import FailureReason, ProbeResult
from slamon.sla.periods import period_bounds, period_index
from slamon.sla.tracker import SlaTracker
from slamon.store.base import Store

#: server, logging, state and the web target: what both configs below start with
HEAD = """
server: {{listen: "127.0.0.1:0"}}
logging: {{level: warning, format: json}}
state: {{path: "{state}"}}
targets:
  - {{id: web, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/"}}}}
"""

CONFIG = HEAD + """slos:
  - {{id: shop, targets: [web], objective: 0.9, window: 1d}}
slas:
  - {{id: gold, slo: shop, period: {period}, evidence_resolution: {res}}}
"""

DAILY = "{kind: daily}"

#: schedule edits, each refused: (period, evidence resolution)
REFUSED = {
    "kind": ("{kind: hourly}", "5m"),
    "zone": ("{kind: daily, timezone: Europe/Berlin}", "5m"),
    "fixed length": ("{kind: fixed, length: 1h}", "5m"),
    "evidence resolution": (DAILY, "1m"),
}


def write(path: Path, period: str = DAILY, res: str = "5m") -> None:
    state = path.parent / "state.sqlite3"
    path.write_text(textwrap.dedent(CONFIG.format(state=state, period=period, res=res)))


async def opened(path: Path) -> tuple[Daemon, SlaTracker, Store]:
    """A daemon on the config at `path`, its state opened (not running)."""
    daemon = Daemon(load_config(path), config_path=path, loader=load_config)
    await daemon._open_state()
    tracker, store = daemon.parts.tracker, daemon.store
    assert tracker is not None and store is not None
    return daemon, tracker, store


@pytest.mark.parametrize("edit", list(REFUSED))
async def test_a_schedule_edit_is_refused_by_a_reload_and_at_start(
    tmp_path: Path, edit: str
) -> None:
    path = tmp_path / "slamon.yaml"
    write(path)
    daemon, tracker, store = await opened(path)
    rt = tracker.slas["gold"]
    n = period_index(rt.sla.period, time.time())
    start = period_bounds(rt.sla.period, n)[0]  # results early in today's period
    web = daemon.config.target("web")
    for i in range(6):
        daemon._on_result(web, start + 10 * i, ProbeResult(i != 2, 0.05))
    await store.flush()
    before = await tracker.compute(rt, n)
    assert (before.good, before.valid) == (5, 6)

    period, res = REFUSED[edit]
    write(path, period, res)
    with capture_logs() as logs:
        assert not await daemon.reload()
    failed = [e for e in logs if e["event"] == "reload_failed"]
    assert len(failed) == 1 and len(failed[0]["errors"]) == 1
    assert failed[0]["errors"][0].startswith("slas[0] (gold): the period and "
                                             "evidence_resolution cannot change")
    assert daemon.reloads.failed == 1
    # the running config and the open period are as they were, and keep counting
    assert tracker.slas["gold"] is rt and rt.sla.period.kind == "daily"
    daemon._on_result(web, start + 60, ProbeResult(True, 0.05))
    await store.flush()
    after = await tracker.compute(rt, n)
    assert (after.good, after.valid) == (6, 7)
    assert period_bounds(rt.sla.period, n) == (after.start, after.end)
    await daemon._flush(snapshot=True)
    await store.close()

    # a restart on the edited file stops before anything is written
    again = Daemon(load_config(path), config_path=path, loader=load_config)
    with pytest.raises(StartupError, match=r"slas\[0\] \(gold\): the period") as raised:
        await again._open_state()
    assert '"evidence_resolution":300' in str(raised.value)
    # and on the file it ran with, everything is there
    write(path)
    third = Daemon(load_config(path), config_path=path, loader=load_config)
    await third._open_state()
    assert third.parts.tracker is not None and third.store is not None
    try:
        restored = await third.parts.tracker.compute(third.parts.tracker.slas["gold"], n)
        assert (restored.good, restored.valid) == (6, 7)
    finally:
        await third.store.close()


async def test_an_unchanged_schedule_is_written_once_and_a_new_sla_gets_its_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "slamon.yaml"
    write(path)
    daemon, _, _ = await opened(path)
    loaded = await daemon.store.load()
    assert loaded.sla_schedules == {
        "gold": '{"evidence_resolution":300,"period":{"kind":"daily","timezone":"UTC"}}'}
    # an SLA added by a reload has its schedule stored with its first close check
    text = path.read_text() + "  - {id: silver, slo: shop, period: {kind: hourly}}\n"
    path.write_text(text)
    assert await daemon.reload()
    await daemon.parts.tracker.close_due(time.time())
    loaded = await daemon.store.load()
    assert loaded.sla_schedules["silver"] == (
        '{"evidence_resolution":60,"period":{"kind":"hourly","timezone":"UTC"}}')
    assert loaded.sla_progress["silver"][1] == period_index(
        daemon.parts.tracker.slas["silver"].sla.period, time.time())
    await daemon.store.close()


async def test_an_sla_removed_and_added_back_keeps_its_schedule(tmp_path: Path) -> None:
    """Its periods stay stored under its id while it is away: a reload that brings it
    back with another schedule is refused, as a restart would refuse it."""
    path = tmp_path / "slamon.yaml"
    write(path)
    daemon, _, _ = await opened(path)
    try:
        text = path.read_text()
        path.write_text(text.split("slas:")[0])
        assert await daemon.reload() and "gold" not in daemon.parts.tracker.slas
        write(path, "{kind: hourly}", "5m")
        with capture_logs() as logs:
            assert not await daemon.reload()
        (failed,) = [e for e in logs if e["event"] == "reload_failed"]
        assert failed["errors"][0].startswith("slas[0] (gold): the period and")
        write(path)
        assert await daemon.reload() and "gold" in daemon.parts.tracker.slas
    finally:
        await daemon.store.close()


def test_slamon_run_on_an_edited_schedule_exits_with_the_error(tmp_path: Path) -> None:
    path = tmp_path / "slamon.yaml"
    write(path)
    first = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import asyncio
            from slamon.app.daemon import Daemon
            from slamon.config.loader import load_config
            async def main():
                d = Daemon(load_config({str(path)!r}))
                await d._open_state()
                await d.store.close()
            asyncio.run(main())
        """)], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    write(path, "{kind: weekly}", "15m")
    res = subprocess.run([sys.executable, "-m", "slamon", "run", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "slas[0] (gold): the period and evidence_resolution cannot change" in res.stderr
    assert "Traceback" not in res.stderr


RECOUNTED = HEAD + """  - {{id: api, kind: http, interval: 30s, timeout: 2s, http: {{url: "http://127.0.0.1:9/a"}}}}
slos:
  - {{id: shop, targets: [web, api], objective: 0.95, window: 1d}}
  - {{id: fast, targets: [web], objective: 0.9, sli: latency, latency_threshold: 300ms}}
slas:
  - {{id: gold, slo: shop, period: {period}, evidence_resolution: 5m, grace: 1m}}
  - {{id: quick, slo: fast, period: {period}, evidence_resolution: 5m, min_valid_samples: 3}}
"""

#: SLA and SLO edits: the open period keeps the rules it began with (descriptions and
#: the grace, in no verdict and no digest, reach it at once), the next follows the edit
EDITS = {
    "sla objective": ("grace: 1m}", "grace: 1m, objective: 0.97}"),
    "slo objective": ("objective: 0.95", "objective: 0.9"),
    "descriptions": ("grace: 1m}", "grace: 1m, description: the shop}"),
    "grace": ("grace: 1m", "grace: 10m"),
    "min_valid_samples": ("min_valid_samples: 3", "min_valid_samples: 500"),
    "latency threshold": ("latency_threshold: 300ms", "latency_threshold: 200ms"),
    "a part's interval": ("interval: 30s", "interval: 20s"),
    "a part's timeout": ("interval: 30s, timeout: 2s", "interval: 30s, timeout: 5s"),
    "the parts": ("targets: [web, api]", "targets: [api]"),
    "a maintenance window": ("slas:\n", "maintenance:\n  - {id: m, kind: once, targets: [web], "
                             "once: {start: '2020-01-01T00:00:00Z', "
                             "end: '2100-01-01T00:00:00Z'}}\nslas:\n"),
}
#: edits that judge no outcome otherwise and are in no policy digest
NOT_JUDGED = {"descriptions", "grace"}
#: edits of what a part probes
DEFINITION = {"a part's interval", "a part's timeout"}


@pytest.mark.parametrize("edit", list(EDITS))
async def test_each_period_equals_a_recount_under_the_config_it_began_with(
    tmp_path: Path, edit: str
) -> None:
    """The open period during an edit and the one after it, each against a recount of
    the outcomes judged under the config in force when the period began; after the
    reload and after a restart. The digests follow: the old one for the open period,
    the edit's from the next period on."""
    from slamon.sla.evidence import Leaf
    from slamon.sla.maintenance import intervals_by_target
    from slamon.sla.policy import policy_digest_for
    from slamon.sla.result import compute_period_result
    from slamon.sli.slo import is_good
    from slamon.util.keccak import hashes_to

    path = tmp_path / "slamon.yaml"
    # a day-long period that began at most 5 minutes ago: the outcomes below all come
    # after this start-up, whose gap filling covers only the period's first minutes
    anchor = int(time.time() // 300) * 300
    text = textwrap.dedent(RECOUNTED.format(
        state=tmp_path / "state.sqlite3", period=f"{{kind: fixed, length: 1d, anchor: {anchor}}}"))
    old, new = EDITS[edit]
    assert old in text
    edited = text.replace(old, new)
    path.write_text(text)
    daemon, _, _ = await opened(path)
    spec = daemon.parts.tracker.slas["gold"].sla.period
    n = period_index(spec, anchor)
    begins = {n: anchor + 300, n + 1: period_bounds(spec, n + 1)[0]}
    # (period, sla, target, bucket) -> [good, valid], judged under the period's config
    counted: dict[tuple[int, str, str, int], list[int]] = {}
    judged_by = {n: load_config(path), n + 1: load_config(path)}

    def feed(period: int, first: int, count: int) -> None:
        """Outcomes through the daemon, counted under the config `period` began with."""
        config = judged_by[period]
        slos = {slo.id: slo for slo in config.slos}
        for i in range(first, first + count):
            t = begins[period] + 10 * i
            ok, duration = i % 9 != 4, 0.05 + (i % 4) * 0.1
            targets = ["web"] + (["api"] if i % 3 == 0 else [])
            held = daemon.parts.tracker.held_targets()
            for tid in targets:
                result = (ProbeResult(ok, duration) if ok
                          else ProbeResult(False, duration, FailureReason.STATUS))
                daemon._on_result(daemon.config.target(tid), t, result)
                # a part whose definition the edit changed: the scheduler probes the one
                # the open period holds as well, and only that one counts for it
                for key, target in held.items():
                    if target.id == tid:
                        daemon.parts.on_held(key, target, t, result)
                for sla in config.slas:
                    if tid in slos[sla.slo].targets:
                        cell = counted.setdefault(
                            (period, sla.id, tid, int(t // 300) * 300), [0, 0])
                        cell[0] += is_good(slos[sla.slo], ok, duration)
                        cell[1] += 1

    async def recount(d: Daemon) -> None:
        tracker = d.parts.tracker
        assert tracker is not None
        for period, config in judged_by.items():
            slos = {slo.id: slo for slo in config.slos}
            for sla in config.slas:
                sid, slo = sla.id, slos[sla.slo]
                begin, end = period_bounds(spec, period)
                # the start-up filled the ticks between the period's start and it as no data
                stored = await tracker.store.period_leaves(sid, begin, begins[period])
                leaves: dict[str, list[Leaf]] = {
                    tid: [Leaf(tid, *row) for row in stored.get(tid, [])]
                    for tid in slo.targets}
                for (p, of, tid, bucket), (good, valid) in sorted(counted.items()):
                    if p == period and of == sid:
                        leaves[tid].append(Leaf(tid, bucket, good, valid, 0))
                expected = compute_period_result(
                    sla, (begin, end), leaves,
                    intervals_by_target(config.maintenance, begin, end, slo.targets, sid),
                    len(slo.targets) > 1, slo_objective=slo.objective)
                rt = tracker.slas[sid]
                got = await tracker.compute(rt, period)
                assert got.to_json() == expected.to_json(), (edit, sid, period)
                policy = rt.policy_of(period)
                assert policy.digest == policy_digest_for(sla, slo, config)
                # the document the digest hashes, kept from the config the period began with
                document = policy.canonical()
                assert document is not None and hashes_to(document, policy.digest)

    feed(n, 0, 60)
    path.write_text(edited)
    assert await daemon.reload()
    judged_by[n + 1] = load_config(path)
    # the edits of what a part probes hold its old definition for the open period
    held = daemon.parts.tracker.held_targets()
    assert sorted(t.id for t in held.values()) == (["api"] if edit in DEFINITION else [])
    assert all(t == judged_by[n].target(t.id) for t in held.values())
    feed(n, 60, 60)
    feed(n + 1, 0, 60)
    await daemon._flush(snapshot=True)
    await recount(daemon)
    digests = {p: {sid: rt.policy_of(p).digest
                   for sid, rt in daemon.parts.tracker.slas.items()} for p in (n, n + 1)}
    assert (digests[n] == digests[n + 1]) == (edit in NOT_JUDGED)
    await daemon.store.close()
    again = Daemon(load_config(path), config_path=path, loader=load_config)
    await again._open_state()
    assert again.store is not None
    try:
        await recount(again)
        # the held definitions come back from the stored policy documents
        assert again.parts.tracker.held_targets() == held
    finally:
        await again.store.close()


async def test_an_edit_made_while_stopped_reaches_the_periods_after_the_restart(
    tmp_path: Path,
) -> None:
    """The policy of the open period is stored: a restart on an edited file judges the
    period open at the restart by the rules it began with, and the next by the edit.
    Closing the held period leaves one policy in the store; an edit undone before its
    period begins leaves none pending."""
    from slamon.sla.policy import policy_digest_for

    path = tmp_path / "slamon.yaml"
    anchor = int(time.time() // 300) * 300
    text = textwrap.dedent(RECOUNTED.format(
        state=tmp_path / "state.sqlite3", period=f"{{kind: fixed, length: 1d, anchor: {anchor}}}"))
    edited = text.replace("objective: 0.95", "objective: 0.99")
    path.write_text(text)

    async def opened() -> tuple[Daemon, bytes, bytes]:
        d = Daemon(load_config(path), config_path=path, loader=load_config)
        await d._open_state()
        assert d.store is not None
        old, new = (policy_digest_for(c.slas[0], c.slos[0], c)
                    for c in (load_config_text(tmp_path, text),
                              load_config_text(tmp_path, edited)))
        return d, old, new

    daemon, old, new = await opened()
    assert daemon.store is not None and daemon.parts.tracker is not None
    n = period_index(daemon.parts.tracker.slas["gold"].sla.period, anchor)
    await daemon.store.close()
    path.write_text(edited)
    daemon, _, _ = await opened()
    tracker = daemon.parts.tracker
    assert daemon.store is not None and tracker is not None
    try:
        rt = tracker.slas["gold"]
        assert (rt.policy_of(n).digest, rt.policy_of(n + 1).digest) == (old, new)
        # the objective on the open period's metrics and API is still the old one
        assert rt.policy_of(n).slo.objective == 0.95
        end = period_bounds(rt.sla.period, n)[1]
        (closed,) = await tracker.close_due(now=end + rt.grace + 1)
        assert closed.period_id == n and closed.objective_ppm == 950_000
        record = await daemon.store.get_period("gold", n)
        assert record is not None and record.policy_digest == old
        assert [p.digest for p in tracker.known_policies("gold")] == [new, old]
        await tracker.close_due(now=end + rt.grace + 2)  # writes the pruned policies
    finally:
        await daemon.store.close()
    daemon, _, _ = await opened()
    tracker = daemon.parts.tracker
    assert daemon.store is not None and tracker is not None
    try:
        rt = tracker.slas["gold"]
        assert [(p.start, p.digest) for p in rt.policies] == [(n + 1, new)]
        # an edit and its undoing within one period: nothing pending
        path.write_text(text)
        assert await daemon.reload()
        assert [p.digest for p in tracker.slas["gold"].policies] == [new, old]
        path.write_text(edited)
        assert await daemon.reload()
        assert [p.digest for p in tracker.slas["gold"].policies] == [new]
    finally:
        await daemon.store.close()


def load_config_text(tmp_path: Path, text: str) -> Config:
    other = tmp_path / "other.yaml"
    other.write_text(text)
    return load_config(other)


#: an anvil development key: the attest-mode oracle signs with it (no chain here)
DEV_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ATTEST = """oracle:
  mode: attest
  key: {{dev_key_env: SLAMON_TEST_EDITS_KEY}}
  chain_id: 31337
  contract: "0x{contract}"
  outbox: "{outbox}"
  schedule_starts: {{gold: {start}}}
  slas: [gold]
"""


async def test_a_period_closed_under_an_old_policy_is_signed_under_it_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A period closed under the policy it began with, after an edit, and not signed
    before a restart (here: the oracle is configured only afterwards), is signed by the
    backfill under that policy (its digest and objective): the closed period keeps the
    policy it was judged by, since neither the config nor the tracker holds it any more."""
    from slamon.sla.policy import policy_digest_for
    from slamon.sla.tracker import parse_policy

    monkeypatch.setenv("SLAMON_TEST_EDITS_KEY", DEV_KEY)
    path = tmp_path / "slamon.yaml"
    anchor = int(time.time() // 300) * 300
    text = textwrap.dedent(RECOUNTED.format(
        state=tmp_path / "state.sqlite3", period=f"{{kind: fixed, length: 1d, anchor: {anchor}}}"))
    edited = text.replace("objective: 0.95", "objective: 0.99") + ATTEST.format(
        contract="11" * 20, outbox=tmp_path / "outbox", start=anchor)
    path.write_text(text)
    old = policy_digest_for(*(lambda c: (c.slas[0], c.slos[0], c))(load_config(path)))

    daemon, tracker, _ = await opened(path)
    rt = tracker.slas["gold"]
    n = period_index(rt.sla.period, anchor)
    try:
        for i, ok in enumerate([True] * 9 + [False]):  # one 5-minute bucket each
            for part in ("web", "api"):
                daemon._on_result(daemon.config.target(part), anchor + 10 + 300 * i,
                                  ProbeResult(ok, 0.01))
        path.write_text(edited)
        assert await daemon.reload()
        assert daemon.parts.oracle is None  # nothing signs in this run
        await daemon._flush()
        end = period_bounds(rt.sla.period, n)[1]
        (closed,) = await tracker.close_due(now=end + tracker.slas["gold"].grace + 1)
        assert closed.objective_ppm == 950_000
        await tracker.close_due(now=end + tracker.slas["gold"].grace + 2)
    finally:
        await daemon.store.close()

    daemon = Daemon(load_config(path), config_path=path, loader=load_config)
    await daemon._open_state()
    oracle, tracker = daemon.parts.oracle, daemon.parts.tracker
    assert daemon.store is not None and oracle is not None and tracker is not None
    try:
        record = await daemon.store.get_period("gold", n)
        assert record is not None and record.policy is not None
        kept = parse_policy(record.policy)
        assert (kept.digest, kept.slo.objective) == (old, 0.95)
        # neither the tracker nor the config holds the policy n was judged by
        assert old not in {p.digest for p in tracker.known_policies("gold")}
        oracle.load_key()
        assert oracle.signer is not None
        with capture_logs() as logs:
            assert await oracle.backfill() == 1
        assert not [e for e in logs if e["log_level"] in ("error", "warning")], logs
        signed = oracle.outbox.read("gold", n, oracle.signer.address)
        assert signed is not None
        assert signed.report.policy_digest == old
        assert signed.report.slo_ppm == 950_000 and signed.report.sli_ppm == 900_000
        assert signed.report.breached is True
    finally:
        await daemon.store.close()


async def test_periods_closed_in_one_run_around_an_edit_keep_each_its_own_policy(
    tmp_path: Path,
) -> None:
    """The period that began before an edit and the next one, closed by the same runtime
    one after the other, each store the policy they were judged by, as `policy_text`
    makes it: the text kept from the first close is not the second's."""
    from slamon.sla.tracker import parse_policy, policy_text

    path = tmp_path / "slamon.yaml"
    anchor = int(time.time() // 300) * 300
    text = textwrap.dedent(RECOUNTED.format(
        state=tmp_path / "state.sqlite3", period=f"{{kind: fixed, length: 1d, anchor: {anchor}}}"))
    path.write_text(text)
    daemon, tracker, _ = await opened(path)
    try:
        path.write_text(text.replace("objective: 0.95", "objective: 0.99"))
        assert await daemon.reload()
        rt = tracker.slas["gold"]
        n = period_index(rt.sla.period, anchor)
        old, new = rt.policy_of(n), rt.policy_of(n + 1)
        assert (old.slo.objective, new.slo.objective) == (0.95, 0.99)
        for k in (n, n + 1):
            end = period_bounds(rt.sla.period, k)[1]
            closed = await tracker.close_due(now=end + rt.grace + 1)
            assert [r.period_id for r in closed if r.sla_id == "gold"] == [k]
        stored = [await daemon.store.get_period("gold", k) for k in (n, n + 1)]
        assert [r.policy if r else None for r in stored] == [policy_text(old), policy_text(new)]
        assert [parse_policy(r.policy).slo.objective for r in stored
                if r and r.policy] == [0.95, 0.99]
    finally:
        await daemon.store.close()


def _runtime_view(slas: dict[str, Any], by_target: dict[str, list[Any]]) -> dict[str, object]:
    """What an SLA tracker's runtimes judge by, comparable across two builds."""
    return {
        "slas": {sid: (rt.sla, rt.slo, rt.parts, rt.grace, rt.last_closed, rt.first_period,
                       rt.open_from, rt.policies, rt._switches) for sid, rt in slas.items()},
        "by_target": {tid: [rt.sla.id for rt in rts] for tid, rts in by_target.items()},
    }


async def test_a_reload_builds_the_sla_runtimes_on_a_thread_and_never_takes_a_stale_build(
    tmp_path: Path,
) -> None:
    """A reload works out the SLA runtimes (policy digests included) on a thread, from a
    snapshot of the running ones, and takes them only while nothing they were built from
    has moved: a period closed since, or a period boundary passed, makes it build them
    again in the loop. Either way the runtimes are the ones an inline build gives."""
    path = tmp_path / "slamon.yaml"
    write(path)
    _, tracker, store = await opened(path)
    try:
        path.write_text(path.read_text().replace("objective: 0.9", "objective: 0.95"))
        edited = load_config(path)
        now = time.time()

        def inline(config: Config, at: float) -> dict[str, object]:
            progress, held = tracker._snapshot()
            built = tracker._runtimes(config, progress, at, dict(held))
            return _runtime_view(built.slas, built.by_target)

        # taken as built: the same runtimes as an inline build, and the edit waits for the
        # next period (its digest differs from the running one's)
        prepared = await tracker.prepare(edited)
        expected = inline(edited, now)
        running = tracker.slas["gold"].digest
        tracker.apply_config(edited, now, prepared)
        assert tracker.slas is prepared.built.slas
        assert _runtime_view(tracker.slas, tracker._by_target) == expected
        [first, then] = tracker.slas["gold"].policies
        assert first.digest == running and then.digest != running
        assert then.start == period_index(edited.slas[0].period, now) + 1

        # a period boundary passed between the build and the reload: built again
        path.write_text(path.read_text().replace("objective: 0.95", "objective: 0.97"))
        again = load_config(path)
        prepared = await tracker.prepare(again)
        later = prepared.valid_until
        assert later == period_bounds(again.slas[0].period,
                                      period_index(again.slas[0].period, now))[1]
        expected = inline(again, later)
        tracker.apply_config(again, later, prepared)
        assert tracker.slas is not prepared.built.slas
        assert _runtime_view(tracker.slas, tracker._by_target) == expected

        # a period closed between the build and the reload: built again, from the
        # runtimes as they are now (the closed period's policy is gone)
        path.write_text(path.read_text().replace("objective: 0.97", "objective: 0.98"))
        third = load_config(path)
        prepared = await tracker.prepare(third)
        rt = tracker.slas["gold"]
        end = period_bounds(rt.sla.period, rt.last_closed + 1)[1]
        closed = await tracker.close_due(now=end + rt.grace + 1)
        assert len(closed) == 1
        expected = inline(third, now)
        tracker.apply_config(third, now, prepared)
        assert tracker.slas is not prepared.built.slas
        assert _runtime_view(tracker.slas, tracker._by_target) == expected
        assert tracker.slas["gold"].last_closed == prepared.progress["gold"][0] + 1
    finally:
        await store.close()
