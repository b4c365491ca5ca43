"""What the state file's guards cost: the integrity check at open (integrity_check, which the store
runs, beside quick_check) on a state file of about --mb megabytes, warm and with the file's pages
dropped from the page cache; a whole exclusive open; `probe()` as the daemon's health check calls it;
and the stat that every store call makes to notice the file being deleted or replaced.
Prints figures; asserts nothing.

    .venv/bin/python bench/store_open_bench.py [--mb 50] [--probes 2000]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from store_bench import snapshot  # the store benchmark's realistic snapshot (this script's directory)

from monitor.store.file import FileIdentity
from monitor.store.state_store import StateStore


def build(path: Path, megabytes: float) -> int:
    """Fill a state file through the store itself until it reaches the size; returns the snapshots."""
    written = 0
    with StateStore(path, history_per_run=1_000_000) as store:
        while path.stat().st_size < megabytes * 1e6:
            for run in range(200):
                store.save_run_snapshot(snapshot(f"run-{run:03d}", written // 200))
                written += 1
    return written


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def seconds(call: Callable[[], object], *, cold_file: Path | None = None, repeat: int = 3) -> float:
    """The median of `repeat` timings; with cold_file, its pages are dropped before each one."""
    times = []
    for _ in range(repeat):
        if cold_file is not None:
            drop_from_page_cache(cold_file)
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def pragma(path: Path, name: str) -> Callable[[], object]:
    def run() -> object:
        conn = sqlite3.connect(path)
        try:
            return conn.execute(f"PRAGMA {name}").fetchall()
        finally:
            conn.close()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--probes", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        started = time.perf_counter()
        snapshots = build(path, args.mb)
        size_mb = path.stat().st_size / 1e6
        built = time.perf_counter() - started
        print(f"state file:             {size_mb:8.1f} MB, {snapshots} run snapshots ({built:.0f} s to build)")

        for name in ("integrity_check", "quick_check"):
            warm = seconds(pragma(path, name))
            cold = seconds(pragma(path, name), cold_file=path)
            print(f"PRAGMA {name + ':':17} {warm * 1000:8.0f} ms warm {cold * 1000:8.0f} ms cold")

        def open_exclusive() -> None:
            StateStore(path, exclusive=True).close()

        warm = seconds(open_exclusive)
        cold = seconds(open_exclusive, cold_file=path)
        print(f"exclusive open + close: {warm * 1000:8.0f} ms warm {cold * 1000:8.0f} ms cold")

        with StateStore(path, exclusive=True) as store:
            durations = []
            for _ in range(args.probes):
                began = time.perf_counter()
                store.probe()
                durations.append(time.perf_counter() - began)
            durations.sort()
            median, p99 = durations[len(durations) // 2], durations[int(len(durations) * 0.99)]
            print(
                f"probe():                {median * 1e6:8.0f} us median {p99 * 1e6:8.0f} us p99 ({args.probes} calls)"
            )
            wal_kb = Path(f"{path}-wal").stat().st_size / 1024
            print(f"WAL after the probes:   {wal_kb:8.0f} KiB (auto-checkpoint bounds it)")

        stats = 20_000
        began = time.perf_counter()
        for _ in range(stats):
            FileIdentity.of_path(str(path))
        print(f"identity stat per call: {(time.perf_counter() - began) / stats * 1e6:8.2f} us")


if __name__ == "__main__":
    main()
