"""A closed SLA period is final: whatever is edited afterwards (objective, targets, parts,
maintenance, sample minimum, grace, descriptions), its stored result, evidence root and
policy digest stay byte for byte, also after a restart; an edit that changes how periods are
counted gives the next period to close a new policy digest. Real StateStore (SQLite) and
SlaTracker, periods closed deterministically."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from slamon.config.loader import load_config
from slamon.sla.policy import policy_digest_for
from slamon.store.sqlite import StateStore
from slamon.wallclock import utc_iso
from tests.test_api import RES, P, make_state

Edit = Callable[[str], str]


def _maintenance(text: str) -> str:
    """A window over the first half of the (closed) period P, for the api target."""
    start, end = utc_iso(P * 60), utc_iso(P * 60 + 30)
    return text + textwrap.dedent(f"""
        maintenance:
          - {{id: m1, kind: once, once: {{start: "{start}", end: "{end}"}}, targets: [api]}}
    """)


EDITS: dict[str, tuple[Edit, bool]] = {
    # name: (edit of the config text, whether it changes how periods are counted)
    "objective": (lambda t: t.replace("objective: 0.9,", "objective: 0.95,"), True),
    "slo description": (lambda t: t.replace("window: 1h}", "window: 1h, description: x}"),
                        False),
    "target url": (lambda t: t.replace('9/"}}', '9/moved"}}', 1), True),
    "parts": (lambda t: t.replace("targets: [web, api]", "targets: [web]"), True),
    "maintenance": (_maintenance, True),
    "grace": (lambda t: t.replace("grace: 1s", "grace: 2s"), False),
}


@pytest.mark.parametrize("name", list(EDITS))
async def test_closed_periods_are_final_whatever_is_edited(tmp_path: Path, name: str) -> None:
    edit, counts = EDITS[name]
    state = await make_state(tmp_path)
    store, tracker = state.store, state.tracker
    before = await store.periods("gold")
    assert [c.period for c in before] == [P, P + 1]
    old_digest = before[-1].policy_digest

    text = state.config_path.read_text()
    edited = edit(text)
    assert edited != text, f"the {name} edit did not apply"
    state.config_path.write_text(edited)
    config = load_config(state.config_path)
    tracker.apply_config(config, state.now)
    assert await store.periods("gold") == before
    if name in ("maintenance", "parts"):
        # recomputed under the edit, period P would read differently: the stored one stays
        recomputed = await tracker.compute(tracker.slas["gold"], P)
        assert recomputed.to_json() != before[0].result
    # a period closed again (a second daemon, a replayed close) cannot overwrite it
    forged = dataclasses.replace(before[0], result={**before[0].result, "good": 0},
                                 root=b"\x01" * 32)
    assert await store.close_period(forged, P) is False
    assert await store.periods("gold") == before

    # the open period closes under the edited config, with its digest
    for b in range((P + 2) * 60 + RES, (P + 3) * 60, RES):
        store.add_leaf("gold", "web", b, 1, 1, 0)
        store.add_leaf("gold", "api", b, 1, 1, 0)
    closed = await tracker.close_due(now=(P + 3) * 60 + 5)
    assert [r.period_id for r in closed] == [P + 2]
    after = await store.periods("gold")
    assert after[:2] == before
    sla, slo = config.slas[0], config.slos[0]
    new_digest = policy_digest_for(sla, slo, config)
    assert after[2].policy_digest == new_digest
    assert (new_digest != old_digest) is counts

    # and after a restart (the file reopened) the closed periods are the same
    await store.close()
    reopened = StateStore(config.state.resolved_path())
    await reopened.open()
    try:
        assert await reopened.periods("gold") == after
    finally:
        await reopened.close()
