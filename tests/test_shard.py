"""Scale-out shards: every target is probed by exactly one instance, composite
SLOs stay whole, and the split is stable across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from slamon.app.shard import apply_shard, assignment, filter_config, shard_keys, shard_of
from slamon.config.root import Config

IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.:_", min_size=1, max_size=12).map(
    lambda s: "t" + s
)


def target(tid: str) -> dict[str, Any]:
    return {"id": tid, "kind": "tcp", "interval": "10s", "timeout": "1s",
            "tcp": {"host": "127.0.0.1", "port": 1}}


@st.composite
def configs(draw: st.DrawFn) -> Config:
    ids = draw(st.lists(IDS, min_size=1, max_size=30, unique=True))
    slos = []
    for i in range(draw(st.integers(0, 8))):
        parts = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=4, unique=True))
        slos.append({"id": f"slo{i}", "targets": parts, "objective": 0.99, "window": "1d"})
    return Config.model_validate({"targets": [target(t) for t in ids], "slos": slos})


@settings(max_examples=150, deadline=None)
@given(configs(), st.integers(1, 9))
def test_union_of_shards_is_every_target_once(config: Config, count: int) -> None:
    seen: Counter[str] = Counter()
    slos_seen: Counter[str] = Counter()
    for index in range(count):
        part = filter_config(config, index, count)
        assert part.shard.index == index and part.shard.count == count
        seen.update(t.id for t in part.targets)
        slos_seen.update(s.id for s in part.slos)
        kept = {t.id for t in part.targets}
        for slo in part.slos:  # every kept SLO can be computed here: all parts present
            assert set(slo.targets) <= kept
        Config.model_validate(part.model_dump())  # still a valid config on its own
    assert seen == Counter(t.id for t in config.targets)  # all, exactly once
    assert slos_seen == Counter(s.id for s in config.slos)  # no SLO lost or doubled


@settings(max_examples=100, deadline=None)
@given(configs())
def test_parts_of_an_slo_share_a_shard(config: Config) -> None:
    where = assignment(config, 5)
    for slo in config.slos:
        assert len({where[t] for t in slo.targets}) == 1
    keys = shard_keys(config)
    for t in config.targets:
        listing = [s.id for s in config.slos if t.id in s.targets]
        if not listing:
            assert keys[t.id] == t.id
        else:  # the first SLO listing it, or an earlier one tied to it through a shared part
            first = [s.id for s in config.slos].index(listing[0])
            assert [s.id for s in config.slos].index(keys[t.id]) <= first


@given(st.text(max_size=40), st.integers(1, 1024))
def test_shard_of_in_range_and_deterministic(key: str, count: int) -> None:
    assert 0 <= shard_of(key, count) < count
    assert shard_of(key, count) == shard_of(key, count)


def test_stable_across_processes_and_releases() -> None:
    # pinned values: changing the hash would move every target to another instance
    expected = [2, 0, 3, 1, 361]
    cases = [("web", 4), ("shop-availability", 4), ("api", 7), ("ü-target", 3), ("web", 1000)]
    assert [shard_of(k, n) for k, n in cases] == expected
    code = (
        "from slamon.app.shard import shard_of;"
        f"print([shard_of(k, n) for k, n in {cases!r}])"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        assert out.strip() == str(expected)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 15])
def test_one_more_shard_moves_about_one_in_n_plus_one(n: int) -> None:
    """Rendezvous hashing: n -> n + 1 moves only keys to the new shard, about
    1/(n + 1) of them; n + 1 -> n moves only the removed shard's keys back."""
    keys = [f"slo-{i}" for i in range(6000)]
    before = {k: shard_of(k, n) for k in keys}
    after = {k: shard_of(k, n + 1) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == n for k in moved)  # nothing moves between old shards
    share = len(moved) / len(keys)
    assert abs(share - 1 / (n + 1)) < 0.2 / (n + 1), share
    # and back: exactly the keys the new shard had
    assert {k for k in keys if after[k] == n} == set(moved)


def test_roughly_balanced() -> None:
    count = 8
    n = 20_000
    sizes = Counter(shard_of(f"target-{i}", count) for i in range(n))
    assert len(sizes) == count
    for size in sizes.values():
        assert abs(size - n / count) < 0.05 * n / count


def test_slas_and_maintenance_follow_their_targets() -> None:
    config = Config.model_validate({
        "targets": [target(f"t{i}") for i in range(40)],
        "slos": [
            {"id": "shop", "targets": ["t0", "t1", "t2"], "objective": 0.99, "window": "1d"},
            {"id": "other", "targets": ["t2", "t3"], "objective": 0.99, "window": "1d"},
        ],
        "slas": [{"id": "shop-sla", "slo": "shop", "period": {"kind": "monthly"}}],
        "maintenance": [
            {"id": "m1", "kind": "once", "once": {"start": 0, "end": 10},
             "targets": ["t0", "t39"]},
            {"id": "all", "kind": "once", "once": {"start": 0, "end": 10}},
            {"id": "m-sla", "kind": "once", "once": {"start": 0, "end": 10},
             "slas": ["shop-sla"]},
        ],
    })
    where = assignment(config, 4)
    # shop and other share t2: one group, keyed by the first SLO of it
    assert shard_keys(config)["t3"] == "shop"
    assert {where[t] for t in ("t0", "t1", "t2", "t3")} == {shard_of("shop", 4)}
    home = shard_of("shop", 4)
    for index in range(4):
        part = filter_config(config, index, 4)
        ids = {w.id for w in part.maintenance}
        assert "all" in ids  # an unscoped window applies everywhere
        if index == home:
            assert [s.id for s in part.slas] == ["shop-sla"]
            assert {"m1", "m-sla"} <= ids
            m1 = next(w for w in part.maintenance if w.id == "m1")
            assert "t0" in m1.targets
        else:
            assert part.slas == [] and "m-sla" not in ids
        m1s = [w for w in part.maintenance if w.id == "m1"]
        for w in m1s:
            assert set(w.targets) <= {t.id for t in part.targets} and w.targets


def test_apply_shard_and_bounds() -> None:
    config = Config.model_validate({
        "targets": [target(f"t{i}") for i in range(10)],
        "shard": {"index": 1, "count": 3},
    })
    mine = apply_shard(config)
    assert {t.id for t in mine.targets} == {t for t, s in assignment(config, 3).items() if s == 1}
    single = Config.model_validate({"targets": [target("a")]})
    assert apply_shard(single) is single
    with pytest.raises(ValueError):
        filter_config(config, 3, 3)
    with pytest.raises(ValueError):
        shard_of("x", 0)


def test_running_instance_probes_only_its_shard(tmp_path: Path) -> None:
    """`slamon run` with `shard:` exposes exactly its share of the targets, and the
    shares of all instances add up to every target once."""
    from tests.misbehaving import free_port
    from tests.test_reload import SlamonProcess, tcp_config

    ids = {f"t{i}": 1 for i in range(8)}  # port 1 on loopback: refused, fast
    full = Config.model_validate(yaml.safe_load(tcp_config(9115, tmp_path / "x", ids)))
    where = assignment(full, 2)
    seen: set[str] = set()
    for index in range(2):
        port = free_port()
        config = tmp_path / f"shard{index}.yaml"
        config.write_text(
            tcp_config(port, tmp_path / f"state{index}.sqlite3", ids)
            + f"shard: {{index: {index}, count: 2}}\n"
        )
        proc = SlamonProcess(config, port, tmp_path / f"shard{index}.log")
        try:
            proc.wait_ready()
            samples = proc.metrics()
        finally:
            proc.close()
        exposed = {dict(labels)["target"] for name, labels in samples
                   if name == "slamon_target_info"}
        assert exposed == {t for t, s in where.items() if s == index}
        assert not exposed & seen
        seen |= exposed
    assert seen == set(ids)
