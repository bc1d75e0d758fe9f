"""/metrics rendered in pieces, yielding to the event loop between them.

A 10,000-target exposition is seconds of CPU; done in one go on the event loop
it delays every probe due meanwhile (and a stall longer than a probe timeout
would look like failures). A thread does not help: under the GIL the loop
thread then waits for the GIL on every wake-up. The text equals
prometheus_client's: samples are grouped per family across pieces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from slamon.metrics.collector import ListedRegistry, SlamonCollector
from slamon.metrics.text import Exposition

#: targets (or SLOs) rendered between two yields to the event loop
CHUNK = 100


async def render_chunks(
    registry: ListedRegistry, collector: SlamonCollector, chunk: int = CHUNK
) -> Iterator[bytes]:
    """The exposition, family by family (samples of a family must stay together)."""
    out = Exposition()
    for piece in collector.slices(chunk):
        piece(out)
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
