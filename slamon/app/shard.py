"""Scale-out: split the targets across `count` instances by a stable hash.

`shard: {index: i, count: n}` in the config makes an instance probe only its
share. The share is decided by rendezvous hashing of a *key* that every
instance computes the same way (blake2b of the UTF-8 key salted with each
shard's index, never Python's salted `hash()`), so all instances agree without
talking to each other, a target keeps its shard across restarts, upgrades and
machines, and changing the shard count by one moves about 1/n of the targets.

A composite SLO needs all its parts in one process, so the key of a target is
the id of the first SLO (in config order) that lists it, and targets tied
together by SLOs (SLO a = [web, api], SLO b = [api, login]) form one group
keyed by the first SLO of the group. A target in no SLO is keyed by its own
id. An instance keeps the SLOs whose targets it probes, the SLAs of those
SLOs, and the maintenance windows that still apply to something it keeps.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib

from slamon.config.process import ShardConfig
from slamon.config.root import Config


def shard_of(key: str, count: int) -> int:
    """Shard (0..count-1) of `key` by rendezvous (highest random weight) hashing.

    Each shard i scores the key with the first 8 bytes of blake2b(key, i) and the
    highest score wins (ties: the lower index). Going from n to n + 1 shards moves
    only the keys that shard n now wins, about 1/(n + 1) of them, and nothing
    moves between the old shards; dropping the last shard moves only its keys.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    data = key.encode("utf-8")
    best, best_score = 0, -1
    for i in range(count):
        score = int.from_bytes(
            hashlib.blake2b(data, digest_size=8, salt=i.to_bytes(8, "big")).digest(), "big")
        if score > best_score:
            best, best_score = i, score
    return best


def shard_keys(config: Config) -> dict[str, str]:
    """Target id -> the key that places it (see the module docstring)."""
    parent: dict[str, str] = {t.id: t.id for t in config.targets}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for slo in config.slos:
        parts = [t for t in slo.targets if t in parent]
        for other in parts[1:]:
            a, b = find(parts[0]), find(other)
            if a != b:
                parent[b] = a
    group_key: dict[str, str] = {}
    for slo in config.slos:
        for tid in slo.targets:
            if tid in parent:
                group_key.setdefault(find(tid), slo.id)
    return {t.id: group_key.get(find(t.id), t.id) for t in config.targets}


def assignment(config: Config, count: int) -> dict[str, int]:
    """Target id -> shard index, for `count` shards."""
    return {tid: shard_of(key, count) for tid, key in shard_keys(config).items()}


def filter_config(config: Config, index: int, count: int) -> Config:
    """The part of `config` that shard `index` of `count` runs.

    Targets of other shards are dropped, and with them the SLOs over them, the
    SLAs over those SLOs and maintenance windows left with nothing to cover.
    """
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in 0..{count - 1}")
    shard = ShardConfig(index=index, count=count)
    if count == 1:
        return config.model_copy(update={"shard": shard})
    where = assignment(config, count)
    targets = [t for t in config.targets if where[t.id] == index]
    kept_targets = {t.id for t in targets}
    slos = [s for s in config.slos if all(t in kept_targets for t in s.targets)]
    kept_slos = {s.id for s in slos}
    slas = [s for s in config.slas if s.slo in kept_slos]
    kept_slas = {s.id for s in slas}
    maintenance = []
    for window in config.maintenance:
        w_targets = [t for t in window.targets if t in kept_targets]
        w_slas = [s for s in window.slas if s in kept_slas]
        # an empty list means "all": a window whose list lost every entry covers nothing here
        if (window.targets and not w_targets) or (window.slas and not w_slas):
            continue
        maintenance.append(window.model_copy(update={"targets": w_targets, "slas": w_slas}))
    update: dict[str, object] = {
        "targets": targets,
        "slos": slos,
        "slas": slas,
        "maintenance": maintenance,
        "shard": shard,
    }
    oracle = config.oracle
    if oracle is not None and oracle.slas is not None:
        update["oracle"] = oracle.model_copy(
            update={"slas": [s for s in oracle.slas if s in kept_slas]}
        )
    return config.model_copy(update=update)


def apply_shard(config: Config) -> Config:
    """The config this instance runs, per its own `shard:` section (unchanged for 1 shard)."""
    if config.shard.count == 1:
        return config
    return filter_config(config, config.shard.index, config.shard.count)
