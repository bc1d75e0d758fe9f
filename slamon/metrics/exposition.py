"""/metrics rendered in pieces, yielding to the event loop between turns of a few of them.

A 10,000-target exposition is seconds of CPU; done in one go on the event loop
it delays every probe due meanwhile (and a stall longer than a probe timeout
would look like failures). A thread does not help: under the GIL the loop
thread then waits for the GIL on every wake-up. The text equals
prometheus_client's: samples are grouped per family across pieces.
"""

from __future__ import annotations

from collections.abc import Iterator

from slamon.metrics.collector import ListedRegistry, SlamonCollector
from slamon.metrics.text import Exposition
from slamon.util.pace import Pacer

#: targets (or SLOs) in one piece: the event loop may run between two pieces when the
#: pacer says so. A fixed 100 per turn held the loop ~5 ms a turn on a slow host at
#: 10,000 targets (10 with a profiler on), and made most of the probes that started
#: more than 10 ms late
CHUNK = 25


async def render_chunks(
    registry: ListedRegistry, collector: SlamonCollector, chunk: int = CHUNK,
    pacer: Pacer | None = None,
) -> Iterator[bytes]:
    """The exposition, family by family (samples of a family must stay together)."""
    out = Exposition()
    pacer = pacer or Pacer()
    for piece in collector.slices(chunk):
        piece(out)
        if pacer.due():
            await pacer.rest()
    # the other collectors (process metrics) are small: in one go
    for other in registry.collectors:
        if other is not collector:
            out.add_all(other.collect())
    return out.chunks()


async def render(
    registry: ListedRegistry, collector: SlamonCollector, chunk: int = CHUNK,
    pacer: Pacer | None = None,
) -> bytes:
    return b"".join(await render_chunks(registry, collector, chunk, pacer))
