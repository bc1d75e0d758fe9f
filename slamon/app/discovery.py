"""Discovery sources at run time: `file_sd` files watched, `http_sd` URLs polled.

Each source keeps the targets of its last good read. A file that is half
written, a body that is not JSON, an HTTP error or a timeout changes nothing:
the previous targets stay (as Prometheus does), the failure is logged and
counted. A change of the targets calls `on_change`, and the daemon applies the
new running config like a reload, so every target that is still there keeps
its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from slamon import __version__
from slamon.app import runtime
from slamon.config.discovery import (
    Discovery,
    EntryError,
    FileSd,
    Group,
    HttpSd,
    parse_groups,
    render,
)
from slamon.config.targets import Target
from slamon.util.schema import PathError, format_path

#: at most this many bad entries are logged one by one per read (the count is a metric)
MAX_ENTRY_LOGS = 20
#: a body or file larger than this is refused (a runaway inventory must not eat the memory)
MAX_DOCUMENT = 64 * 1024 * 1024

Signature = tuple[tuple[str, int, int, int], ...]


class Source:
    """One discovery source: its last good targets and its counters."""

    def __init__(self, spec: Discovery, log: Any, on_change: Callable[[], None]) -> None:
        self.spec = spec
        self.log = log.bind(discovery=spec.id)
        self.on_change = on_change
        self.targets: list[Target] = []
        self.failures = 0
        self.invalid_entries = 0
        self.last_success: float | None = None
        #: (entry, group labels) -> target: an unchanged entry is not rendered again
        self._rendered: dict[tuple[str, tuple[tuple[str, str], ...]], Target] = {}
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"discovery-{self.spec.id}")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.spec.source.refresh_interval)
            await self.refresh()

    def _fail(self, event: str, **kw: Any) -> None:
        self.failures += 1
        self.log.warning(event, kept_targets=len(self.targets), **kw)

    def _accept(self, groups: Sequence[Group]) -> None:
        """Render every entry; a bad one is left out and named, the others stay."""
        rendered: dict[tuple[str, tuple[tuple[str, str], ...]], Target] = {}
        targets: list[Target] = []
        ids: set[str] = set()
        bad = 0
        for group in groups:
            for entry in group.targets:
                key = (entry, group.labels)
                if key in rendered:
                    continue
                target = self._rendered.get(key)
                if target is None:
                    try:
                        target = render(self.spec, group, entry)
                    except EntryError as exc:
                        bad += 1
                        if bad <= MAX_ENTRY_LOGS:
                            self.log.warning("discovery_entry_invalid", entry=entry,
                                             error=str(exc))
                        continue
                if target.id in ids:
                    bad += 1
                    if bad <= MAX_ENTRY_LOGS:
                        self.log.warning("discovery_entry_invalid", entry=entry,
                                         error=f"target id {target.id!r} repeats an earlier "
                                               "entry; set template.id to tell them apart")
                    continue
                ids.add(target.id)
                rendered[key] = target
                targets.append(target)
        self._rendered = rendered
        self.invalid_entries = bad
        self.last_success = time.time()
        if targets != self.targets:
            self.targets = targets
            self.log.info("discovery_updated", targets=len(targets), invalid_entries=bad)
            self.on_change()


class FileSource(Source):
    """Files re-read when a file appears, disappears or changes (size, mtime, inode)."""

    def __init__(self, spec: Discovery, log: Any, on_change: Callable[[], None]) -> None:
        super().__init__(spec, log, on_change)
        assert isinstance(spec.source, FileSd)
        self.file_sd: FileSd = spec.source
        self._signature: Signature | None = None
        #: per file, the groups of its last good read
        self._groups: dict[str, list[Group]] = {}

    def _paths(self) -> list[str]:
        out: list[str] = []
        for pattern in self.file_sd.files:
            # the loader made paths absolute (relative to the config file)
            out.extend(sorted(glob.glob(str(Path(pattern).expanduser()))))
        return list(dict.fromkeys(out))

    def _stat(self) -> tuple[list[str], Signature]:
        paths, sig = self._paths(), []
        for name in paths:
            try:
                st = Path(name).stat()
            except OSError:
                continue
            sig.append((name, st.st_mtime_ns, st.st_size, st.st_ino))
        return paths, tuple(sig)

    async def refresh(self) -> None:
        paths, signature = await runtime.in_daemon_thread(self._stat, "discovery-stat")
        if signature == self._signature:
            return
        self._signature = signature
        groups: dict[str, list[Group]] = {}
        for name in paths:
            try:
                groups[name] = await runtime.in_daemon_thread(
                    partial(_read_groups, name), "discovery-read")
            except _DocumentError as exc:
                self._fail("discovery_failed", file=name, error=str(exc))
                if name in self._groups:
                    groups[name] = self._groups[name]
        self._groups = groups
        self._accept([g for name in paths for g in groups.get(name, ())])


class HttpSource(Source):
    """Prometheus' HTTP SD contract: GET, 200, a JSON list of target groups."""

    def __init__(self, spec: Discovery, log: Any, on_change: Callable[[], None]) -> None:
        super().__init__(spec, log, on_change)
        assert isinstance(spec.source, HttpSd)
        self.http_sd: HttpSd = spec.source
        self._session: Any = None

    async def refresh(self) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": f"slamon/{__version__}",
                         "X-Prometheus-Refresh-Interval-Seconds":
                             f"{self.http_sd.refresh_interval:g}"},
            )
        sd = self.http_sd
        try:
            async with self._session.get(
                sd.url, headers=sd.headers, ssl=None if sd.tls_verify else False,
                timeout=aiohttp.ClientTimeout(total=sd.timeout), allow_redirects=True,
            ) as response:
                if response.status != 200:
                    self._fail("discovery_failed", error=f"HTTP status {response.status}")
                    return
                body = await response.content.read(MAX_DOCUMENT + 1)
        except TimeoutError:
            self._fail("discovery_failed", error=f"no answer within {sd.timeout:g}s")
            return
        except aiohttp.ClientError as exc:
            # the URL is left out: it may carry credentials
            self._fail("discovery_failed", error=type(exc).__name__)
            return
        try:
            groups = _groups_of(body, "json", "response")
        except _DocumentError as exc:
            self._fail("discovery_failed", error=str(exc))
            return
        self._accept(groups)

    async def close(self) -> None:
        await super().close()
        if self._session is not None:
            await self._session.close()
            self._session = None


class _DocumentError(Exception):
    pass


def _read_groups(name: str) -> list[Group]:
    try:
        with open(name, "rb") as f:
            data = f.read(MAX_DOCUMENT + 1)
    except OSError as exc:
        raise _DocumentError(exc.strerror or type(exc).__name__) from None
    return _groups_of(data, "json" if name.endswith(".json") else "yaml", name)


def _groups_of(data: bytes, fmt: str, what: str) -> list[Group]:
    if len(data) > MAX_DOCUMENT:
        raise _DocumentError(f"larger than {MAX_DOCUMENT // (1024 * 1024)} MiB")
    try:
        doc = json.loads(data) if fmt == "json" else yaml.safe_load(data)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _DocumentError(f"not valid {fmt.upper()}: {first}") from None
    if doc is None and fmt == "yaml":
        doc = []
    try:
        return parse_groups(doc)
    except PathError as exc:
        raise _DocumentError("; ".join(
            f"{format_path(loc) or what}: {msg}" for loc, msg in exc.items[:5])) from None


class DiscoveryManager:
    """Every source of the config; `discovered()` is what the running config adds."""

    def __init__(self, log: Any, on_change: Callable[[], None]) -> None:
        self.log = log
        self.on_change = on_change
        self.sources: dict[str, Source] = {}
        self._started = False

    def _make(self, spec: Discovery) -> Source:
        if spec.file_sd is not None:
            return FileSource(spec, self.log, self.on_change)
        return HttpSource(spec, self.log, self.on_change)

    async def start(self, specs: Sequence[Discovery]) -> None:
        """First read of every source (each bounded by its own timeout), then the loops."""
        self.sources = {spec.id: self._make(spec) for spec in specs}
        await asyncio.gather(*(s.refresh() for s in self.sources.values()))
        for source in self.sources.values():
            source.start()
        self._started = True

    async def update(self, specs: Sequence[Discovery]) -> None:
        """A reload: sources whose definition is unchanged keep running and keep their
        targets; removed ones stop; new ones are read once before they count."""
        old = self.sources
        keep = {s.id: old[s.id] for s in specs if s.id in old and old[s.id].spec == s}
        for sid, source in old.items():
            if keep.get(sid) is not source:
                await source.close()
        fresh = {s.id: self._make(s) for s in specs if s.id not in keep}
        await asyncio.gather(*(s.refresh() for s in fresh.values()))
        for source in fresh.values():
            source.start()
        self.sources = {s.id: keep.get(s.id) or fresh[s.id] for s in specs}

    def discovered(self) -> dict[str, list[Target]]:
        return {sid: source.targets for sid, source in self.sources.items()}

    async def stop(self) -> None:
        for source in self.sources.values():
            await source.close()

    def metrics(self) -> Iterator[Metric]:
        if not self.sources:
            return
        targets = GaugeMetricFamily("slamon_discovery_targets",
                                    "Targets a discovery source holds now", labels=["discovery"])
        invalid = GaugeMetricFamily(
            "slamon_discovery_invalid_entries",
            "Entries of the last good read that could not become a target", labels=["discovery"])
        failures = CounterMetricFamily(
            "slamon_discovery_failures",
            "Reads that failed (previous targets kept)", labels=["discovery"])
        last = GaugeMetricFamily(
            "slamon_discovery_last_success_timestamp_seconds",
            "When a discovery source was last read successfully", labels=["discovery"])
        for sid, source in self.sources.items():
            targets.add_metric([sid], len(source.targets))
            invalid.add_metric([sid], source.invalid_entries)
            failures.add_metric([sid], source.failures)
            if source.last_success is not None:
                last.add_metric([sid], source.last_success)
        yield from (targets, invalid, failures, last)
