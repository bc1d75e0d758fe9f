"""The Prometheus text exposition (format 0.0.4), assembled family by family.

A leaf module (it imports nothing from slamon) so that the collector, which
writes its largest families straight as text, and the renderer, which slices
and streams, share one writer without an import loop.

Why text rather than prometheus_client `Metric` objects for the big families:
at 10,000 targets an exposition holds ~300k samples, and building a `Sample`
per value, then validating and escaping every label name of every sample, was
most of a scrape's CPU. Label sets that never change (a target's or an SLO's)
are escaped once and kept; only values are formatted per scrape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric

_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}


def value_text(v: float) -> str:
    """A sample value as Prometheus parses it (integers without a decimal point)."""
    if type(v) is int:
        return str(v)
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if v != v:
        return "NaN"
    return repr(float(v))


def escape(v: str) -> str:
    """A label value, escaped for use between double quotes."""
    if "\\" in v or '"' in v or "\n" in v:
        return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


def _help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


class Exposition:
    """Families in first-seen order, their samples appended across pieces.

    Prometheus needs every sample of a family together, while a sliced render
    produces a few hundred targets' worth of every family per piece: each piece
    appends its lines to the family's body, and `chunks` emits family by family.
    """

    def __init__(self) -> None:
        self.heads: dict[str, str] = {}
        self.bodies: dict[str, list[bytes]] = {}

    def add_all(self, metrics: Iterable[Metric]) -> None:
        for metric in metrics:
            self.add(metric)

    def add(self, metric: Metric) -> None:
        """A prometheus_client metric family (small families: process, oracle, SLA)."""
        name, mtype = metric.name, metric.type
        if mtype == "counter":
            name += "_total"
        elif mtype == "info":
            name += "_info"
        parts: list[str] = []
        append = parts.append
        for s in metric.samples:
            if s.labels:
                inner = ",".join([f'{k}="{escape(v)}"' for k, v in s.labels.items()])
                append(f"{s.name}{{{inner}}} {value_text(s.value)}\n")
            else:
                append(f"{s.name} {value_text(s.value)}\n")
        self.family(name, metric.documentation, _TYPES.get(mtype, mtype), parts)

    def family(self, name: str, doc: str, mtype: str, lines: list[str]) -> None:
        """Sample lines (each ending in a newline) of the family `name`, as exposed."""
        body = self.bodies.get(name)
        if body is None:
            self.heads[name] = f"# HELP {name} {_help(doc)}\n# TYPE {name} {mtype}\n"
            body = self.bodies[name] = []
        # one bytes object per family and piece, not one str per sample: at 10,000
        # targets ~470k small strings were ~60 MB of transient heap
        body.append("".join(lines).encode())

    def chunks(self) -> Iterator[bytes]:
        """One piece per family, so a response can stream without one big copy."""
        for name, head in self.heads.items():
            yield head.encode() + b"".join(self.bodies.pop(name))

    def text(self) -> str:
        return b"".join(self.chunks()).decode()
