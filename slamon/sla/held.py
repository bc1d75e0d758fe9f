"""Target definitions an open SLA period still holds after the config changed them.

A period is judged whole by the policy in force when it began, and that policy's
document names what each part probes (URL, method, assertions, interval, timeout).
Were the config's edited definition probed for the rest of the period, the verdict
signed under the old digest would count outcomes of a probe the digest does not name,
and whoever edits the config could, late in a period, point a failing part at a
healthy endpoint. So until such a period closes, its held definition is probed too,
and only its outcomes count for that period; the config's definition serves the SLOs,
metrics and notifications at once, and the SLA's periods from the next one on.

Pure: no clock, no sockets, no event loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from pydantic import ValidationError

from slamon.config.targets import Target
from slamon.sla.policy import (
    HASHED_FIELDS,
    LOCAL_FILE_FIELDS,
    URL_FIELDS,
    canonical_json,
    target_document,
)
from slamon.util.keccak import keccak256
from slamon.util.redact import REDACTED

#: kinds whose outcome is not a probe slamon runs (a heartbeat is pushed to it): they
#: follow the config, held or not
UNPROBED_KINDS = frozenset({"heartbeat"})
#: what `repr` of a float looks like in a policy document
_FLOAT_TEXT = re.compile(r"-?(?:\d+\.\d+(?:e[+-]?\d+)?|\d+e[+-]?\d+|inf)")


def held_key(target_id: str, document: Mapping[str, Any]) -> str:
    """The name a held definition is probed under: the target's id and the first 8 bytes
    of the keccak256 of its document. `@` is not allowed in target ids, so it never
    names a configured target; SLAs holding the same definition share one probe."""
    return f"{target_id}@{keccak256(canonical_json(dict(document)))[:8].hex()}"


@dataclass(frozen=True, slots=True)
class Held:
    """One part's definition, as an open period's policy names it and the config no
    longer does."""

    key: str
    target: Target


@dataclass(frozen=True, slots=True)
class Unprobeable:
    """A held definition that cannot be probed: its part follows the config's."""

    target_id: str
    reason: str


def _with_credentials(shown: str, mine: str | None) -> str:
    """A document's URL (`document_url`) with what it hides taken from the config's URL
    `mine`: its userinfo, and each hidden query value from `mine`'s next item of that
    name. Raises ValueError when `mine` lacks something hidden (the URL made again
    would probe the placeholder)."""
    if REDACTED not in shown:
        return shown
    missing = ValueError("the document hides URL credentials the config no longer has")
    doc = urlsplit(shown)
    conf = urlsplit(mine or "")
    netloc = doc.netloc
    if "@" in netloc:
        if "@" not in conf.netloc:
            raise missing
        netloc = f"{conf.netloc.rpartition('@')[0]}@{netloc.rpartition('@')[2]}"
    values: dict[str, list[str]] = {}
    for item in conf.query.split("&") if conf.query else ():
        values.setdefault(item.partition("=")[0], []).append(item)
    items = []
    for item in doc.query.split("&") if doc.query else ():
        key, _, value = item.partition("=")
        if value != REDACTED:
            items.append(item)
        elif theirs := values.get(key):
            items.append(theirs.pop(0))
        else:
            raise missing
    return urlunsplit(SplitResult(doc.scheme, netloc, doc.path, "&".join(items),
                                  doc.fragment))


def _rebuild(doc: Mapping[str, Any], like: Target | None) -> Target:
    """The target a schema-2 document's `target_specs` entry describes. The values the
    document hides (header values, URL credentials, the request body, what a TCP
    dialogue sends, a certificate file's path) are taken from
    `like`, the config's definition of that id, where their hidden forms agree."""
    kind = doc["kind"]
    spec = dict(doc["spec"])
    mine: dict[str, Any] = {}
    if like is not None and like.kind == kind and getattr(like, kind) is not None:
        mine = getattr(like, kind).model_dump(mode="json")
    if "headers" in spec:
        theirs = mine.get("headers") or {}
        if not set(spec["headers"]) <= set(theirs):
            raise ValueError("the document hides a header value the config no longer has")
        spec["headers"] = {name: theirs[name] for name in spec["headers"]}
    # each hidden value is taken from the config's definition; the document made again
    # from the result is checked against the stored one below
    for name in HASHED_FIELDS:
        if spec.get(name) is not None and mine.get(name) is not None:
            spec[name] = mine[name]
    for name in URL_FIELDS:
        if spec.get(name) is not None:
            spec[name] = _with_credentials(spec[name], mine.get(name))
    steps, my_steps = spec.get("query_response"), mine.get("query_response")
    if steps and my_steps and len(steps) == len(my_steps):
        spec["query_response"] = [
            {**step, "send": theirs.get("send")} if step.get("send") is not None else step
            for step, theirs in zip(steps, my_steps, strict=True)]
    for name in LOCAL_FILE_FIELDS:
        if name in spec:
            spec[name] = mine.get(name) if spec[name] else None
    for secret in ("token", "token_file"):
        if secret in mine:
            spec[secret] = mine[secret]
    data = {"id": doc["id"], "kind": kind, "interval": float(doc["interval"]),
            "timeout": float(doc["timeout"])}
    # the document writes every float as its shortest text ("0.5"), which a duration
    # field refuses without a unit: read such text back as a number, unless that is
    # what makes the spec invalid (a string field holding "1.5")
    numbers = {k: float(v) if isinstance(v, str) and _FLOAT_TEXT.fullmatch(v) else v
               for k, v in spec.items()}
    failure: ValidationError | None = None
    for attempt in (numbers, spec):
        try:
            target = Target.model_validate({**data, kind: attempt})
            break
        except ValidationError as exc:
            failure = exc
    else:
        assert failure is not None
        raise ValueError(f"not a valid target ({failure.error_count()} errors)")
    if target_document(target) != doc:
        raise ValueError("the document hides a value the config no longer has (a header "
                         "value, URL credentials, the request body, what a TCP dialogue "
                         "sends or a certificate file)")
    return target


def _documents(source: tuple[Target, ...] | str) -> dict[str, tuple[dict[str, Any],
                                                                     Target | None]]:
    """Each part's document (and its model, when the source has models), by id."""
    if isinstance(source, str):
        specs = json.loads(source).get("target_specs") or []
        return {str(d["id"]): (d, None) for d in specs}
    return {t.id: (target_document(t), t) for t in source}


def held_definitions(
    source: tuple[Target, ...] | str,
    part_ids: Iterable[str],
    targets: Mapping[str, Target],
) -> tuple[list[Held], list[Unprobeable]]:
    """The parts whose definition in a policy's `source` (the models it hashed, or its
    document as stored) is not the config's (`targets` by id): a changed definition, or
    a part the config no longer has. A label-only edit holds nothing (labels are in no
    document)."""
    held: list[Held] = []
    lost: list[Unprobeable] = []
    # the common case, nothing edited: the config hands on unchanged models
    if not isinstance(source, str) and all(targets.get(t.id) is t for t in source):
        return [], []
    try:
        documents = _documents(source)
    except (ValueError, TypeError, KeyError, AttributeError):
        return [], [Unprobeable(t, "its policy document cannot be read") for t in part_ids]
    for tid in sorted(part_ids):
        entry = documents.get(tid)
        if entry is None:
            continue  # not in the config when the policy began: no definition to hold
        doc, model = entry
        now = targets.get(tid)
        if now is not None and (now is model or target_document(now) == doc):
            continue
        if doc.get("kind") in UNPROBED_KINDS:
            continue
        if model is None:
            try:
                model = _rebuild(doc, now)
            except (ValueError, TypeError, KeyError) as exc:
                lost.append(Unprobeable(tid, str(exc)))
                continue
        held.append(Held(held_key(tid, doc), model))
    return held, lost
