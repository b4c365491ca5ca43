"""Memory per watched run, by where it is allocated: what the RSS at 10,000 runs (bench/scale.py) is made of.

    .venv/bin/python bench/memory_profile.py                  # 2,000 runs, 30 readings each (~3 min)
    .venv/bin/python bench/memory_profile.py --runs 200 --readings 5   # a quick look (seconds)

The daemon's components (monitor.wiring, as `run` builds them, with daemon_soak's three rules) run in
this process under tracemalloc against a simulator process on 127.0.0.1. Every run is read
--readings times (the burn window of the shipped defaults holds 30 readings at 30 s), then /metrics is
rendered plain and gzip through the daemon's scrape cache, as a scraper would ask. Printed: the memory
Python allocated since the components were built, per run, grouped by the module that allocated it
(monitor's own modules by name, libraries by package), and the process RSS before and after. tracemalloc
sees Python's allocations only: SQLite's page cache and the allocator's own overhead are the rest of
the RSS growth. No asserts: figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import API_KEY, memory_kib, run_ids, simulator_process

from monitor.config.settings import Settings
from monitor.daemon import Daemon
from monitor.exporter.collector import build_registry
from monitor.exporter.scrape_cache import ScrapeCache
from monitor.logs import configure_logging

RULES = [
    {"name": "run-cap", "scope": "run", "metric": "total_cost_usd", "threshold": 10_000, "warn_at": [0.5, 0.8]},
    {"name": "burn", "scope": "run", "metric": "burn_rate_usd_per_hour", "threshold": 10_000},
    {"name": "wallet-floor", "scope": "wallet", "metric": "balance_usd", "below": 100},
]
TOP = 14


def where(filename: str) -> str:
    """A monitor module by its dotted name; anything else by its top-level package."""
    path = Path(filename)
    parts = path.parts
    if "monitor" in parts and "site-packages" not in parts:
        tail = parts[parts.index("monitor") :]
        return ".".join(tail).removesuffix(".py")
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    return path.name


async def profile(*, runs: int, readings: int, workdir: Path) -> None:
    ids = run_ids(runs)
    with simulator_process(runs=runs, workdir=workdir) as sim:
        settings = Settings(
            api={"base_url": sim.base_url, "api_key": API_KEY, "max_concurrency": 16, "timeout": 30},
            watch={"runs": ids, "discover": False},
            poll={"interval": 30, "burn_window": 900, "adaptive": False, "max_requests_per_second": 0},
            rules=RULES,
            server={"enabled": False},
            state={"path": str(workdir / "state.db")},
            log={"level": "warning"},
        )
        configure_logging(level="warning")
        rss_start = memory_kib_self()
        tracemalloc.start(1)
        daemon = Daemon(settings=settings, notifiers=[], serve_http=False)
        registry = build_registry(daemon.parts.runtime, clock=daemon.clock, ready=lambda: True)
        scrapes = ScrapeCache(registry)
        before = tracemalloc.take_snapshot()
        rss_built = memory_kib_self()
        started = time.perf_counter()
        poller = daemon.parts.poller
        for _ in range(readings):
            poller.watch.make_all_due()
            await poller.poll_due_runs()
        polled = time.perf_counter() - started
        plain = await scrapes.scrape()
        gzipped = await scrapes.scrape(accept_encoding="gzip")
        after = tracemalloc.take_snapshot()
        rss_end = memory_kib_self()
        await scrapes.close()
        await daemon.parts.aclose()

    stats = after.compare_to(before, "filename")
    by_place: Counter[str] = Counter()
    for stat in stats:
        by_place[where(stat.traceback[0].filename)] += stat.size_diff
    total = sum(by_place.values())
    print(f"memory_profile: {runs} runs x {readings} readings in {polled:.1f} s; /metrics {plain.size / 1024:.0f} KiB")
    print(f"  plain, {gzipped.size / 1024:.0f} KiB gzip")
    print(f"RSS: {rss_start / 1024:.1f} MiB at start, {rss_built / 1024:.1f} MiB built, {rss_end / 1024:.1f} MiB after")
    print(f"   ({(rss_end - rss_built) / runs:.2f} KiB per run)")
    print(f"Python allocations since built: {total / 2**20:.1f} MiB = {total / runs / 1024:.2f} KiB per run")
    print(f"{'allocated in':44} {'KiB/run':>8} {'share':>6}")
    for place, size in by_place.most_common(TOP):
        print(f"{place:44} {size / runs / 1024:8.2f} {size / total:6.1%}")
    rest = total - sum(size for _, size in by_place.most_common(TOP))
    print(f"{'(the rest)':44} {rest / runs / 1024:8.2f} {rest / total:6.1%}")


def memory_kib_self() -> int:
    import os

    return memory_kib(os.getpid())["VmRSS"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--readings", type=int, default=30, help="reads of every run (the burn window's length)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memory-profile-") as tmp:
        asyncio.run(profile(runs=args.runs, readings=args.readings, workdir=Path(tmp)))


if __name__ == "__main__":
    main()
