"""A cheap /metrics: the per-subject series kept rendered between scrapes, the rest rendered fresh.

At 10,000 runs a scrape is about 200,000 lines, nearly all per-subject series (each run's cost,
tokens, info, read state and rules; monitor.exporter.run_series). Rendering them all on every scrape,
on the event loop the polls run on, took seconds and starved the polls. So:

- Each subject's sample lines are kept as bytes, with the figures they were rendered from. A scrape
  re-renders only the subjects `RuntimeState.changes` says changed since the last one, and not even
  those whose figures came out the same (a reading whose totals did not move). The re-rendering yields
  to the event loop every `slice_seconds`, so a poll waits at most one slice, whatever the number of
  runs; each subject is rendered in one go, so its lines always agree with each other.
- The families' text (headers and lines, per exposition format) is re-assembled only when a subject
  changed, and its gzip is computed in a worker thread (zlib does not hold the GIL), stopped with a
  sync flush: the compressor's state is kept, so each scrape appends the small part and finishes it.
- The small families (the wallet, the monitor's own health and counters, API request metrics,
  `process_*`) are a few hundred lines and change all the time: they are rendered on every scrape by
  prometheus_client, after the per-subject ones.

The bytes are the same as `generate_latest(registry)` (or OpenMetrics') for the same state; the tests
prove it over random sequences of changes.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import UNDERSCORES
from prometheus_client.registry import Collector

from monitor.exporter.collector import MonitorRegistry
from monitor.exporter.live import RuntimeState
from monitor.exporter.run_series import SubjectFigures, SubjectLines, figures_of, headers, names_under

# How long re-rendering runs on the loop before it lets other tasks (polls) in.
SLICE_SECONDS = 0.005
# gzip level 1: about a tenth of the CPU of level 6 for about 1.3x the bytes (bench/scrape_bench.py).
GZIP_LEVEL = 1
_CHECK_EVERY = 32  # subjects rendered between two looks at the clock

Encoder = Callable[[Collector], bytes]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Scrape:
    """One answer to /metrics: the body in parts (written one after the other, never joined)."""

    parts: tuple[bytes, ...]
    content_type: str
    content_encoding: str | None  # "gzip", or None for identity

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)

    @property
    def size(self) -> int:
        return sum(map(len, self.parts))


@dataclass(slots=True)
class _Chunk:
    figures: SubjectFigures
    lines: tuple[str, ...]  # one per family in FAMILIES order


class _Gzipped:
    """The per-subject text compressed up to a sync flush, and the compressor to finish it with."""

    def __init__(self, parts: tuple[bytes, ...], level: int) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: a gzip wrapper
        compressed = [self._compressor.compress(part) for part in parts]
        compressed.append(self._compressor.flush(zlib.Z_SYNC_FLUSH))
        self.prefix = b"".join(compressed)

    def finish(self, tail: bytes) -> tuple[bytes, ...]:
        compressor = self._compressor.copy()
        return self.prefix, compressor.compress(tail) + compressor.flush()


@dataclass(slots=True)
class _Assembled:
    """The per-subject families in one exposition format, at one version of the subjects' lines."""

    version: int
    parts: tuple[bytes, ...]  # one per family: its header and every subject's lines
    gzipped: asyncio.Future[_Gzipped] | None = None


@dataclass(slots=True)
class _SubjectCache:
    """The per-subject lines for one spelling of our names (one exposition escaping)."""

    lines: SubjectLines
    chunks: dict[str, _Chunk] = field(default_factory=dict)
    order: list[str] | None = None  # sorted subjects; None after one came or went
    changes_seen: int = 0  # RuntimeState.changes.version the chunks are rendered at
    removals_seen: int = 0
    version: int = 0  # bumped when a chunk changed: what _Assembled.version refers to
    assembled: dict[Any, _Assembled] = field(default_factory=dict)
    # Work in progress, shared by the scrapes that arrive during it: "sync", or a format's key.
    tasks: dict[Any, asyncio.Future[Any]] = field(default_factory=dict)


class ScrapeCache:
    """Answers /metrics from `registry`: a MonitorRegistry's per-subject series through the cache, the
    rest (or all of any other registry) rendered fresh."""

    def __init__(
        self, registry: CollectorRegistry, *, slice_seconds: float = SLICE_SECONDS, gzip_level: int = GZIP_LEVEL
    ) -> None:
        self._runtime: RuntimeState | None = None
        self._rest: Collector = registry
        if isinstance(registry, MonitorRegistry):
            self._runtime = registry.run_series.runtime
            self._rest = registry.rest
        self._slice_seconds = slice_seconds
        self._gzip_level = gzip_level
        self._caches: dict[tuple[str, ...], _SubjectCache] = {}
        self._headers: dict[Any, tuple[str, ...]] = {}

    async def scrape(self, *, accept: str = "", accept_encoding: str = "") -> Scrape:
        encoder, content_type = choose_encoder(accept)
        key, escaping = _format_key(encoder)
        gzip = accepts_gzip(accept_encoding)
        assembled = await self._assembled(encoder, key, escaping)
        if assembled is not None and gzip:
            if assembled.gzipped is None or (assembled.gzipped.done() and assembled.gzipped.exception()):
                # In a worker thread: zlib lets go of the GIL, so polls go on meanwhile.
                assembled.gzipped = asyncio.ensure_future(
                    asyncio.to_thread(_Gzipped, assembled.parts, self._gzip_level)
                )
            gzipped = await asyncio.shield(assembled.gzipped)
        # The small families, fresh: rendered after every await above.
        tail = encoder(self._rest)
        if not gzip:
            head = assembled.parts if assembled is not None else ()
            return Scrape((*head, tail), content_type, None)
        if assembled is None:
            return Scrape((_gzip(tail, self._gzip_level),), content_type, "gzip")
        return Scrape(gzipped.finish(tail), content_type, "gzip")

    async def _assembled(self, encoder: Encoder, key: Any, escaping: str) -> _Assembled | None:
        runtime = self._runtime
        if runtime is None:
            return None
        names = names_under(escaping)
        cache = self._caches.get(names)
        if cache is None:
            cache = self._caches[names] = _SubjectCache(SubjectLines(escaping))
        if cache.changes_seen != runtime.changes.version or "sync" in cache.tasks:
            await _shared(cache.tasks, "sync", lambda: self._sync_pass(cache, runtime))
        assembled = cache.assembled.get(key)
        if assembled is None or assembled.version != cache.version:
            family_headers = self._headers.get(key)
            if family_headers is None:
                family_headers = self._headers[key] = headers(encoder)
            assembled = await _shared(cache.tasks, key, lambda: self._assemble(cache, key, family_headers))
        return assembled

    async def _sync_pass(self, cache: _SubjectCache, runtime: RuntimeState) -> None:
        """Bring the cache up to the runtime's changes: re-render the subjects changed since the last
        pass, yielding to the loop every slice."""
        changes = runtime.changes
        target, removals = changes.version, changes.removals
        dirty = changes.since(cache.changes_seen)
        changed = False
        if removals != cache.removals_seen:
            gone = [subject for subject in cache.chunks if subject not in changes.last_changed]
            for subject in gone:
                del cache.chunks[subject]
            if gone:
                cache.order, changed = None, True
        render = cache.lines.render
        chunks = cache.chunks
        deadline = time.perf_counter() + self._slice_seconds
        for done, subject in enumerate(dirty, start=1):
            # Read at this moment, in one go: a subject's lines always agree with each other.
            figures = figures_of(runtime, subject, changes.rules.get(subject, ()))
            chunk = chunks.get(subject)
            if chunk is None or chunk.figures != figures:
                lines = render(figures)
                if any(lines):
                    if chunk is None:
                        cache.order = None
                    chunks[subject] = _Chunk(figures, lines)
                    changed = True
                elif chunk is not None:  # forgotten meanwhile: its series go
                    del chunks[subject]
                    cache.order, changed = None, True
            if done % _CHECK_EVERY == 0 and time.perf_counter() >= deadline:
                await asyncio.sleep(0)
                deadline = time.perf_counter() + self._slice_seconds
        # Changes made during the pass are newer than `target`: the next pass picks them up.
        cache.changes_seen, cache.removals_seen = target, removals
        if changed:
            cache.version += 1

    async def _assemble(self, cache: _SubjectCache, key: Any, family_headers: tuple[str, ...]) -> _Assembled:
        """Each family's header and lines, one family at a time with the loop let in between (each is
        ~1 MB at 10,000 runs). The subjects' lines are taken at the start: a pass meanwhile changes
        only the next assembly."""
        version = cache.version
        if cache.order is None:
            cache.order = sorted(cache.chunks)
        rows = [cache.chunks[subject].lines for subject in cache.order]
        parts = []
        for index, header in enumerate(family_headers):
            parts.append((header + "".join([row[index] for row in rows])).encode())
            await asyncio.sleep(0)
        assembled = _Assembled(version, tuple(parts))
        # Only the latest version is kept, of the formats asked for since it was made.
        cache.assembled = {k: a for k, a in cache.assembled.items() if a.version == version}
        cache.assembled[key] = assembled
        return assembled


async def _shared(tasks: dict[Any, asyncio.Future[Any]], key: Any, work: Callable[[], Awaitable[T]]) -> T:
    """`work()` run once for every caller that asks while it runs; it finishes even if they give up."""
    task = tasks.get(key)
    if task is None:
        task = tasks[key] = asyncio.ensure_future(work())
        task.add_done_callback(lambda done: tasks.pop(key) if tasks.get(key) is done else None)
    return cast(T, await asyncio.shield(task))


def _format_key(encoder: Encoder) -> tuple[Any, str]:
    """What identifies an exposition format (the encoder and its options), and its name escaping."""
    if isinstance(encoder, partial):
        options = tuple(sorted(encoder.keywords.items()))
        return (encoder.func, options), str(encoder.keywords.get("escaping", UNDERSCORES))
    return (encoder, ()), UNDERSCORES


def _gzip(data: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (`gzip` or `*`, without `q=0`)."""
    for item in accept_encoding.split(","):
        coding, *params = (part.strip().lower() for part in item.split(";"))
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        quality = next((param[2:] for param in params if param.startswith("q=")), "1")
        try:
            if float(quality) > 0:
                return True
        except ValueError:
            continue
    return False
