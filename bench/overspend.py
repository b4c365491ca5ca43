"""Overspend: the money a run spends past its cap before the monitor's DELETE lands.

    .venv/bin/python bench/overspend.py [--repeats 3]

For each enforcement setting (grace_period 0 s or 2 s, confirm_polls 1 or 2; poll.interval 1 s)
one real daemon process (`python -m monitor run`) watches the simulator (usage lands every 1 s,
the billing lag) with a live delete rule. Runs burning $0.05, $0.20 and $1.00 a second are added
so that they cross the cap a few seconds after the daemon found them, at spread sub-second phases
(`--repeats` runs per burn rate). From the simulator's ledger, per run:

  crossing = when the TRUE accrued cost passed the cap (start + cap / cost per second);
  delay    = the DELETE's arrival at the simulator - crossing;
  overspend = the true cost at the DELETE (it stops the burn) - cap, in $ and % of the cap.

Prints one row per (setting, burn rate): the median and the worst of the runs. No asserts.
Expected delay, roughly: billing lag (0..1 s) + poll phase (0..1 s) + (confirm_polls - 1) polls
+ grace_period + enforce tick (0..1 s when the grace is above 0); overspend = burn rate x delay.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import yaml

from monitor.logs import configure_logging
from tests.support.daemon import DaemonProcess, free_port
from tests.support.simulator import SimulatorHandle, running_simulator
from tests.test_e2e_enforce import add_burning_run, crossing_time, overspend, scenario

RATES_USD_PER_SECOND = (0.05, 0.2, 1.0)
SETTINGS = ((0.0, 1), (0.0, 2), (2.0, 1), (2.0, 2))  # (grace_period, confirm_polls)
CAP_USD = 10.0
POLL_INTERVAL = 1.0
CROSSES_IN = 4.0  # seconds after the run is added: the daemon discovers it well before
SETTING_TIMEOUT = 40.0


@dataclass(frozen=True)
class Outcome:
    rate: float
    grace: float
    confirm_polls: int
    delay: float | None  # None: no DELETE within the timeout
    dollars: float
    percent: float


def start_daemon(sim: SimulatorHandle, workdir: Path, *, grace: float, confirm_polls: int) -> DaemonProcess:
    """The daemon with the same config shape as tests.support.daemon's factory, one live delete rule."""
    workdir.mkdir(parents=True)
    port = free_port()
    config: dict[str, Any] = {
        "api": {"base_url": sim.base_url, "timeout": "3s", "max_retries": 2},
        "poll": {"interval": POLL_INTERVAL, "min_interval": POLL_INTERVAL, "wallet_interval": 1, "burn_window": 30},
        "rules": [
            {
                "name": "bench-cap",
                "scope": "run",
                "match": {"name": ["exp-*"]},
                "metric": "total_cost_usd",
                "threshold": CAP_USD,
                "action": "delete",
            }
        ],
        "enforce": {
            "dry_run": False,
            "grace_period": grace,
            "confirm_polls": confirm_polls,
            "max_deletes_per_hour": 1000,  # the default (3) would refuse most of them
        },
        "server": {"listen": f"127.0.0.1:{port}"},
        "state": {"path": str(workdir / "state.db")},
        "log": {"format": "json", "level": "info"},
    }
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIME_", "SLACK_"))}
    env |= {"PRIME_API_KEY": sim.api_key, "PYTHONUNBUFFERED": "1"}
    daemon = DaemonProcess(config_path=config_path, workdir=workdir, env=env, metrics_port=port)
    daemon.start()
    daemon.wait_for_log("daemon_started")
    return daemon


def run_setting(workdir: Path, *, grace: float, confirm_polls: int, repeats: int) -> list[Outcome]:
    with running_simulator(scenario()) as sim:
        daemon = start_daemon(sim, workdir, grace=grace, confirm_polls=confirm_polls)
        try:
            run_ids: dict[str, float] = {}
            for rate in RATES_USD_PER_SECOND:
                for i in range(repeats):
                    run_id = f"r{rate:g}-{i}".replace(".", "_")
                    # Spread the crossings over a second: the billing lag and the poll phase vary per run.
                    add_burning_run(sim, run_id, usd_per_second=rate, crosses_in=CROSSES_IN + i / repeats, cap=CAP_USD)
                    run_ids[run_id] = rate
            deadline = time.monotonic() + SETTING_TIMEOUT
            while time.monotonic() < deadline:
                ledger = sim.ledger()["runs"]
                if all(ledger[run_id]["first_delete_at"] is not None for run_id in run_ids):
                    break
                time.sleep(0.5)
            time.sleep(1.5)  # the last usage lands at the next meter boundary; the true cost is final already
            ledger = sim.ledger()["runs"]
        finally:
            daemon.stop()
    outcomes = []
    for run_id, rate in run_ids.items():
        entry = ledger[run_id]
        dollars, percent = overspend(entry, CAP_USD)
        delay = None if entry["first_delete_at"] is None else entry["first_delete_at"] - crossing_time(entry, CAP_USD)
        outcomes.append(Outcome(rate, grace, confirm_polls, delay, dollars, percent))
    return outcomes


def _median_max(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(max(values), fmt)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per burn rate and setting (default 3)")
    args = parser.parse_args()
    configure_logging(fmt="console", level="error")  # the in-process simulator's logs stay quiet

    started = time.monotonic()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="overspend-") as tmp:
        for index, (grace, confirm_polls) in enumerate(SETTINGS):
            outcomes += run_setting(
                Path(tmp) / f"s{index}", grace=grace, confirm_polls=confirm_polls, repeats=args.repeats
            )

    print(f"Overspend past a ${CAP_USD:.2f} cap: poll.interval {POLL_INTERVAL:g}s, usage lands every 1s,")
    print(f"{args.repeats} runs per row; median (worst). Delay = DELETE received - true crossing.\n")
    header = ("burn $/s", "grace", "confirm", "cap $", "overspend $", "% of cap", "crossing->DELETE s", "missed")
    rows = []
    for grace, confirm_polls in SETTINGS:
        for rate in RATES_USD_PER_SECOND:
            group = [o for o in outcomes if (o.rate, o.grace, o.confirm_polls) == (rate, grace, confirm_polls)]
            done = [o for o in group if o.delay is not None]
            if not done:
                rows.append((f"{rate:.2f}", f"{grace:g}s", str(confirm_polls), f"{CAP_USD:.2f}", "-", "-", "-", "all"))
                continue
            delays = [o.delay for o in done if o.delay is not None]
            rows.append(
                (
                    f"{rate:.2f}",
                    f"{grace:g}s",
                    str(confirm_polls),
                    f"{CAP_USD:.2f}",
                    _median_max([o.dollars for o in done], ".3f"),
                    _median_max([o.percent for o in done], ".1f"),
                    f"{statistics.median(delays):.2f} ({min(delays):.2f}-{max(delays):.2f})",
                    str(len(group) - len(done)),
                )
            )
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(f"\n{len(outcomes)} runs in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
