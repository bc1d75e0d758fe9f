"""/metrics rendered in pieces, yielding to the event loop between them.

A 10,000-target exposition is seconds of CPU; done in one go on the event loop
it delays every probe due meanwhile (and a stall longer than a probe timeout
would look like failures). A thread does not help: under the GIL the loop
thread then waits for the GIL on every wake-up. The text equals
prometheus_client's: samples are grouped per family across pieces.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Protocol

from slamon.metrics.collector import ListedRegistry, SlamonCollector
from slamon.metrics.text import Exposition

#: targets (or SLOs) rendered between two yields to the event loop
CHUNK = 100
#: bytes sent (and gzipped) between two yields to the event loop: a socket that takes
#: a whole 10 MB exposition at once would otherwise hold the loop for its every copy
PIECE = 256 * 1024


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


async def paced(chunks: Iterable[bytes], piece: int = PIECE) -> AsyncIterator[memoryview]:
    """The chunks in parts of at most `piece` bytes, with a yield to the event loop each
    time `piece` bytes have gone: writing to a socket that takes everything (loopback,
    a fast reader) never waits, so an exposition of 10,000 targets went out in one turn
    of the loop and delayed the probes due meanwhile (docs/benchmarks.md)."""
    since_yield = 0
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), piece):
            part = view[start : start + piece]
            yield part
            since_yield += len(part)
            if since_yield >= piece:
                since_yield = 0
                await asyncio.sleep(0)


class Packer(Protocol):
    """What `gzipped` needs of a compressor: zlib's and ISA-L's `compressobj` both fit."""

    def compress(self, data: bytes | memoryview, /) -> bytes: ...

    def flush(self) -> bytes: ...


def gzip_packer(fast: bool = True) -> Packer:
    """A compressor writing one gzip stream at its fastest useful level.

    ISA-L (the `isal` package) when it is installed and `fast`: the same gzip format at
    a sixth of zlib's CPU and no larger (10,000 targets, 9.8 MB: 7 against 44-46 ms, 1.00
    against 1.03 MB; docs/benchmarks.md). Otherwise zlib at level 1, which still
    compresses exposition text ~9x at a third of level 6's CPU."""
    if fast:
        try:
            from isal import isal_zlib
        except ImportError:  # a platform without its wheel: zlib gives the same stream format
            pass
        else:
            return isal_zlib.compressobj(1, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
    return zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing


async def gzipped(parts: AsyncIterable[bytes | memoryview], fast: bool = True
                  ) -> AsyncIterator[bytes]:
    """The parts as one gzip stream (`gzip_packer`)."""
    packer = gzip_packer(fast)
    async for part in parts:
        out = packer.compress(part)
        if out:
            yield out
    yield packer.flush()
