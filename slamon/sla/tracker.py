"""Feeds each SLA's evidence leaves and closes its periods exactly once.

The verdict is computed by the pure `compute_period_result` from the leaves in
the store, so what slamon decides and what a third party recomputes from the
published leaves cannot differ.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import itertools
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from slamon.config.maintenance import MaintenanceWindow
from slamon.config.root import Config
from slamon.config.sla import PeriodSpec, Sla
from slamon.config.slo import Slo
from slamon.config.targets import Target
from slamon.sla.evidence import Leaf
from slamon.sla.held import Held, Unprobeable, held_definitions
from slamon.sla.maintenance import intervals_by_target
from slamon.sla.periods import due_periods, period_bounds, period_index
from slamon.sla.policy import (
    PolicyDigests,
    applicable_maintenance,
    canonical_json,
    policy_digest_for,
    policy_document_1,
    policy_document_2,
    policy_json_2,
    schedule_text,
    spec_targets,
)
from slamon.sla.result import PeriodResult, compute_period_result
from slamon.sli.slo import is_good
from slamon.store.base import ClosedPeriod, Store
from slamon.util.docpack import kept_document, pack_document
from slamon.util.keccak import hashes_to, keccak256
from slamon.util.pace import Pacer

#: a period's stored leaves by target: (bucket start, good, valid, no data) each
LeafRows = dict[str, list[tuple[int, int, int, int]]]

#: periods read and recorded per call to the store when many are due at once (one
#: transaction each; bounded for the catch-up after a long stop)
CLOSE_BATCH = 500


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules a run of an SLA's periods is judged by, from period `start` on: the SLA,
    its SLO, the maintenance windows that apply to it and their digest.

    A period is judged whole by the policy in force when it began. The contract pins
    the digest a report must carry, so an edit that applied to the open period at once
    would let whoever edits the config choose, late in a period, the rules of a verdict
    already taking shape (and the period would no longer settle)."""

    start: int
    sla: Sla
    slo: Slo
    maintenance: tuple[MaintenanceWindow, ...]
    digest: bytes
    part_ids: frozenset[str] = field(default=frozenset(), compare=False)
    #: what the digest's document is made of besides the fields above: the target
    #: definitions it hashed (a policy made from a config; they outlive an edit of the
    #: config, so an open period's document survives it), or the document itself (read
    #: back from the store, checked against the digest), or None (stored by a slamon
    #: that did not keep it)
    source: tuple[Target, ...] | str | None = field(default=None, compare=False)
    #: that document as stored (`pack_document`), when it was made with the digest: then
    #: storing the policy does not build it again
    packed: str | None = field(default=None, compare=False)

    def starting(self, start: int) -> Policy:
        """This policy from period `start` on. `dataclasses.replace` walked the fields
        by name: twice per SLA at a start, ~0.1 s of it at 10,000 SLAs."""
        if start == self.start:
            return self
        return Policy(start, self.sla, self.slo, self.maintenance, self.digest, self.part_ids,
                      self.source, self.packed)

    @property
    def objective_ppm(self) -> int:
        """The objective the periods under this policy are judged against, in ppm."""
        return self.sla.objective_ppm(self.slo.objective)

    def canonical(self) -> str | None:
        """The policy document that hashes to `digest` (canonical JSON, docs/evidence.md
        section 7), or None if it was not kept."""
        if self.source is None or isinstance(self.source, str):
            return self.source
        doc = policy_document_2(self.sla, self.slo, self.source, self.maintenance)
        return canonical_json(doc).decode("ascii")

    def document(self) -> dict[str, Any]:
        """What the store keeps; `parse_policies` reads it back. The canonical document
        is kept too: the config form above does not repeat the targets' definitions, and
        anyone holding a closed period should be able to check its digest."""
        doc = {
            "start": self.start,
            "digest": "0x" + self.digest.hex(),
            "sla": self.sla.model_dump(mode="json", exclude_unset=True),
            "slo": self.slo.model_dump(mode="json", exclude_unset=True),
            "maintenance": [w.model_dump(mode="json", exclude_unset=True)
                            for w in self.maintenance],
        }
        packed = self.packed
        if packed is None and (canonical := self.canonical()) is not None:
            packed = pack_document(canonical)
        if packed is not None:
            doc["document"] = packed
        return doc


def make_policy(start: int, sla: Sla, slo: Slo, windows: Sequence[MaintenanceWindow],
                digest: bytes, source: tuple[Target, ...] | str | None = None,
                packed: str | None = None) -> Policy:
    return Policy(start, sla, slo, tuple(applicable_maintenance(windows, sla, slo.targets)),
                  digest, frozenset(slo.targets), source, packed)


def _texts(policy: Policy, parts: Sequence[Target]) -> Iterator[str]:
    """What a policy's digest may hash, most likely first (`recover_document`)."""
    if (text := policy.canonical()) is not None:
        yield text
    mine = spec_targets(policy.slo, {t.id: t for t in parts})
    yield canonical_json(policy_document_2(policy.sla, policy.slo, mine,
                                           policy.maintenance)).decode("ascii")
    yield canonical_json(policy_document_1(policy.sla, policy.slo)).decode("ascii")


def recover_document(digest: bytes, candidates: Sequence[Policy],
                     parts: Sequence[Target] = ()) -> str | None:
    """The document `digest` commits to, for a period whose store kept none (closed by a
    slamon that did not keep documents), worked out again from each candidate policy
    (the period's own, as stored in config form, and those the tracker holds): its
    document, the schema-2 document of its SLA and SLO over `parts` (the config's
    definitions), and the schema-1 document, which names no definition. None when no
    text hashes to the digest: the rules changed since, and the text cannot be known."""
    for policy in candidates:
        for text in _texts(policy, parts):
            if hashes_to(text, digest):
                return text
    return None


def closed_document(period: ClosedPeriod, held: Sequence[Policy],
                    parts: Sequence[Target]) -> str | None:
    """A closed period's policy document: as its store kept it, or else worked out again
    (`recover_document`) from the rules it kept in config form and the policies `held`
    for its SLA now (`parts`: the config's definitions of the SLA's targets)."""
    document = period.policy_document()
    if document is not None:
        return document
    candidates = []
    if period.policy is not None:
        with contextlib.suppress(ValueError):
            candidates.append(parse_policy(period.policy))
    return recover_document(period.policy_digest, [*candidates, *held], parts)


def config_policy(config: Config, sla_id: str) -> tuple[Policy, tuple[Target, ...]] | None:
    """The policy `config` gives the SLA now, and its parts' definitions; None for an SLA
    the config does not have."""
    targets = {t.id: t for t in config.targets}
    slos = {s.id: s for s in config.slos}
    for sla in config.slas:
        if sla.id == sla_id and sla.slo in slos:
            slo = slos[sla.slo]
            parts = spec_targets(slo, targets)
            digest = policy_digest_for(sla, slo, config, targets)
            return make_policy(0, sla, slo, config.maintenance, digest, parts), parts
    return None


def policies_text(policies: Sequence[Policy]) -> str:
    return json.dumps([p.document() for p in policies], sort_keys=True, separators=(",", ":"))


def policy_text(policy: Policy) -> str:
    """One policy, as a closed period keeps the one it was judged by (`parse_policy`)."""
    return json.dumps(policy.document(), sort_keys=True, separators=(",", ":"))


def _policy_of(doc: Any) -> Policy:
    try:
        sla, slo = Sla.model_validate(doc["sla"]), Slo.model_validate(doc["slo"])
        windows = [MaintenanceWindow.model_validate(w) for w in doc["maintenance"]]
        digest = bytes.fromhex(str(doc["digest"]).removeprefix("0x"))
        return make_policy(int(doc["start"]), sla, slo, windows, digest,
                           kept_document(doc.get("document"), digest))
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise ValueError(f"unreadable stored policy ({str(exc)[:200]})") from None


def parse_policy(text: str) -> Policy:
    """A closed period's policy (`policy_text`); ValueError if it cannot be read back."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"unreadable stored policy ({str(exc)[:200]})") from None
    return _policy_of(doc)


def parse_policies(text: str) -> list[Policy]:
    """The stored policies of an SLA; ValueError if they cannot be read back."""
    try:
        docs = json.loads(text)
        if not isinstance(docs, list):
            raise TypeError("not a list")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"unreadable stored policy ({str(exc)[:200]})") from None
    out = [_policy_of(doc) for doc in docs]
    if not out or any(a.start >= b.start for a, b in itertools.pairwise(out)):
        raise ValueError("unreadable stored policy (no entry, or starts out of order)")
    return out


def _from_period(policies: list[Policy], n: int) -> list[Policy]:
    """The policies of period n and later (oldest first)."""
    first = max((i for i, p in enumerate(policies) if p.start <= n), default=0)
    return policies[first:]


def with_config(held: list[Policy], current: Policy, last_closed: int,
                now_period: int) -> list[Policy]:
    """The policies of an SLA's periods once the config's `current` one is in force: from
    the period after `now_period` on, or where the last held one is, when both judge
    alike (the same digest: an edit of a description or the grace reaches every period).
    `held` is oldest first and its first judges period last_closed + 1."""
    held = _from_period(held, last_closed + 1)
    start = max(now_period + 1, last_closed + 2)
    kept = [p for p in held if p.start < start]
    if kept[-1].digest == current.digest:
        return [*kept[:-1], current.starting(kept[-1].start)]
    return [*kept, current.starting(start)]


def _stored(text: str | list[Policy], current: Policy) -> tuple[list[Policy], bool]:
    """Stored policies, read back, and False when writing them again would keep a
    document the store lacks (the config's, for a policy stored with its digest by a
    slamon that kept no documents). The common case (one, the config's digest) without
    validating its models again: the config's own take its place."""
    if not isinstance(text, str):
        return text, True
    try:
        docs = json.loads(text)
        if (isinstance(docs, list) and len(docs) == 1 and isinstance(docs[0], dict)
                and docs[0].get("digest") == "0x" + current.digest.hex()):
            return ([current.starting(int(docs[0]["start"]))],
                    "document" in docs[0])
    except (ValueError, TypeError, KeyError):
        pass  # parse_policies says what is wrong
    policies = parse_policies(text)
    # one stored without its document but with the config's digest: the config's
    # definitions are the ones it hashed
    missing = [i for i, p in enumerate(policies)
               if p.source is None and p.digest == current.digest]
    for i in missing:
        policies[i] = dataclasses.replace(policies[i], source=current.source)
    return policies, not missing


#: up to this many SLAs' policies are written as JSON in the loop (a thread costs more)
_ROWS_INLINE = 50


def _policy_rows(held: Sequence[tuple[str, list[Policy]]]) -> list[tuple[str, str]]:
    return [(sid, policies_text(policies)) for sid, policies in held]


@dataclass(frozen=True, slots=True)
class Built:
    """An SLA tracker's runtimes for one config, before it takes them."""

    slas: dict[str, SlaRuntime]
    by_target: dict[str, list[SlaRuntime]]
    #: SLAs whose policies differ from the ones they held (to be stored)
    dirty: frozenset[str]
    #: each SLA's policy digest under the config (`policy_digests`' answer)
    digests: Mapping[str, bytes]
    #: held definitions no probe can run: (SLA id, what and why)
    unprobeable: tuple[tuple[str, Unprobeable], ...] = ()


@dataclass(frozen=True, slots=True)
class PreparedBuild:
    """`SlaTracker.prepare`: runtimes built on a thread, and what they were built from."""

    config: Config
    digests: PolicyDigests
    progress: dict[str, tuple[int, int]]
    held: dict[str, list[Policy]]
    #: the first period boundary after the build's `now`, over every SLA
    valid_until: float
    built: Built

    def current(self, config: Config, now: float, progress: Mapping[str, tuple[int, int]],
                held: Mapping[str, list[Policy]]) -> bool:
        """Whether the build is what building now would give: the same config object, no
        period boundary passed, every SLA's progress and held policies unchanged."""
        return (config is self.config and now < self.valid_until
                and progress == self.progress and held.keys() == self.held.keys()
                and all(held[sid] is self.held[sid] for sid in held))


ClosedHook = Callable[[Policy, PeriodResult, ClosedPeriod], Awaitable[None]]


@dataclass(slots=True)
class SlaRuntime:
    #: the config's SLA, SLO and parts (probes, metrics, grace); the periods are judged
    #: by `policies`, which an edit reaches from the next period on
    sla: Sla
    slo: Slo
    parts: tuple[Target, ...]
    resolution: int
    grace: float
    last_closed: int
    first_period: int
    #: oldest first; the first one judges period last_closed + 1
    policies: list[Policy] = field(default_factory=list)
    #: start time of each policy but the first (what `record` compares a probe's time to)
    _switches: list[int] = field(default_factory=list)
    #: the policy the last period closed in this run was judged by
    closed_policy: Policy | None = None
    #: start of the first period that may still receive leaves
    open_from: int = 0
    late: int = 0
    #: (policy digest, part id) -> the definition that policy holds of the part, where
    #: the config's differs (`held.py`): in that policy's periods the part's outcomes
    #: are the held definition's probes, not the config's
    held: dict[tuple[bytes, str], Held] = field(default_factory=dict)
    #: (last_closed, wall time from which the next period closes): the once-a-second
    #: check of every SLA is then one comparison, not a calendar sum. A reload builds
    #: new runtimes, so `sla` and `grace` never change under the cached value
    _closable: tuple[int, float] | None = None
    #: (policy, `policy_text` of it) for the last period closed: an SLA's periods are
    #: judged by one policy for months, and its JSON was ~20 % of judging a short period
    _policy_text: tuple[Policy, str] | None = None

    def closable_at(self) -> float:
        cached = self._closable
        if cached is None or cached[0] != self.last_closed:
            _, end = period_bounds(self.sla.period, self.last_closed + 1)
            cached = self._closable = (self.last_closed, end + self.grace)
        return cached[1]

    def set_policies(self, policies: list[Policy]) -> None:
        self.policies = policies
        self._switches = [period_bounds(self.sla.period, p.start)[0] for p in policies[1:]]

    def policy_at(self, t: float) -> Policy:
        """The policy of the period holding the instant t."""
        if not self._switches:
            return self.policies[0]
        return self.policies[bisect.bisect_right(self._switches, t)]

    def policy_of(self, n: int) -> Policy:
        """The policy period n is judged by."""
        return _from_period(self.policies, n)[0]

    def known_text(self, policy: Policy) -> str | None:
        """`policy_text(policy)` if this runtime has made it before, else None."""
        cached = self._policy_text
        return cached[1] if cached is not None and cached[0] is policy else None

    def keep_text(self, policy: Policy, text: str) -> None:
        self._policy_text = (policy, text)

    @property
    def digest(self) -> bytes:
        """The policy digest of the oldest period not closed yet."""
        return self.policies[0].digest

    def counts(self, policy: Policy, target_id: str, key: str | None = None) -> bool:
        """Whether, in `policy`'s periods, the target's outcomes probed under `key` (a
        held definition's key; None: the config's definition) count for this SLA."""
        if target_id not in policy.part_ids:
            return False
        held = self.held.get((policy.digest, target_id)) if self.held else None
        return (None if held is None else held.key) == key

    def held_until(self, key: str) -> int:
        """When the last period holding the definition `key` ends: the start of the
        policy after the last one holding it."""
        holding = {digest for (digest, _), h in self.held.items() if h.key == key}
        last = max((i for i, p in enumerate(self.policies) if p.digest in holding), default=0)
        after = self.policies[min(last + 1, len(self.policies) - 1)]
        return period_bounds(self.sla.period, after.start)[0]


def effective_grace(sla: Sla, parts: tuple[Target, ...], flush_interval: float) -> float:
    """Never close before the last probe of the period can have been stored."""
    longest = max((t.timeout for t in parts), default=0.0)
    return max(sla.grace, longest + flush_interval + 1.0)


def hold_definitions(rt: SlaRuntime, targets: Mapping[str, Target]) -> list[Unprobeable]:
    """Work out `rt.held` from its policies and the config's `targets` (by id); returns
    the held definitions that cannot be probed (their parts follow the config)."""
    held: dict[tuple[bytes, str], Held] = {}
    lost: list[Unprobeable] = []
    for policy in rt.policies:
        if policy.source is None:
            # stored without its document (by an older slamon): whether it names the
            # config's definitions can still be told from its digest
            parts = spec_targets(policy.slo, targets)
            if recover_document(policy.digest, [policy], parts) is None:
                lost.extend(Unprobeable(t, "its policy was stored without its document, and "
                                        "the definitions it names are not the config's")
                            for t in sorted(policy.part_ids))
            continue
        found, unprobeable = held_definitions(policy.source, policy.part_ids, targets)
        held.update(((policy.digest, h.target.id), h) for h in found)
        lost.extend(unprobeable)
    rt.held = held
    return lost


def ticks_per_bucket(
    after: float, before: float, interval: float, offset: float, resolution: int
) -> dict[int, int]:
    """Scheduled ticks k*interval+offset with after < t < before, counted per bucket."""
    first = math.floor((after - offset) / interval) + 1
    last = math.ceil((before - offset) / interval) - 1
    out: dict[int, int] = {}
    if last < first:
        return out
    k = first
    while k <= last:
        t = k * interval + offset
        bucket = int(t // resolution) * resolution
        # every tick up to the bucket's end in one step
        k_end = min(last, math.ceil((bucket + resolution - offset) / interval) - 1)
        if k_end < k:  # float edge: the tick sits exactly on the boundary
            k_end = k
        out[bucket] = out.get(bucket, 0) + (k_end - k + 1)
        k = k_end + 1
    return out


def schedule_changes(slas: Sequence[Sla], running: Mapping[str, str]) -> list[str]:
    """One line per SLA whose period schedule is not the one it runs under (`running`:
    SLA id -> `schedule_text`, from the tracker or from the store).

    Period ids, the stored periods and the on-chain registration all count in the
    schedule an SLA started with. Changed under the same id, the next period id would
    be read in the new numbering (a monthly SLA's period 682 becomes week 682, in
    1983): such a config must be refused."""
    errors = []
    for i, sla in enumerate(slas):
        was = running.get(sla.id)
        if was is not None and was != (now := schedule_text(sla)):
            errors.append(
                f"slas[{i}] ({sla.id}): the period and evidence_resolution cannot change "
                f"under the same SLA id: its periods are numbered by {was}, the config says "
                f"{now}; restore them, or add the new schedule as a new SLA (a contract "
                "registers an SLA with its schedule, so it needs a new registration too)")
    return errors


class SlaTracker:
    def __init__(
        self,
        config: Config,
        store: Store,
        log: Any,
        on_closed: ClosedHook | None = None,
        flush_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.log = log
        self.on_closed = on_closed
        self.flush_interval = flush_interval
        self.config = config
        self.slas: dict[str, SlaRuntime] = {}
        self._by_target: dict[str, list[SlaRuntime]] = {}
        self.closed_total: dict[tuple[str, str], int] = {}
        self.last_result: dict[str, PeriodResult] = {}
        #: SLAs a reload added, whose start and schedule the store has yet to get
        self._unsaved: dict[str, tuple[int, str]] = {}
        #: SLAs whose policies changed since the store last got them
        self._policies_dirty: set[str] = set()
        #: the schedule of every SLA the store has progress of, running or not (a running
        #: SLA's is its config's: a reload that would change it is refused)
        self._schedules: dict[str, str] = {}
        #: held definitions probed for the open periods (`held.py`): key -> the target
        #: as the policy holds it, and the SLAs whose periods count its probes
        self._held: dict[str, Target] = {}
        self._by_held: dict[str, list[SlaRuntime]] = {}
        #: the held definitions changed since `take_held_changed` last said so
        self._held_changed = False
        #: min of the runtimes' `closable_at`, None when to be worked out again (a
        #: reload's runtimes, a period closed)
        self._next_close: float | None = None
        self._unprobeable: set[tuple[str, Unprobeable]] = set()

    # -- set-up -----------------------------------------------------------
    async def start(
        self,
        sla_progress: dict[str, tuple[int, int]],
        start_at: float,
        schedules: Mapping[str, str] | None = None,
        policies: Mapping[str, str] | None = None,
        digests: PolicyDigests | None = None,
    ) -> None:
        """Resume each SLA where it stopped; a new SLA starts with the current period.

        `schedules` are the ones stored (the caller has refused a config that changes
        one: `schedule_changes`); the SLAs without one get theirs written. `policies`
        are the stored ones (`policies_text`): the periods not closed yet that began
        under a policy the config has since changed are judged by it. `digests`: the
        config's policy digests if worked out already (used only if made for this
        config object)."""
        stored = schedules or {}
        self._take(self._runtimes(self.config, sla_progress, start_at, dict(policies or {}),
                                  digests))
        new = [(rt.sla.id, rt.first_period, schedule_text(rt.sla)) for rt in self.slas.values()
               if rt.sla.id not in stored]
        await self.store.set_sla_starts(new)
        self._schedules = {**stored, **{sid: schedule for sid, _, schedule in new}}
        await self._save_policies()

    def _take(self, built: Built) -> None:
        self._next_close = None
        self.slas = built.slas
        self._by_target = built.by_target
        self._policies_dirty |= built.dirty
        self._index_held(built.unprobeable)

    def _index_held(self, unprobeable: Sequence[tuple[str, Unprobeable]] = ()) -> None:
        """Index the runtimes' held definitions; log those newly held, once each."""
        before = self._held
        held: dict[str, Target] = {}
        by_held: dict[str, list[SlaRuntime]] = {}
        for rt in self.slas.values():
            if not rt.held:
                continue
            for item in {h.key: h for h in rt.held.values()}.values():
                held.setdefault(item.key, item.target)
                by_held.setdefault(item.key, []).append(rt)
        self._held, self._by_held = held, by_held
        if held.keys() != before.keys() or any(held[k] is not before[k] for k in held):
            self._held_changed = True
        for key in sorted(held.keys() - before.keys()):
            rts = by_held[key]
            self.log.info("sla_definition_held", target=held[key].id, probe=key,
                          slas=[rt.sla.id for rt in rts[:10]], sla_count=len(rts),
                          until=max(rt.held_until(key) for rt in rts))
        for key in sorted(before.keys() - held.keys()):
            self.log.info("sla_definition_released", target=before[key].id, probe=key)
            self.store.batch.forget_progress(key)  # no period fills its ticks any more
        for sid, lost in unprobeable:
            if (sid, lost) in self._unprobeable:
                continue  # said at the reload that found it
            self._unprobeable.add((sid, lost))
            self.log.warning("sla_definition_unprobeable", sla=sid, target=lost.target_id,
                             reason=lost.reason)

    @property
    def held_count(self) -> int:
        """How many held definitions are probed."""
        return len(self._held)

    def held_targets(self) -> dict[str, Target]:
        """The held definitions to probe for the open periods, by probe key."""
        return dict(self._held)

    def take_held_changed(self) -> bool:
        """Whether the held definitions changed since the last call (the scheduler
        should be given `held_targets` again)."""
        changed, self._held_changed = self._held_changed, False
        return changed

    def _runtimes(
        self,
        config: Config,
        sla_progress: Mapping[str, tuple[int, int]],
        now: float,
        held: Mapping[str, list[Policy] | str],
        digests: PolicyDigests | None = None,
    ) -> Built:
        """Runtimes for `config`'s SLAs. `held`: the policies each SLA's unclosed periods
        run under; the config's policy joins them from the period after the one holding
        `now` (every period that began before the edit was seen keeps its rules).
        `digests`: the config's policy digests if worked out already (`policy_digests`).
        Reads nothing of `self` that changes: `prepare` runs it on a thread."""
        known = digests.for_config(config) if digests is not None else {}
        documents = digests.documents_for(config) if digests is not None else {}
        targets = {t.id: t for t in config.targets}
        slos = {s.id: s for s in config.slos}
        slas: dict[str, SlaRuntime] = {}
        by_target: dict[str, list[SlaRuntime]] = {}
        dirty: set[str] = set()
        made: dict[str, bytes] = {}
        unprobeable: list[tuple[str, Unprobeable]] = []
        # the period holding `now`, per distinct period spec: most SLAs share a few
        now_period: dict[PeriodSpec, int] = {}
        for sla in config.slas:
            now_n = now_period.get(sla.period)
            if now_n is None:
                now_n = now_period[sla.period] = period_index(sla.period, now)
            slo = slos[sla.slo]
            parts = tuple(targets[t] for t in slo.targets)
            if sla.id in sla_progress:
                last_closed, first = sla_progress[sla.id]
            else:
                first = now_n
                last_closed = first - 1
            rt = SlaRuntime(
                sla=sla,
                slo=slo,
                parts=parts,
                resolution=sla.resolution_s,
                grace=0.0,
                last_closed=last_closed,
                first_period=first,
            )
            digest = known.get(sla.id)
            text = None
            if digest is None:
                text = policy_json_2(sla, slo, config, targets)
                digest = keccak256(text)
            made[sla.id] = digest
            current = make_policy(last_closed + 1, sla, slo, config.maintenance, digest,
                                  spec_targets(slo, targets), documents.get(sla.id))
            before: list[Policy] | None = None
            # stored without their documents (by an older slamon): written again with the
            # config's, while it still describes them
            complete = True
            if sla.id in held:
                try:
                    before, complete = _stored(held[sla.id], current)
                except ValueError as exc:
                    # judged by the config's policy, as before policies were stored
                    self.log.warning("sla_policy_unreadable", sla=sla.id, reason=str(exc))
            policies = ([current] if not before
                        else with_config(before, current, last_closed, now_n))
            if policies != before or not complete:
                dirty.add(sla.id)
                # the config's policy is last (`with_config`); it is stored now, and
                # packing the text at hand spares building it again
                last = policies[-1]
                if text is not None and last.digest == digest and last.packed is None:
                    policies[-1] = dataclasses.replace(
                        last, packed=pack_document(text.decode("ascii")))
            rt.set_policies(policies)
            lost = hold_definitions(rt, targets) if len(policies) > 1 else []
            unprobeable.extend((sla.id, item) for item in lost)
            # the held policies' parts still in the config are probed and recorded too
            judged = sorted(t for t in {t for p in policies for t in p.part_ids} if t in targets)
            rt.grace = effective_grace(
                sla, (*(targets[t] for t in judged), *(h.target for h in rt.held.values())),
                self.flush_interval)
            rt.open_from = period_bounds(sla.period, last_closed + 1)[0]
            slas[sla.id] = rt
            for part in judged:
                by_target.setdefault(part, []).append(rt)
        return Built(slas, by_target, frozenset(dirty), made, tuple(unprobeable))

    def known_policies(self, sla_id: str) -> list[Policy]:
        """The policies of the SLA's unclosed periods, oldest first, then the one its last
        period closed in this run was judged by."""
        rt = self.slas.get(sla_id)
        if rt is None:
            return []
        return rt.policies + ([rt.closed_policy] if rt.closed_policy is not None else [])

    def schedule_errors(self, config: Config) -> list[str]:
        """`schedule_changes` of `config` against the schedules the SLAs run under, and
        those of SLAs a reload removed (their periods stay stored under their id)."""
        return schedule_changes(config.slas, self._schedules)

    def _snapshot(self) -> tuple[dict[str, tuple[int, int]], dict[str, list[Policy]]]:
        """What a build starts from: each SLA's progress and the policies it holds."""
        progress = {sid: (rt.last_closed, rt.first_period) for sid, rt in self.slas.items()}
        return progress, {sid: rt.policies for sid, rt in self.slas.items()}

    async def prepare(self, config: Config,
                      digests: PolicyDigests | None = None) -> PreparedBuild:
        """`apply_config(config, ...)`'s work, done on a thread: every SLA's policy digest
        and runtime, from a snapshot of the running ones. At 10,000 SLAs this held the
        event loop ~0.5 s per reload, delaying every probe due meanwhile.
        `apply_config` takes the result only while what it was built from holds.
        `digests`: `config`'s policy digests if worked out already (by the reload's child
        process); used only if made for this config object."""
        progress, held = self._snapshot()
        now = time.time()
        return await asyncio.to_thread(self._prepared, config, progress, held, now, digests)

    def _prepared(self, config: Config, progress: dict[str, tuple[int, int]],
                  held: dict[str, list[Policy]], now: float,
                  known: PolicyDigests | None = None) -> PreparedBuild:
        if known is not None and known.config is config:
            built = self._runtimes(config, progress, now, dict(held), known)
            digests = known
        else:
            # the build works out each digest from the document's text, and keeps the
            # text of those it is about to store: no document is built twice
            built = self._runtimes(config, progress, now, dict(held))
            digests = PolicyDigests(config, built.digests)
        # the build placed each edit after the period holding `now`: it holds until the
        # first period boundary after `now`
        valid_until = min(
            (float(period_bounds(rt.sla.period, period_index(rt.sla.period, now))[1])
             for rt in built.slas.values()), default=math.inf)
        return PreparedBuild(config, digests, progress, held, valid_until, built)

    def apply_config(self, config: Config, now: float,
                     prepared: PreparedBuild | None = None) -> None:
        """Reload: SLAs keep their progress; new ones start with the current period.

        The caller has refused a config for which `schedule_errors` is not empty.
        `prepared`: `prepare(config)`'s result. It is taken as built when it was built
        from this config and from the runtimes as they are (no period closed since, no
        period boundary passed); otherwise the runtimes are built here, with its
        digests (they depend on the config only)."""
        progress, held = self._snapshot()
        closed = {sid: rt.closed_policy for sid, rt in self.slas.items()}
        self.config = config
        if prepared is not None and prepared.current(config, now, progress, held):
            self._take(prepared.built)
        else:
            digests = prepared.digests if prepared is not None else None
            self._take(self._runtimes(config, progress, now, dict(held), digests))
        for sid, rt in self.slas.items():
            rt.closed_policy = closed.get(sid)
        added = {sid: (rt.first_period, schedule_text(rt.sla))
                 for sid, rt in self.slas.items() if sid not in progress}
        self._unsaved.update(added)
        for sid, (_, schedule) in added.items():
            self._schedules.setdefault(sid, schedule)

    def fill_gaps(
        self,
        progress: dict[str, float],
        start_at: float,
        offset_of: Callable[[Target], float],
    ) -> int:
        """Record as no data every tick slamon did not run while it was down.

        From the last stored tick (or the start of the first open period) up to
        the first tick of this run. Returns the number of ticks filled.
        """
        filled = 0
        latest: dict[str, float] = {}
        targets = {t.id: t for t in self.config.targets}
        # (progress row, target as probed, held key or None, last stored tick, SLAs)
        probes: list[tuple[str, Target, str | None, float, Sequence[SlaRuntime]]] = [
            (tid, targets[tid], None, progress.get(tid, -math.inf), runtimes)
            for tid, runtimes in self._by_target.items()]
        # a definition held since a restart on an edited file ran under the target's own
        # id until the stop
        probes += [(key, target, key, progress.get(key, progress.get(target.id, -math.inf)),
                    self._by_held.get(key, ())) for key, target in self._held.items()]
        for row, target, key, since, runtimes in probes:
            offset = offset_of(target)
            for rt in runtimes:
                counts = ticks_per_bucket(max(since, rt.open_from - 1e-6), start_at,
                                          target.interval, offset, rt.resolution)
                for bucket, n in counts.items():
                    if rt.counts(rt.policy_at(bucket), target.id, key):
                        self.store.add_leaf(rt.sla.id, target.id, bucket, 0, 0, n)
                        filled += n
                if counts:
                    last_k = math.ceil((start_at - offset) / target.interval) - 1
                    latest[row] = max(latest.get(row, -math.inf),
                                      last_k * target.interval + offset)
        for target_id, t in latest.items():
            if t > progress.get(target_id, -math.inf):
                self.store.batch.progress[target_id] = max(
                    t, self.store.batch.progress.get(target_id, -math.inf))
        # the rows of held probes released while stopped (a shared store holds other
        # instances' too: only those of targets configured here go)
        for row in progress:
            target_id, held, _ = row.partition("@")
            if held and row not in self._held and target_id in targets:
                self.store.batch.forget_progress(row)
        return filled

    # -- recording --------------------------------------------------------
    def record(self, target: Target, t: float, ok: bool, duration: float) -> None:
        for rt in self._by_target.get(target.id, ()):
            if t < rt.open_from:
                rt.late += 1  # its period is closed already: the root is final
                continue
            policy = rt.policy_at(t)
            if target.id not in policy.part_ids:
                continue
            if rt.held and (policy.digest, target.id) in rt.held:
                # that period counts the probes of the definition it holds (`counts`,
                # inlined: this runs per probe and SLA)
                continue
            bucket = int(t // rt.resolution) * rt.resolution
            good = 1 if is_good(policy.slo, ok, duration) else 0
            self.store.add_leaf(rt.sla.id, target.id, bucket, good, 1, 0)

    def record_missed(self, target: Target, t: float) -> None:
        for rt in self._by_target.get(target.id, ()):
            if t < rt.open_from:
                rt.late += 1
                continue
            if not rt.counts(rt.policy_at(t), target.id):
                continue
            bucket = int(t // rt.resolution) * rt.resolution
            self.store.add_leaf(rt.sla.id, target.id, bucket, 0, 0, 1)

    def record_held(self, key: str, target: Target, t: float, ok: bool | None,
                    duration: float = 0.0) -> None:
        """An outcome of the held definition `key` (ok None: a tick it could not run),
        for the periods whose policy holds it."""
        if key not in self._held:
            return  # released while in flight: no period counts it, no row to keep
        batch = self.store.batch
        if t > batch.progress.get(key, -math.inf):
            batch.progress[key] = t  # where a restart fills the held ticks from
        for rt in self._by_held.get(key, ()):
            if t < rt.open_from:
                rt.late += 1
                continue
            policy = rt.policy_at(t)
            if not rt.counts(policy, target.id, key):
                continue  # a period that judges the config's definition
            bucket = int(t // rt.resolution) * rt.resolution
            if ok is None:
                self.store.add_leaf(rt.sla.id, target.id, bucket, 0, 0, 1)
            else:
                good = 1 if is_good(policy.slo, ok, duration) else 0
                self.store.add_leaf(rt.sla.id, target.id, bucket, good, 1, 0)

    # -- closing ----------------------------------------------------------
    async def close_due(self, now: float | None = None) -> list[PeriodResult]:
        """Close every period whose end + grace has passed, oldest first per SLA.

        Periods due together (every SLA of a kind ends its period at the same
        instant) are read and recorded CLOSE_BATCH at a time: one call to the
        store's thread for their leaves and one transaction for their records."""
        now = time.time() if now is None else now
        if self._unsaved:
            unsaved, self._unsaved = self._unsaved, {}
            await self.store.set_sla_starts(
                [(sid, first, schedule) for sid, (first, schedule) in unsaved.items()])
        await self._save_policies()
        if self._next_close is None:
            # the earliest instant any period closes: until then, asked each second, no
            # SLA is (10,000 calls were ~2 ms of the loop, every second)
            self._next_close = min((rt.closable_at() for rt in self.slas.values()),
                                   default=math.inf)
        if now < self._next_close:
            return []
        self._next_close = None  # a period closes, or a runtime's close moves on
        due = (
            (rt, n)
            for rt in list(self.slas.values()) if now >= rt.closable_at()
            for n in list(due_periods(rt.sla.period, rt.last_closed, now, rt.grace))
        )
        closed: list[PeriodResult] = []
        flushed = False
        while chunk := list(itertools.islice(due, CLOSE_BATCH)):
            if not flushed:
                await self.store.flush()  # the periods' last leaves must be in
                flushed = True
            closed.extend(await self._close(chunk, now))
        return closed

    async def _save_policies(self) -> None:
        if not self._policies_dirty:
            return
        dirty, self._policies_dirty = self._policies_dirty, set()
        held = [(sid, list(self.slas[sid].policies)) for sid in sorted(dirty) if sid in self.slas]
        try:
            # the JSON on a thread: after an edit of every SLA it is ~0.1 s per 1,000 SLAs,
            # which held the event loop (policies are immutable; the list is a snapshot)
            rows = (await asyncio.to_thread(_policy_rows, held) if len(held) > _ROWS_INLINE
                    else _policy_rows(held))
            await self.store.set_sla_policies(rows)
        except BaseException:
            self._policies_dirty |= dirty  # written on the next attempt
            raise

    async def compute(self, rt: SlaRuntime, n: int) -> PeriodResult:
        """The result of period n from the leaves stored so far (final once closed)."""
        start, end = period_bounds(rt.sla.period, n)
        rows = await self.store.period_leaves(rt.sla.id, start, end)
        return self._result(rt.policy_of(n), start, end, rows)

    def _result(self, policy: Policy, start: int, end: int, rows: LeafRows) -> PeriodResult:
        leaves = {
            target: [Leaf(target, b, g, v, nd) for b, g, v, nd in items]
            for target, items in rows.items()
        }
        sla, slo = policy.sla, policy.slo
        maint = intervals_by_target(policy.maintenance, start, end, slo.targets, sla.id)
        return compute_period_result(
            sla, (start, end), leaves, maint, len(slo.targets) > 1,
            slo_objective=slo.objective,
        )

    def _judge(self, judged: list[tuple[str, int, Policy, str | None, int, int, LeafRows]],
               now: float) -> tuple[list[PeriodResult], list[ClosedPeriod]]:
        """The results of closing periods, and their records: pure, for a thread. Each
        comes with its policy's `policy_text`, or None to make it."""
        results: list[PeriodResult] = []
        records: list[ClosedPeriod] = []
        for sla_id, n, policy, text, start, end, rows in judged:
            result = self._result(policy, start, end, rows)
            results.append(result)
            records.append(ClosedPeriod(
                sla=sla_id,
                period=n,
                start=result.start,
                end=result.end,
                closed_at=now,
                result=result.to_json(),
                root=result.evidence_root,
                policy_digest=policy.digest,
                policy=policy_text(policy) if text is None else text,
            ))
        return results, records

    async def _close(self, due: list[tuple[SlaRuntime, int]], now: float) -> list[PeriodResult]:
        spans = [period_bounds(rt.sla.period, n) for rt, n in due]
        rows = await self.store.periods_leaves(
            [(rt.sla.id, start, end) for (rt, _), (start, end) in zip(due, spans, strict=True)])
        policies = [rt.policy_of(n) for rt, n in due]
        judged = [(rt.sla.id, n, policy, rt.known_text(policy), start, end, r)
                  for (rt, n), policy, (start, end), r
                  in zip(due, policies, spans, rows, strict=True)]
        # on a thread, which hands the GIL back to the loop within 0.5 ms (runtime's
        # loop_first): a period's evidence tree is ~20 hashes at 60 s, ~1,500 for a month
        # (~6 ms); a batch of 500 in one turn held the loop for 25 s at 1,000 monthly
        # SLAs' end, and every probe due meanwhile started that late
        results, records = await asyncio.to_thread(self._judge, judged, now)
        inserted = await self.store.close_periods(
            [(record, rt.first_period) for (rt, _), record in zip(due, records, strict=True)])
        targets: dict[str, Target] | None = None
        released = False
        pacer = Pacer()
        log = self.log.bind()  # each call through the lazy proxy binds anew
        for (rt, n), result, record, new, policy in zip(
                due, results, records, inserted, policies, strict=True):
            rt.last_closed = n
            rt.open_from = result.end
            rt.closed_policy = policy
            if record.policy is not None:
                rt.keep_text(policy, record.policy)
            if len(rt.policies) > 1 and rt.policies[1].start <= n + 1:
                # the policies of closed periods only are done with
                rt.set_policies(_from_period(rt.policies, n + 1))
                self._policies_dirty.add(rt.sla.id)
                if rt.held:
                    if targets is None:
                        targets = {t.id: t for t in self.config.targets}
                    hold_definitions(rt, targets)
                    released = True
            self.last_result[rt.sla.id] = result
            if not new:
                continue
            key = (rt.sla.id, result.verdict)
            self.closed_total[key] = self.closed_total.get(key, 0) + 1
            log.info(
                "period_closed",
                sla=rt.sla.id,
                period=n,
                verdict=result.verdict,
                sli_ppm=result.sli_ppm,
                good=result.good,
                valid=result.valid,
                no_data=result.no_data,
            )
            if self.on_closed is not None:
                await self.on_closed(policy, result, record)
            if pacer.due():
                await pacer.rest()
        if released:
            self._index_held()
        return results
