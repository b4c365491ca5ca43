"""The state file's size over a simulated day: the real StateStore, driven the way the daemon drives it,
on a manual clock. Prints figures; asserts nothing.

    .venv/bin/python bench/store_size.py --runs 100                      # a day, every poll (~2 min)
    .venv/bin/python bench/store_size.py --runs 100 --baseline           # the same day with today's bounds
    .venv/bin/python bench/store_size.py --runs 1000 --sample-hours 0.5,1,2,6,12,18,24
    .venv/bin/python bench/store_size.py --runs 10000 --sample-hours 0.5,1,6,12,24   # ~20 min on 2 cores
    .venv/bin/python bench/store_size.py --runs 50 --hours 2             # the CI smoke (seconds)
    .venv/bin/python bench/store_size.py --runs 10000 --hours 0 --steps  # the worst maintenance step

What is simulated, per run: a reading every 30 s (--interval), every 5 s (--hot-interval) once it is at
80 % of its cap (adaptive polling near a limit); the default rules of a team (run-cap: $100, warn at
50 % and 80 %, renotify 1 h; hard-cap: $180, action delete) evaluated with the real rule and alert code,
their notifications queued in the outbox and delivered 2 s later, delete episodes written to the action
log (pending, intent, deleted, with their messages); runs live 6 to 36 h and a new one starts when one
ends (finished runs are read twice more, then retired after watch.retention, 24 h); the wallet read every
60 s; `StateStore.maintain` called every 5 s as the daemon's housekeeping does. Settings are the defaults.

Sampling (`--sample-hours`): polling 10,000 runs every 30 s for a day is 29 million saves (over an hour
of CPU here), so with sample hours given, runs are polled only in the history horizon (burn window +
interval + margin, ~18 min) before each sample point; everything else (lifecycles, alerts every 5 min,
deletes, wallet, maintenance) runs all day. A reading polled earlier would be pruned by the sample point
anyway, so the file there is the one the daemon would have; the gaps make maintenance prune a whole
window of readings per run at once, a harder test of its batches than the daemon gives it. Run
`--runs 100` with and without `--sample-hours` to compare the two.

`--baseline`: today's store (before retention): history capped at state.history_per_run (2000) per run,
no maintenance; only every-poll mode (the growth is the point).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.alerts.machine import advance_alert
from monitor.alerts.words import AlertContext
from monitor.config.settings import Settings
from monitor.enforce.evidence import Evidence, Reading, Schedule
from monitor.enforce.messages import DeleteContext, pending_notice, result_notice
from monitor.logs import configure_logging
from monitor.records import ActionRecord, AlertState, Notification
from monitor.rules.config import RunRule
from monitor.rules.evaluate import evaluate_run
from monitor.snapshots import RunSnapshot, WalletSnapshot
from monitor.store.state_store import RetentionPolicy, StateStore

T0 = 1_800_000_000.0
TICK = 5.0
HOUR = 3600.0
DAY_S = 24 * HOUR
MIN_LIFE, MAX_LIFE = 6 * HOUR, 36 * HOUR
CHANNEL = "slack"
SETTINGS = Settings(
    rules=[
        {"name": "run-cap", "scope": "run", "metric": "total_cost_usd", "threshold": 100, "warn_at": [0.5, 0.8]},
        {"name": "hard-cap", "scope": "run", "metric": "total_cost_usd", "threshold": 180, "action": "delete"},
    ]
)


@dataclass
class SimRun:
    run_id: str
    started: float
    ends: float
    usd_per_second: float
    next_poll: float
    hot: bool = False
    finished_at: float | None = None
    final_reads: int = 0
    deleting: bool = False
    polls: int = 0
    # The highest tier of run-cap its cost has reached, and when the alert code last looked at it.
    tier: int = -1
    evaluated_at: float = float("-inf")

    def snapshot(self, now: float) -> RunSnapshot:
        end = self.finished_at if self.finished_at is not None else now
        cost = self.usd_per_second * max(end - self.started, 0.0)
        tokens = int(cost / 0.4 * 1e6)
        status = "RUNNING" if self.finished_at is None else ("STOPPED" if self.deleting else "COMPLETED")
        return RunSnapshot(
            run_id=self.run_id,
            taken_at=now,
            run_name=f"exp-{self.run_id}",
            base_model="Qwen/Qwen3.5-9B",
            status=status,
            team_id="team-bench",
            training_tokens=tokens // 2,
            inference_input_tokens=tokens // 3,
            inference_output_tokens=tokens - tokens // 2 - tokens // 3,
            training_cost_usd=cost * 0.6,
            inference_cost_usd=cost - cost * 0.6,
            total_tokens=tokens,
            total_cost_usd=cost,
            training_price_per_mtok=0.6,
            inference_input_price_per_mtok=0.2,
            inference_output_price_per_mtok=0.6,
            record_count=int((now - self.started) // 60),
        )


@dataclass
class Counters:
    saves: int = 0
    notifications: int = 0
    actions: int = 0
    retired: int = 0
    finished: int = 0
    worst_step: float = 0.0
    worst_step_name: str = ""
    maintain_calls: int = 0
    maintain_seconds: float = 0.0
    deleted: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Day:
    def __init__(self, args: argparse.Namespace, path: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.baseline = args.baseline
        self.store = StateStore(path, exclusive=True)
        self.path = path
        self.policy = RetentionPolicy.of(SETTINGS)
        self.rules: list[RunRule] = SETTINGS.run_rules
        self.now = T0
        self.runs: dict[str, SimRun] = {}
        # Finished runs in the order they finished: retired from the left.
        self.finished: deque[SimRun] = deque()
        self.alerts: dict[tuple[str, str], AlertState | None] = {}
        # What happens at each tick (an index of TICK seconds from T0): polls, run ends, delete steps.
        self.polls: dict[int, list[str]] = defaultdict(list)
        self.ends: dict[int, list[str]] = defaultdict(list)
        self.later: dict[int, list[str]] = defaultdict(list)
        self.count = Counters()
        self.samples = sorted(float(h) * HOUR for h in args.sample_hours.split(",")) if args.sample_hours else []
        self.horizon = self.policy.history_seconds + 2 * args.interval
        self.serial = 0
        self.balance = 1e9
        for _ in range(args.runs):
            # Ages as a day in the middle of the renewal process has them: a run is met with a chance in
            # proportion to its length (so the population is steady from the first hour).
            life = self.rng.uniform(MIN_LIFE, MAX_LIFE)
            while self.rng.random() > life / MAX_LIFE:
                life = self.rng.uniform(MIN_LIFE, MAX_LIFE)
            self._start_run(life=life, age=self.rng.uniform(0, life))

    # -- the simulated world ---------------------------------------------------------------------

    def _start_run(self, *, life: float | None = None, age: float = 0.0) -> None:
        self.serial += 1
        life = self.rng.uniform(MIN_LIFE, MAX_LIFE) if life is None else life
        started = self.now - age
        run = SimRun(
            run_id=f"rft-{self.serial:06d}",
            started=started,
            ends=started + life,
            # $0.5 to $6 an hour: over a life, run-cap ($100) is reached by some runs, hard-cap ($180) by few.
            usd_per_second=self.rng.uniform(0.5, 6) / HOUR,
            next_poll=self.now + self.rng.uniform(0, self.args.interval),
        )
        self.runs[run.run_id] = run
        self.polls[self._tick_of(run.next_poll)].append(run.run_id)
        self.ends[self._tick_of(max(run.ends, self.now))].append(run.run_id)
        self.store.remember_run(run.run_id, source="discovered", seen_at=self.now)

    def _tick_of(self, at: float) -> int:
        return int((at - T0) // TICK) + (0 if (at - T0) % TICK == 0 else 1)

    def _next_window(self) -> float | None:
        """When polling starts again (sampled mode): the history horizon before the next sample point."""
        upcoming = [s - self.horizon for s in self.samples if s - self.horizon > self.now - T0]
        return T0 + min(upcoming) if upcoming else None

    def polling(self) -> bool:
        """Every poll, or only in the history horizon before a sample point (see the docstring)."""
        if not self.samples or self.baseline:
            return True
        return any(s - self.horizon <= self.now - T0 <= s for s in self.samples)

    def tick(self) -> None:
        now, index = self.now, self._tick_of(self.now)
        polling = self.polling()
        for run_id in self.ends.pop(index, []):
            run = self.runs.get(run_id)
            if run is not None and run.finished_at is None:
                run.finished_at = now
                self.polls[index].append(run_id)  # its final reads start now, polling or not
        for run_id in self.polls.pop(index, []):
            run = self.runs.get(run_id)
            if run is None:
                continue
            if polling or run.finished_at is not None:
                self._poll(run)
                continue
            window = self._next_window()
            if window is not None:  # not polled in the gap: due again when the next window opens
                run.next_poll = window + self.rng.uniform(0, self.args.interval)
                self.polls[self._tick_of(run.next_poll)].append(run_id)
        if not polling and int(now - T0) % 300 == 0:
            for run in list(self.runs.values()):  # alerts go on in the gaps, at a coarser cadence
                self._evaluate(run, run.snapshot(now), save=False)
        for key in self.later.pop(index, []):
            self._delete_step(key)
        if int(now - T0) % 60 == 0:
            self.balance -= 100.0
            wallet = WalletSnapshot(wallet_id="wallet-bench", taken_at=now, balance_usd=self.balance)
            self.store.save_wallet_snapshot(wallet)
        for item in self.store.outbox.due(now=now - 2.0, limit=1000):
            self.store.outbox.mark_delivered(item.id, now=now)
        while self.finished and now - (self.finished[0].finished_at or now) >= SETTINGS.watch.retention:
            self.store.forget_run(self.finished.popleft().run_id, now=now)  # as Components.retire does
            self.count.retired += 1
        if not self.baseline:
            started = time.perf_counter()
            report = self.store.maintain(self.policy, now=now)
            self.count.maintain_seconds += time.perf_counter() - started
            if report is not None:
                self.count.maintain_calls += 1
                if report.worst_step_seconds > self.count.worst_step:
                    self.count.worst_step, self.count.worst_step_name = report.worst_step_seconds, report.worst_step
                for table, deleted in report.deleted.items():
                    self.count.deleted[table] += deleted

    def _poll(self, run: SimRun) -> None:
        snapshot = run.snapshot(self.now)
        self.store.save_run_snapshot(snapshot)
        self.count.saves += 1
        run.polls += 1
        self._evaluate(run, snapshot, save=True)
        if run.finished_at is not None:
            run.final_reads += 1
            if run.final_reads >= 2:  # two terminal readings agree: no longer polled (monitor.poller)
                self.store.mark_run_finished(run.run_id, finished_at=self.now)
                del self.runs[run.run_id]
                run.finished_at = self.now
                self.finished.append(run)
                self.count.finished += 1
                self._start_run()
                return
        interval = self.args.hot_interval if run.hot else self.args.interval
        run.next_poll = self.now + interval
        self.polls[self._tick_of(run.next_poll)].append(run.run_id)

    def _evaluate(self, run: SimRun, snapshot: RunSnapshot, *, save: bool) -> None:
        # What the rules would say changes only when a tier is crossed or a reminder is due: the real code
        # runs then (the daemon runs it on every reading; here that would cost more than the store).
        tier = sum(snapshot.total_cost_usd >= 100 * f for f in (0.5, 0.8, 1.0, 2.0))
        if tier == run.tier and not snapshot.terminal and self.now - run.evaluated_at < 300:
            return
        run.tier, run.evaluated_at = tier, self.now
        context = AlertContext(subject_name=f"exp-{run.run_id}", run_id=run.run_id, terminal=snapshot.terminal)
        for rule in self.rules:
            evaluation = evaluate_run(rule, snapshot, [], now=self.now, burn_window=SETTINGS.poll.burn_window)
            if evaluation is None:
                continue
            run.hot = run.hot or (evaluation.utilisation or 0) >= 0.8
            if rule.action == "delete":
                if save and evaluation.breached and not run.deleting and run.finished_at is None:
                    self._start_delete(run, snapshot, rule, evaluation.value)
                continue
            key = (run.run_id, rule.name)
            if key not in self.alerts:
                self.alerts[key] = self.store.get_alert(*key)
            previous = self.alerts[key]
            state, notes = advance_alert(previous, evaluation, rule=rule, context=context, now=self.now)
            for note in notes:
                self._publish(note)
            if previous is None or state != previous:
                self.store.save_alert(state)
                self.alerts[key] = state

    def _publish(self, note: Notification) -> None:
        if self.store.outbox.enqueue(note, channels=[CHANNEL], now=self.now):
            self.count.notifications += 1

    # -- a delete episode, as monitor.enforce writes it --------------------------------------------

    def _start_delete(self, run: SimRun, snapshot: RunSnapshot, rule: RunRule, value: float | None) -> None:
        run.deleting = True
        grace = SETTINGS.enforce.grace_period
        reading = Reading.of(snapshot, metric=rule.metric, value=value, limit=rule.limit)
        schedule = Schedule(deadline=self.now + grace, grace_period=grace, run_name=None)
        evidence = Evidence.of([reading, reading], schedule=schedule)
        episode = self._record(run.run_id, rule.name, "delete_pending", evidence)
        context = DeleteContext(run_id=run.run_id, run_name=None, rule=rule.name, episode=episode, dry_run=False)
        notice = pending_notice(
            context, readings=[reading], deadline=schedule.deadline, grace_period=grace, now=self.now
        )
        self._publish(notice)
        self.later[self._tick_of(self.now + grace)].append(f"{run.run_id}|{episode}")

    def _delete_step(self, key: str) -> None:
        run_id, episode_text = key.split("|")
        episode = int(episode_text)
        run = self.runs.get(run_id)
        intent = self._record(run_id, "hard-cap", "delete_intent", Evidence(), intent_id=episode)
        context = DeleteContext(run_id=run_id, run_name=None, rule="hard-cap", episode=episode, dry_run=False)
        self._publish(result_notice(context, decision="deleted", reason="DELETE accepted", readings=[], now=self.now))
        self._record(run_id, "hard-cap", "deleted", Evidence(), intent_id=intent)
        if run is not None and run.finished_at is None:
            run.finished_at = self.now
            self.polls[self._tick_of(self.now + TICK)].append(run_id)  # STOPPED: its final reads

    def _record(self, run_id: str, rule: str, decision: Any, evidence: Evidence, intent_id: int | None = None) -> int:
        self.count.actions += 1
        record = ActionRecord(
            run_id=run_id,
            rule=rule,
            decision=decision,
            reason="bench",
            created_at=self.now,
            config_hash="bench",
            dry_run=False,
            evidence=evidence,
            intent_id=intent_id,
        )
        return self.store.append_action(record)


# -- figures ---------------------------------------------------------------------------------------


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes per table, its indexes included (SQLite's dbstat)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        owner = {str(name): str(table) for name, table in conn.execute("SELECT name, tbl_name FROM sqlite_master")}
        sizes: dict[str, int] = defaultdict(int)
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            sizes[owner.get(str(name), str(name))] += int(size)
        return dict(sizes)
    finally:
        conn.close()


def rows(path: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def mb(value: float) -> str:
    return f"{value / 1e6:8.1f}"


HEADER = (
    " hour  file MB  WAL MB  free MB  KB/run   history  notif+outbox  actions    other  readings/run  hot  notifs"
    "    saves"
)


def sample_line(day: Day, at: float) -> str:
    stats = day.store.file_stats()
    sizes = table_bytes(day.path)
    history = sizes.get("run_history", 0) + sizes.get("run_latest", 0)
    notif = sizes.get("notifications", 0) + sizes.get("outbox", 0) + sizes.get("thread_refs", 0)
    actions = sizes.get("actions", 0)
    other = sum(sizes.values()) - history - notif - actions
    runs = max(day.args.runs, 1)
    return (
        f"{at / HOUR:5.1f} {mb(stats.file_bytes)} {mb(stats.wal_bytes)} {mb(stats.free_pages * stats.page_size)}"
        f" {stats.file_bytes / runs / 1e3:7.1f} {mb(history)} {mb(notif):>13} {mb(actions)} {mb(other)}"
        f" {rows(day.path, 'run_history') / runs:13.1f} {sum(r.hot for r in day.runs.values()):4d}"
        f" {rows(day.path, 'notifications'):7d} {day.count.saves:8d}"
    )


def per_row(path: Path, table: str, table_size: int, *, payload: str) -> float:
    """Bytes a row takes: measured over the table when it has enough rows for its pages to be full,
    else its payload plus an estimate of the row's and its indexes' overhead."""
    count = rows(path, table)
    if count >= 200:
        return table_size / count
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return float(conn.execute(f"SELECT COALESCE(AVG({payload}), 0) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def reading_bytes(path: Path) -> float:
    """Bytes per stored reading, its two indexes included."""
    return table_bytes(path).get("run_history", 0) / max(rows(path, "run_history"), 1)


def save_cost(runs: int = 1000, rounds: int = 3) -> None:
    """CPU per save_run_snapshot with and without the time bound (history of 35 readings per run, the
    bound's steady state), interleaved rounds; process time, so other load on the machine counts less."""
    from monitor.store.retention import RetentionPolicy as Policy

    policy = Policy.of(SETTINGS)
    results: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for bounded in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                store = StateStore(Path(tmp) / "s.db", exclusive=True, retention=policy if bounded else None)
                runs_ = [SimRun(f"rft-{i:06d}", T0 - HOUR, T0 + DAY_S, 1e-3, 0.0) for i in range(runs)]
                for k in range(35):
                    for run in runs_:
                        store.save_run_snapshot(run.snapshot(T0 + 30 * k))
                snaps = [[run.snapshot(T0 + 30 * k) for run in runs_] for k in range(35, 75)]
                started = time.process_time()
                for batch in snaps:
                    for snapshot in batch:
                        store.save_run_snapshot(snapshot)
                results[bounded].append((time.process_time() - started) / (runs * 40) * 1e6)
                store.close()
    on, off = min(results[True]), min(results[False])
    print(
        f"save_run_snapshot CPU at {runs} runs (best of {rounds}): {on:.0f} us with the time bound, {off:.0f} us"
        f" with the row cap only ({on / off:.2f}x)"
    )


def maintenance_steps(runs: int) -> None:
    """The worst maintenance step with a full backlog: `runs` runs with a burn window of readings each
    (35 at 30 s), then read no more for an hour (as after a restart, or runs that all finished), so one
    cycle prunes 30 readings of every run and gives the pages back. One step per call, each timed."""
    from monitor.store import maintenance

    policy = RetentionPolicy.of(SETTINGS)
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(Path(tmp) / "s.db", exclusive=True, retention=policy)
        sims = [SimRun(f"rft-{i:06d}", T0 - HOUR, T0 + DAY_S, 1e-3, 0.0) for i in range(runs)]
        for k in range(35):
            for run in sims:
                store.save_run_snapshot(run.snapshot(T0 + 30 * k))
        before = store.file_stats().file_bytes
        times: dict[str, list[float]] = defaultdict(list)
        deleted = 0
        while True:
            report = store.maintain(policy, now=T0 + 35 * 30 + HOUR, force=True, budget=0.0)
            assert report is not None and report.error is None, report
            times[report.worst_step].append(report.worst_step_seconds)
            deleted += sum(report.deleted.values())
            if report.cycle_done:
                break
        after = store.file_stats().file_bytes
        store.close()
    worst = max((max(v), k) for k, v in times.items())
    print(
        f"maintenance with a backlog at {runs} runs: {deleted} rows pruned in {sum(map(len, times.values()))} steps"
        f" (<= {maintenance.ROWS_PER_STEP} rows, <= {maintenance.PAGES_PER_STEP} pages each); file"
        f" {before / 1e6:.1f} -> {after / 1e6:.1f} MB; worst step {worst[0] * 1000:.1f} ms ({worst[1]})"
    )
    for name, values in sorted(times.items()):
        values.sort()
        print(
            f"  {name:15s} steps {len(values):4d}  median {values[len(values) // 2] * 1000:6.1f} ms"
            f"  p90 {values[int(len(values) * 0.9)] * 1000:6.1f} ms  max {values[-1] * 1000:6.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="runs watched at any moment")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between reads of a run")
    parser.add_argument("--hot-interval", type=float, default=5.0, help="... of a run at 80 %% of a limit")
    parser.add_argument("--sample-hours", default="", help="e.g. 0.5,1,6,12,24: poll only before these (see above)")
    parser.add_argument("--every", type=float, default=2.0, help="hours between printed lines (every-poll mode)")
    parser.add_argument("--baseline", action="store_true", help="today's bounds: history_per_run only, no maintenance")
    parser.add_argument("--save-cost", action="store_true", help="also measure CPU per save with and without the bound")
    parser.add_argument("--steps", action="store_true", help="also time each maintenance step with a full backlog")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    configure_logging(fmt="console", level="warning")
    if args.save_cost:
        save_cost()
    if args.steps:
        maintenance_steps(args.runs)
    if args.hours <= 0:
        return
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        day = Day(args, Path(tmp) / "state.db")
        run_day(day, load_before=load_before[0])
        day.store.close()


def run_day(day: Day, *, load_before: float) -> None:
    args, policy = day.args, day.policy
    mode = "baseline (today's bounds: history_per_run only)" if args.baseline else "retention at the defaults"
    how = f"sampled at {args.sample_hours} h" if args.sample_hours else "every poll"
    print(f"store_size: {args.runs} runs, {args.hours:g} h simulated, {mode}, {how}; load average {load_before:.2f}")
    print(
        f"readings kept {policy.history_seconds:.0f} s; notifications {policy.notification_seconds / 86400:g} d;"
        f" actions {policy.action_seconds / 86400:g} d; maintenance every {policy.maintenance_interval:.0f} s"
    )
    print(HEADER)
    every = [0.25, 0.5, *_frange(args.every, args.hours, args.every)]
    points = day.samples if args.sample_hours else [h * HOUR for h in every]
    started = time.perf_counter()
    first: tuple[float, int] | None = None
    for at in points:
        if at > args.hours * HOUR:
            break
        while day.now < T0 + at:
            day.tick()
            day.now += TICK
        print(sample_line(day, at), flush=True)
        if first is None and at >= policy.history_seconds + HOUR:
            first = (at, day.store.file_stats().file_bytes)
    elapsed = time.perf_counter() - started
    final = day.store.file_stats()
    c = day.count
    print(
        f"done in {elapsed:.0f} s; {c.saves} saves, {c.notifications} notifications, {c.actions} action records,"
        f" {c.finished} runs finished, {c.retired} retired; load average {os.getloadavg()[0]:.2f}"
    )
    per_reading = reading_bytes(day.path)
    print(f"a stored reading: {per_reading:.0f} B with its indexes")
    if not args.baseline:
        print(
            f"maintenance: {c.maintain_calls} calls ran steps, {c.maintain_seconds:.2f} s in all; worst step"
            f" {c.worst_step * 1000:.1f} ms ({c.worst_step_name}); pruned {dict(c.deleted)}"
        )
    if first is not None:
        print(
            f"{first[1] / 1e6:.1f} MB at {first[0] / HOUR:g} h, {final.file_bytes / 1e6:.1f} MB at the end"
            f" ({(final.file_bytes - first[1]) / 1e6:+.1f} MB); {final.file_bytes / max(args.runs, 1) / 1e3:.1f} KB"
            " per watched run"
        )
    if not args.baseline:
        print(steady_state(day))
    # Issue 10 measured today's store growing 11.6 MB/min at 10,000 runs polled every 30 s (580 B a
    # reading), until 2,000 readings a run; notifications and actions were never pruned.
    today = args.runs * min(args.hours * HOUR / 30.0, 2000) * 11.6e6 / (10_000 * 2)
    print(
        f"today's bounds at {args.runs} runs after {args.hours:g} h (11.6 MB/min at 10,000 runs, up to 2,000"
        f" readings a run): {today / 1e6:.0f} MB; this file: {final.file_bytes / 1e6:.1f} MB"
        f" ({today / max(final.file_bytes, 1):.1f}x)"
    )


def steady_state(day: Day) -> str:
    """What the file settles at once every retention has passed: the readings as now, plus a retention's
    worth of notifications and actions at this day's rates, plus the tombstones' bound."""
    sizes = table_bytes(day.path)
    days = max((day.now - T0) / 86400, 1e-9)
    notif_each = per_row(
        day.path,
        "notifications",
        sizes.get("notifications", 0) + sizes.get("outbox", 0) + sizes.get("thread_refs", 0),
        payload="length(data) + 2 * length(dedup_key) + 2 * length(thread_key) + 150",
    )
    action_each = per_row(
        day.path, "actions", sizes.get("actions", 0), payload="length(evidence) + length(reason) + 120"
    )
    readings = sizes.get("run_history", 0) + sizes.get("run_latest", 0) + sizes.get("alerts", 0)
    notifications = day.count.notifications / days * day.policy.notification_seconds / 86400 * notif_each
    actions = day.count.actions / days * day.policy.action_seconds / 86400 * action_each
    tombstones = day.policy.tombstones_kept * 120  # a known_runs row with its indexes, about
    total = readings + notifications + actions + tombstones
    return (
        f"steady state (projected): readings {readings / 1e6:.1f} MB + notifications {notifications / 1e6:.1f} MB"
        f" ({day.count.notifications / days:.0f}/day x {day.policy.notification_seconds / 86400:g} d x"
        f" {notif_each:.0f} B) + actions {actions / 1e6:.1f} MB ({day.count.actions / days:.0f}/day x"
        f" {day.policy.action_seconds / 86400:g} d) + tombstones <= {tombstones / 1e6:.1f} MB = {total / 1e6:.1f} MB,"
        f" {total / max(day.args.runs, 1) / 1e3:.1f} KB per watched run"
    )


def _frange(start: float, stop: float, step: float) -> list[float]:
    out, value = [], start
    while value <= stop + 1e-9:
        out.append(value)
        value += step
    return out


if __name__ == "__main__":
    main()
