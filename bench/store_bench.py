"""State store figures: run-snapshot inserts per second (with and without pruning), the file size per
1,000 snapshots, and how fast a run's history reads back. Prints figures; asserts nothing.

    .venv/bin/python bench/store_bench.py [--runs 20] [--per-run 1000] [--history-per-run 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from monitor.snapshots import RunSnapshot
from monitor.store.state_store import StateStore

T0 = 1_800_000_000.0


def snapshot(run_id: str, i: int) -> RunSnapshot:
    # Realistic magnitudes: a 9B run at a few thousand tokens per second, costs with full float noise.
    training = 3_000 * 30 * i
    inference_in, inference_out = 9_000 * 30 * i, 2_500 * 30 * i
    return RunSnapshot(
        run_id=run_id,
        taken_at=T0 + 30.0 * i + 0.123456,
        run_name=f"exp-{run_id}",
        base_model="Qwen/Qwen3.5-9B",
        status="RUNNING",
        team_id="team-bench",
        training_tokens=training,
        inference_input_tokens=inference_in,
        inference_output_tokens=inference_out,
        training_cost_usd=training * 0.6 / 1e6,
        inference_cost_usd=(inference_in * 0.2 + inference_out * 0.6) / 1e6,
        total_tokens=training + inference_in + inference_out,
        total_cost_usd=(training * 0.6 + inference_in * 0.2 + inference_out * 0.6) / 1e6,
        training_price_per_mtok=0.6,
        inference_input_price_per_mtok=0.2,
        inference_output_price_per_mtok=0.6,
        record_count=i,
    )


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--per-run", type=int, default=1000, help="snapshots per run (phase 1, no pruning)")
    parser.add_argument("--history-per-run", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        StateStore(path).close()
        empty_bytes = db_bytes(path)

        # Phase 1: history below the bound, so nothing is pruned: the size per snapshot is clean.
        total = args.runs * args.per_run
        store = StateStore(path, history_per_run=max(args.history_per_run, args.per_run))
        started = time.perf_counter()
        for i in range(args.per_run):
            for r in range(args.runs):
                store.save_run_snapshot(snapshot(f"run-{r:03d}", i))
        elapsed = time.perf_counter() - started
        store.close()  # the last connection checkpoints the WAL into the main file
        size = db_bytes(path) - empty_bytes
        print(f"inserts (no pruning):   {total / elapsed:10.0f} run snapshots/s  ({total} in {elapsed:.2f} s)")
        print(f"file size:              {size / total * 1000 / 1024:10.1f} KiB per 1,000 snapshots")

        # Phase 2: steady state at a small bound: every insert also deletes the oldest row.
        bound = 200
        store = StateStore(path, history_per_run=bound)
        count = 5_000
        started = time.perf_counter()
        for i in range(count):
            store.save_run_snapshot(snapshot("run-pruned", i))
        elapsed = time.perf_counter() - started
        kept = len(store.run_history("run-pruned"))
        print(f"inserts (pruning):      {count / elapsed:10.0f} run snapshots/s  (bound {bound}, kept {kept})")

        # Reads the rules do each poll: the last hour of one run, and the latest of every run.
        reads = 200
        started = time.perf_counter()
        for _ in range(reads):
            hour = store.run_history("run-000", since=T0 + 30.0 * (args.per_run - 120))
        elapsed = time.perf_counter() - started
        print(f"history reads:          {reads / elapsed:10.0f} /s  ({len(hour)} snapshots each)")
        started = time.perf_counter()
        for _ in range(reads):
            latest = store.latest_run_snapshots()
        elapsed = time.perf_counter() - started
        print(f"latest-of-all reads:    {reads / elapsed:10.0f} /s  ({len(latest)} runs each)")
        store.close()


if __name__ == "__main__":
    main()
