"""/metrics rendered in pieces, yielding to the event loop between them.

A 10,000-target exposition is seconds of CPU; done in one go on the event loop
it delays every probe due meanwhile (and a stall longer than a probe timeout
would look like failures). A thread does not help: under the GIL the loop
thread then waits for the GIL on every wake-up. The text equals
prometheus_client's: samples are grouped per family across pieces.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric

from slamon.metrics.collector import ListedRegistry, SlamonCollector

#: targets (or SLOs) rendered between two yields to the event loop
CHUNK = 100
_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}


def _value(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if v != v:
        return "NaN"
    return repr(float(v))


def _escape(v: str) -> str:
    if "\\" in v or '"' in v or "\n" in v:
        return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


class _Text:
    """Families in first-seen order, their samples appended across pieces."""

    def __init__(self) -> None:
        self.heads: dict[str, str] = {}
        self.bodies: dict[str, list[bytes]] = {}

    def add_all(self, metrics: Iterable[Metric]) -> None:
        for metric in metrics:
            self.add(metric)

    def add(self, metric: Metric) -> None:
        name, mtype = metric.name, metric.type
        if mtype == "counter":
            name += "_total"
        elif mtype == "info":
            name += "_info"
        lines = self.bodies.get(name)
        if lines is None:
            doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
            self.heads[name] = f"# HELP {name} {doc}\n# TYPE {name} {_TYPES.get(mtype, mtype)}\n"
            lines = self.bodies[name] = []
        parts: list[str] = []
        append = parts.append
        for s in metric.samples:
            if s.labels:
                inner = ",".join([f'{k}="{_escape(v)}"' for k, v in s.labels.items()])
                append(f"{s.name}{{{inner}}} {_value(s.value)}\n")
            else:
                append(f"{s.name} {_value(s.value)}\n")
        # one bytes object per metric and slice, not one str per sample: at 10,000
        # targets ~470k small strings were ~60 MB of transient heap
        lines.append("".join(parts).encode())

    def chunks(self) -> Iterator[bytes]:
        """One piece per family, so a response can stream without one big copy."""
        for name, head in self.heads.items():
            yield head.encode() + b"".join(self.bodies.pop(name))


async def render_chunks(
    registry: ListedRegistry, collector: SlamonCollector, chunk: int = CHUNK
) -> Iterator[bytes]:
    """The exposition, family by family (samples of a family must stay together)."""
    out = _Text()
    for part in collector.slices(chunk):
        out.add_all(part())
        await asyncio.sleep(0)
    # the other collectors (process metrics) are small: in one go
    for other in registry.collectors:
        if other is not collector:
            out.add_all(other.collect())
    return out.chunks()


async def render(
    registry: ListedRegistry, collector: SlamonCollector, chunk: int = CHUNK
) -> bytes:
    return b"".join(await render_chunks(registry, collector, chunk))
