"""A cheap /metrics: the per-subject series kept rendered between scrapes, the rest rendered fresh.

At 10,000 runs a scrape is about 200,000 lines, nearly all per-subject series (each run's cost,
tokens, info, read state and rules; monitor.exporter.run_series). Rendering them all on every scrape,
on the event loop the polls run on, took seconds and starved the polls. So:

- Each subject's sample lines are kept, with the figures they were rendered from. Only subjects that
  `RuntimeState.changes` says changed are rendered again, and not even those whose figures came out
  the same (a reading whose totals did not move). `keep_fresh` does it every second in the
  background, so a scrape finds little left to render; a scrape renders whatever is left. Rendering
  yields to the event loop every `slice_seconds`, so a poll waits at most one slice whatever the
  number of runs; each subject is rendered in one go, so its lines always agree with each other.
- The families' text (headers and lines, per exposition format) is assembled again only when a
  subject changed, and at most once per `max_age` (a second): the scrapes of a burst share one text,
  at most that old. It is assembled a family at a time with the loop let in between. Its gzip is
  computed in a worker thread (zlib lets go of the GIL) and stopped with a sync
  flush: the compressor's state is kept, so each scrape appends the small part and finishes it.
  Once gzipped, the plain text is let go unless someone asked for it plain (Prometheus always asks
  for gzip): 14 MB less at 10,000 runs.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, cast

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import UNDERSCORES
from prometheus_client.registry import Collector

from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.exporter.collector import MonitorRegistry
from monitor.exporter.live import RuntimeState
from monitor.exporter.run_series import SubjectFigures, SubjectLines, figures_of, headers, names_under

log = structlog.get_logger(__name__)

# How long rendering runs on the loop before it lets other tasks (polls) in.
SLICE_SECONDS = 0.005
# How old the per-subject text may be when a scrape reuses it (the scrapes of a burst share one).
MAX_AGE_SECONDS = 1.0
# How often keep_fresh renders what changed, and for how long after its last scrape a format is kept.
REFRESH_SECONDS = 1.0
IDLE_SECONDS = 600.0
# gzip level 1: a fraction of the CPU of level 6 for about 1.2x the bytes (bench/scrape_bench.py).
GZIP_LEVEL = 1
_CHECK_EVERY = 32  # subjects rendered between two looks at the clock

Encoder = Callable[[Collector], bytes]
T = TypeVar("T")

# One thread for every gzip of every cache: a burst never compresses twice at once. At the normal
# priority: a niced thread holding up the GIL hand-over stalls the loop, and makes scrapes wait seconds.
_GZIP_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-gzip")


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
    made_mono: float  # when its assembly started (the age of its figures, give or take a refresh)
    parts: tuple[bytes, ...] | None  # one per family (header and lines); None once gzipped, if unasked
    asked_plain: bool = False
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
    # Work in progress, shared by the callers that arrive during it: "sync", or a format's key.
    tasks: dict[Any, asyncio.Future[Any]] = field(default_factory=dict)
    scraped_mono: float = 0.0


class ScrapeCache:
    """Answers /metrics from `registry`: a MonitorRegistry's per-subject series through the cache, the
    rest (or all of any other registry) rendered fresh."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_age: float = MAX_AGE_SECONDS,
        slice_seconds: float = SLICE_SECONDS,
        gzip_level: int = GZIP_LEVEL,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._runtime: RuntimeState | None = None
        self._rest: Collector = registry
        if isinstance(registry, MonitorRegistry):
            self._runtime = registry.run_series.runtime
            self._rest = registry.rest
        self._max_age = max_age
        self._slice_seconds = slice_seconds
        self._gzip_level = gzip_level
        self._clock = clock
        self._caches: dict[tuple[str, ...], _SubjectCache] = {}
        self._headers: dict[Any, tuple[str, ...]] = {}

    async def scrape(self, *, accept: str = "", accept_encoding: str = "") -> Scrape:
        encoder, content_type = choose_encoder(accept)
        key, escaping = _format_key(encoder)
        zipped = accepts_gzip(accept_encoding)
        head: tuple[bytes, ...] = ()
        gzipped = None
        if self._runtime is not None:
            cache = self._cache_for(escaping)
            now = cache.scraped_mono = self._clock.monotonic()
            last = cache.assembled.get(key)
            recent = last is not None and now - last.made_mono < self._max_age
            if not recent:
                await self._sync(cache, self._runtime)
            assembled = await self._assembled(cache, encoder, key, plain=not zipped, reuse=recent)
            if zipped:
                gzipped = await self._gzipped(assembled)
            elif assembled.parts is None:  # cannot happen: asked plain, it was assembled again
                raise RuntimeError("metrics text let go before a plain scrape")
            else:
                head = assembled.parts
        # The small families, fresh: rendered after every await above.
        tail = encoder(self._rest)
        if not zipped:
            return Scrape((*head, tail), content_type, None)
        if gzipped is None:
            return Scrape((_gzip(tail, self._gzip_level),), content_type, "gzip")
        return Scrape(gzipped.finish(tail), content_type, "gzip")

    async def refresh(self) -> None:
        """Render what changed, for the formats scraped within IDLE_SECONDS (nobody else would read it)."""
        runtime = self._runtime
        if runtime is None:
            return
        recent = self._clock.monotonic() - IDLE_SECONDS
        for cache in list(self._caches.values()):
            if cache.scraped_mono >= recent:
                await self._sync(cache, runtime)

    async def keep_fresh(self, *, every: float = REFRESH_SECONDS) -> None:
        """`refresh` every `every` seconds until cancelled; a failure is logged once, until one works."""
        failing = False
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except Exception:
                if not failing:
                    log.exception("metrics_refresh_failed")
                failing = True
            else:
                failing = False

    async def close(self) -> None:
        """Stop the renderings in progress (a server stopping): nothing is left pending on the loop."""
        tasks = [task for cache in self._caches.values() for task in cache.tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _cache_for(self, escaping: str) -> _SubjectCache:
        names = names_under(escaping)
        cache = self._caches.get(names)
        if cache is None:
            cache = self._caches[names] = _SubjectCache(SubjectLines(escaping))
        return cache

    async def _sync(self, cache: _SubjectCache, runtime: RuntimeState) -> None:
        if cache.changes_seen != runtime.changes.version or "sync" in cache.tasks:
            await _shared(cache.tasks, "sync", lambda: self._sync_pass(cache, runtime))

    async def _sync_pass(self, cache: _SubjectCache, runtime: RuntimeState) -> None:
        """Bring the cache up to the runtime's changes: render the subjects changed since the last pass,
        yielding to the loop every slice."""
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

    async def _assembled(
        self, cache: _SubjectCache, encoder: Encoder, key: Any, *, plain: bool, reuse: bool
    ) -> _Assembled:
        """The format's text at the cache's version, or the last one if `reuse` (it is recent)."""
        assembled = cache.assembled.get(key)
        stale = assembled is not None and assembled.version != cache.version and not reuse
        if assembled is None or stale or (plain and assembled.parts is None):
            family_headers = self._headers.get(key)
            if family_headers is None:
                family_headers = self._headers[key] = headers(encoder)
            assembled = await _shared(cache.tasks, key, lambda: self._assemble(cache, key, family_headers))
        assembled.asked_plain |= plain
        return assembled

    async def _assemble(self, cache: _SubjectCache, key: Any, family_headers: tuple[str, ...]) -> _Assembled:
        """Each family's header and lines, one family at a time with the loop let in between (each is
        ~1 MB at 10,000 runs). The subjects' lines are taken at the start: a pass meanwhile changes
        only the next assembly."""
        version, made = cache.version, self._clock.monotonic()
        if cache.order is None:
            cache.order = sorted(cache.chunks)
        rows = [cache.chunks[subject].lines for subject in cache.order]
        parts = []
        for index, header in enumerate(family_headers):
            parts.append((header + "".join([row[index] for row in rows])).encode())
            await asyncio.sleep(0)
        assembled = cache.assembled.get(key)
        if assembled is not None and assembled.version == version:
            assembled.parts = tuple(parts)  # asked plain after the text was let go: its gzip stays
            return assembled
        assembled = _Assembled(version, made, tuple(parts))
        # Only the latest version is kept, of the formats asked for since it was made.
        cache.assembled = {k: a for k, a in cache.assembled.items() if a.version == version}
        cache.assembled[key] = assembled
        return assembled

    async def _gzipped(self, assembled: _Assembled) -> _Gzipped:
        if assembled.gzipped is None or (assembled.gzipped.done() and assembled.gzipped.exception()):
            parts = assembled.parts
            if parts is None:  # cannot happen: the text is let go only once its gzip is done
                raise RuntimeError("metrics text let go before its gzip was made")
            # In a worker thread: zlib lets go of the GIL, so polls go on meanwhile.
            loop = asyncio.get_running_loop()
            assembled.gzipped = loop.run_in_executor(_GZIP_THREAD, _Gzipped, parts, self._gzip_level)
        gzipped = await asyncio.shield(assembled.gzipped)
        if not assembled.asked_plain:
            assembled.parts = None
        return gzipped


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
