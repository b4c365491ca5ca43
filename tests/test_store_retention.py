"""What the state store keeps and what it prunes, on a manual clock (the `now` passed in).

Readings by time (the burn window), the wallet by the spend window, retired runs as tombstones,
notifications only once their dedup key can never be published again (so nothing is sent twice after
pruning), the action log never for a run with an open delete episode, expired protections.
Vacuum, batches, the daemon's hook and restarts: test_store_maintenance.py.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from monitor.alerts.machine import advance_alert
from monitor.alerts.words import AlertContext
from monitor.config.load import load_settings
from monitor.config.settings import ConfigError, Settings
from monitor.enforce.messages import DeleteContext, pending_notice, result_notice
from monitor.records import AlertState, Notification
from monitor.rules.config import RunRule
from monitor.rules.evaluate import evaluate_run
from monitor.store.retention import KEEP_NEWEST_READINGS, PRUNE_PER_SAVE, RetentionPolicy
from monitor.store.state_store import KnownRun, StateStore
from tests.test_store import T0, action, count_rows, notification, run_snapshot, wallet_snapshot

DAY = 86400.0
POLICY = RetentionPolicy(
    history_seconds=600.0,
    wallet_history_seconds=3600.0,
    notification_seconds=7 * DAY,
    action_seconds=90 * DAY,
    finished_run_seconds=DAY,
    tombstones_kept=3,
    configured_runs=frozenset({"run-configured"}),
    maintenance_interval=300.0,
)
RULE = RunRule(name="run-cap", threshold=10.0, warn_at=[0.5], renotify=3600.0)
CHANNEL = "slack"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[StateStore]:
    with StateStore(db_path, retention=POLICY) as opened:
        yield opened


def maintain(store: StateStore, *, now: float, policy: RetentionPolicy = POLICY) -> dict[str, int]:
    """One whole maintenance cycle at `now`; the rows it deleted, by table."""
    deleted: dict[str, int] = {}
    for _ in range(10_000):
        report = store.maintain(policy, now=now, force=True)
        assert report is not None and report.error is None
        for table, rows in report.deleted.items():
            deleted[table] = deleted.get(table, 0) + rows
        if report.cycle_done:
            return deleted
    raise AssertionError("the cycle never finished")


def publish(store: StateStore, note: Notification, *, now: float, delivered_at: float | None = None) -> bool:
    """Queue for one channel and (unless None) deliver; False if the key was published before."""
    fresh = store.outbox.enqueue(note, channels=[CHANNEL], now=now)
    if fresh and delivered_at is not None:
        [item] = [i for i in store.outbox.pending() if i.notification.dedup_key == note.dedup_key]
        store.outbox.mark_delivered(item.id, now=delivered_at, thread_key=note.thread_key or None, ref="ts-1")
    return fresh


def closed_alert(store: StateStore, run_id: str, kind_key: str) -> Notification:
    """A notification of an alert episode that resolved (its state saved so), keyed as the alert code does."""
    store.save_alert(AlertState(subject=run_id, rule="run-cap", tier=0, last_notified_at=T0))
    key = f"{kind_key.split(':')[0]}:{run_id}:run-cap:e0" + (f":{kind_key.split(':')[1]}" if ":" in kind_key else "")
    return replace(notification(key), subject=run_id, thread_key=f"{run_id}:run-cap:e0")


def stored_keys(store: StateStore) -> set[str]:
    with store._read() as conn:
        return {str(row[0]) for row in conn.execute("SELECT dedup_key FROM notifications")}


class AlertDriver:
    """The pipeline's alert steps for one subject x rule: the real rule evaluation and state machine,
    publish before save (as monitor.pipeline does)."""

    def __init__(self, store: StateStore, subject: str) -> None:
        self.store = store
        self.subject = subject

    def transition(self, cost: float, *, now: float, save: bool = True) -> list[Notification]:
        snapshot = replace(run_snapshot(self.subject, taken_at=now), total_cost_usd=cost)
        evaluation = evaluate_run(RULE, snapshot, [], now=now, burn_window=900.0)
        assert evaluation is not None
        previous = self.store.get_alert(self.subject, RULE.name)
        context = AlertContext(subject_name=self.subject, run_id=self.subject)
        state, notes = advance_alert(previous, evaluation, rule=RULE, context=context, now=now)
        fresh = [n for n in notes if publish(self.store, n, now=now, delivered_at=now + 1)]
        if save and (previous is None or state != previous):
            self.store.save_alert(state)
        return fresh


# -- readings ---------------------------------------------------------------------------------------------


def test_readings_are_kept_for_the_window_and_the_newest_few_stay_after_polling_stops(
    db_path: Path, store: StateStore
) -> None:
    for i in range(120):  # an hour at 30 s
        store.save_run_snapshot(run_snapshot(taken_at=T0 + 30 * i, cost=float(i)))
    last = T0 + 30 * 119
    kept = [s.taken_at for s in store.run_history("run-a")]
    assert kept == [T0 + 30 * i for i in range(99, 120)]  # within 600 s of the newest: pruned on save
    assert count_rows(db_path, "run_history") == 21
    # The run is no longer polled (finished, or answering 404): maintenance prunes it by the clock.
    assert maintain(store, now=last + 3600)["run_history"] == 21 - KEEP_NEWEST_READINGS
    assert [s.taken_at for s in store.run_history("run-a")] == [T0 + 30 * i for i in range(115, 120)]
    assert store.latest_run_snapshots()["run-a"].taken_at == last


def test_a_save_prunes_a_few_rows_at_most_and_leaves_a_backlog_to_maintenance(db_path: Path) -> None:
    with StateStore(db_path) as before_the_bound:  # a file from before retention: 300 readings a run
        for i in range(300):
            before_the_bound.save_run_snapshot(run_snapshot(taken_at=T0 + 30 * i))
    with StateStore(db_path, retention=POLICY) as store:
        store.save_run_snapshot(run_snapshot(taken_at=T0 + 30 * 300))
        assert count_rows(db_path, "run_history") == 301 - PRUNE_PER_SAVE  # the poll stays cheap
        maintain(store, now=T0 + 30 * 300)
        assert count_rows(db_path, "run_history") == 21


def test_history_per_run_stays_a_hard_cap_under_the_time_bound(db_path: Path) -> None:
    with StateStore(db_path, history_per_run=10, retention=POLICY) as store:
        for i in range(60):  # 5 s apart: 120 readings would fit in the window
            store.save_run_snapshot(run_snapshot(taken_at=T0 + 5 * i))
        assert len(store.run_history("run-a")) == 10


def test_the_default_bound_keeps_every_reading_the_burn_rate_reads_back(db_path: Path) -> None:
    settings = Settings()
    policy = RetentionPolicy.of(settings)
    with StateStore(db_path, retention=policy) as store:
        for i in range(400):  # at min_interval, as a run near its limit is polled
            store.save_run_snapshot(run_snapshot(taken_at=T0 + 5 * i, cost=float(i)))
        now = T0 + 5 * 399
        maintain(store, now=now, policy=policy)
        # What monitor.pipeline asks for after a restart: everything inside burn_window + interval.
        since = now - settings.poll.burn_window - settings.poll.interval
        readback = store.run_history("run-a", since=since)
        assert [s.taken_at for s in readback] == [T0 + 5 * i for i in range(400) if T0 + 5 * i >= since]
        assert len(store.run_history("run-a")) < 400


def test_wallet_balances_are_kept_for_the_spend_window(db_path: Path, store: StateStore) -> None:
    for i in range(180):  # three hours at 60 s
        store.save_wallet_snapshot(wallet_snapshot(taken_at=T0 + 60 * i, balance=1000.0 - i))
    last = T0 + 60 * 179
    assert [w.taken_at for w in store.wallet_history()] == [T0 + 60 * i for i in range(119, 180)]
    assert store.wallet_history(since=last - 3600)[0].taken_at == last - 3600
    maintain(store, now=last + DAY)
    assert len(store.wallet_history()) == 5 and store.latest_wallet() is not None


def test_the_policy_follows_the_settings_and_an_old_state_section_still_validates(tmp_path: Path) -> None:
    settings = Settings(
        rules=[{"name": "spend", "scope": "wallet", "metric": "spend_usd", "threshold": 500, "window": "2d"}],
        watch={"runs": ["run-x"], "wallet_rows": 300, "retention": "6h"},
        state={"history_margin": "1m", "notification_retention": "3d"},
    )
    policy = RetentionPolicy.of(settings)
    assert policy.history_seconds == 900 + 30 + 60
    assert policy.wallet_history_seconds == 2 * DAY + 60 + 60
    assert policy.notification_seconds == 3 * DAY
    assert policy.action_seconds == 90 * DAY
    assert policy.finished_run_seconds == 6 * 3600
    assert policy.tombstones_kept == 600
    assert policy.configured_runs == {"run-x"}
    assert RetentionPolicy.of(Settings()).wallet_history_seconds == DAY + 60 + 120  # no wallet rule: 24 h
    old = tmp_path / "old.yml"
    old.write_text("state:\n  path: ./x.db\n  history_per_run: 500\n")
    assert load_settings(old).state.history_per_run == 500
    bad = tmp_path / "bad.yml"
    bad.write_text("state:\n  notification_retention: 10m\n")
    with pytest.raises(ConfigError, match=r"state\.notification_retention.*at least 1h"):
        load_settings(bad)


# -- retired runs ---------------------------------------------------------------------------------------


def test_a_finished_run_nobody_retired_is_retired_by_maintenance(store: StateStore) -> None:
    for run_id, finished_at in (("run-old", T0), ("run-recent", T0 + DAY)):
        store.remember_run(run_id, source="discovered", seen_at=T0 - DAY)
        store.save_run_snapshot(run_snapshot(run_id, taken_at=finished_at))
        store.save_alert(AlertState(subject=run_id, rule="run-cap", tier=1))
        store.mark_run_finished(run_id, finished_at=finished_at)
    # watch.retention (1 d) + an interval + an hour of slack: the daemon retires its own runs first.
    now = T0 + DAY + 300 + 3600 + 1
    assert maintain(store, now=now)["runs_retired"] == 1
    assert list(store.latest_run_snapshots()) == ["run-recent"]
    assert store.get_alert("run-old", "run-cap") is None
    assert store.known_runs()["run-old"].retired_at == now
    assert store.known_runs()["run-recent"].retired_at is None


def test_tombstones_beyond_the_kept_number_go_but_configured_runs_keep_theirs(store: StateStore) -> None:
    store.remember_run("run-configured", source="config", seen_at=T0)
    store.mark_run_finished("run-configured", finished_at=T0)
    store.forget_run("run-configured", now=T0 + DAY)
    for i in range(6):
        store.mark_run_finished(f"run-{i}", finished_at=T0 + 10 * (i + 1))
        store.forget_run(f"run-{i}", now=T0 + DAY + i)
    store.mark_run_finished("run-live", finished_at=T0 + 5)
    assert maintain(store, now=T0 + DAY + 100)["known_runs"] == 3
    # The three that finished last stay (discovery could still reach their billing rows), the run named
    # in watch.runs stays, and a finished run not yet retired is no tombstone.
    assert sorted(store.known_runs()) == ["run-3", "run-4", "run-5", "run-configured", "run-live"]


# -- notifications: nothing that can be published again is pruned ------------------------------------------


def test_a_resolved_alert_episode_goes_after_the_retention_and_an_open_one_stays(store: StateStore) -> None:
    for run_id in ("run-a", "run-b"):
        store.remember_run(run_id, source="discovered", seen_at=T0)
    resolved, breached = AlertDriver(store, "run-a"), AlertDriver(store, "run-b")
    gone = resolved.transition(6.0, now=T0) + resolved.transition(11.0, now=T0 + 60)
    gone += resolved.transition(1.0, now=T0 + 120)  # a billing correction: back under, resolved
    kept = breached.transition(11.0, now=T0) + breached.transition(12.0, now=T0 + 3600)
    assert [n.kind for n in gone] == ["alert", "alert", "resolve"] and [n.kind for n in kept] == ["alert", "renotify"]
    assert store.outbox.thread_ref(CHANNEL, gone[0].thread_key) == "ts-1"

    assert maintain(store, now=T0 + 7 * DAY - 1) == {}  # not old enough yet
    pruned = maintain(store, now=T0 + 7 * DAY + 200)
    assert pruned == {"notifications": 3, "outbox": 3, "thread_refs": 1}
    assert stored_keys(store) == {n.dedup_key for n in kept}
    assert store.outbox.thread_ref(CHANNEL, gone[0].thread_key) is None
    assert store.outbox.thread_ref(CHANNEL, kept[0].thread_key) == "ts-1"  # replies still thread
    # The open episode's reminder, derived again (a crash before its state was saved): still dropped.
    store.save_alert(replace(store.get_alert("run-b", "run-cap") or AlertState("", ""), last_notified_at=T0))
    assert breached.transition(12.0, now=T0 + 3600) == []
    # The resolved run crosses again: a new episode, with keys that were never published.
    again = resolved.transition(11.0, now=T0 + 8 * DAY)
    assert [n.dedup_key for n in again] == ["alert:run-a:run-cap:e1:t2"]


def test_no_alert_key_is_ever_published_twice_across_pruning(store: StateStore) -> None:
    """A seeded walk of three runs through warnings, breaches, reminders, resolves and billing
    corrections over 60 days, pruning every day with a one-day retention: every key the outbox accepts
    is new, and crashes between publishing and saving the state change nothing."""
    policy = replace(POLICY, notification_seconds=DAY)
    rng = random.Random(7)
    drivers = [AlertDriver(store, f"run-{i}") for i in range(3)]
    for driver in drivers:
        store.remember_run(driver.subject, source="discovered", seen_at=T0)
    published: set[str] = set()
    now, pruned = T0, 0
    while now < T0 + 60 * DAY:
        now += rng.choice([600.0, 3600.0, 5 * 3600.0])
        for driver in drivers:
            cost = rng.choice([0.0, 3.0, 6.0, 9.0, 12.0, 15.0])
            crash = rng.random() < 0.2  # published, then the process died before saving the state
            fresh = driver.transition(cost, now=now, save=not crash)
            assert not {n.dedup_key for n in fresh} & published, "a key was published twice"
            published |= {n.dedup_key for n in fresh}
            if crash:  # the restart re-derives the same transition: the outbox must drop it
                assert driver.transition(cost, now=now) == []
        if int((now - T0) // DAY) != int((now - T0 - 5 * 3600) // DAY):
            pruned += maintain(store, now=now, policy=policy).get("notifications", 0)
    assert pruned > 20 and len(published) > pruned  # it pruned a lot, and kept what open episodes need


def test_a_key_newer_than_the_saved_state_is_kept_for_the_restart_that_derives_it(store: StateStore) -> None:
    resolved, quiet = AlertDriver(store, "run-a"), AlertDriver(store, "run-b")
    for driver in (resolved, quiet):
        store.remember_run(driver.subject, source="discovered", seen_at=T0)
    resolved.transition(11.0, now=T0)
    resolved.transition(1.0, now=T0 + 60)  # resolved: episode 0 closed
    quiet.transition(1.0, now=T0)  # a state saved with nothing ever announced: episode 0 still unused
    # Each publishes its next alert and the process dies before saving the state.
    crashed = resolved.transition(11.0, now=T0 + 120, save=False) + quiet.transition(11.0, now=T0 + 120, save=False)
    assert [n.dedup_key for n in crashed] == ["alert:run-a:run-cap:e1:t2", "alert:run-b:run-cap:e0:t2"]
    maintain(store, now=T0 + 30 * DAY)  # the daemon was down a month
    assert stored_keys(store) == {n.dedup_key for n in crashed}
    for driver in (resolved, quiet):  # the restart re-derives them: dropped
        assert driver.transition(11.0, now=T0 + 30 * DAY) == []


def test_an_alert_without_saved_state_is_kept_for_a_watched_run_and_pruned_for_a_retired_one(
    store: StateStore,
) -> None:
    store.remember_run("run-live", source="discovered", seen_at=T0)
    store.remember_run("run-retired", source="discovered", seen_at=T0)
    for run_id in ("run-live", "run-retired", "wallet-1"):
        AlertDriver(store, run_id).transition(11.0, now=T0, save=False)
    store.save_wallet_snapshot(wallet_snapshot(taken_at=T0))
    store.mark_run_finished("run-retired", finished_at=T0 + 10)
    store.forget_run("run-retired", now=T0 + DAY)
    maintain(store, now=T0 + 8 * DAY)
    assert stored_keys(store) == {"alert:run-live:run-cap:e0:t2", "alert:wallet-1:run-cap:e0:t2"}


def test_messages_waiting_or_delivered_recently_are_kept(store: StateStore) -> None:
    waiting, late, done = (closed_alert(store, run_id, "alert:t1") for run_id in ("run-a", "run-b", "run-c"))
    publish(store, waiting, now=T0)  # its channel is down for a month
    publish(store, late, now=T0, delivered_at=T0 + 20 * DAY)
    publish(store, done, now=T0, delivered_at=T0 + 1)
    maintain(store, now=T0 + 21 * DAY)
    assert stored_keys(store) == {waiting.dedup_key, late.dedup_key}
    assert [i.notification.dedup_key for i in store.outbox.pending()] == [waiting.dedup_key]


def delete_notes(run_id: str, episode: int, *, concluded: bool) -> list[Notification]:
    context = DeleteContext(run_id=run_id, run_name=None, rule="run-cap", episode=episode, dry_run=False)
    notes = [pending_notice(context, readings=[], deadline=T0 + 120, grace_period=120.0, now=T0)]
    if concluded:
        notes.append(result_notice(context, decision="deleted", reason="DELETE accepted", readings=[], now=T0))
    return notes


def test_delete_messages_stay_while_their_episode_is_open(store: StateStore) -> None:
    for run_id in ("run-pending", "run-intent", "run-done"):
        store.remember_run(run_id, source="discovered", seen_at=T0)
    pending = store.append_action(action("delete_pending", run_id="run-pending"))
    first = store.append_action(action("delete_pending", run_id="run-intent"))
    store.append_action(action("delete_intent", run_id="run-intent", intent_id=first))
    done = store.append_action(action("delete_pending", run_id="run-done"))
    intent = store.append_action(action("delete_intent", run_id="run-done", intent_id=done))
    store.append_action(action("deleted", run_id="run-done", intent_id=intent))
    open_notes = delete_notes("run-pending", pending, concluded=False) + delete_notes(
        "run-intent", first, concluded=False
    )
    for note in [*open_notes, *delete_notes("run-done", done, concluded=True)]:
        publish(store, note, now=T0, delivered_at=T0 + 1)
    cap = replace(notification("delete_cap_reached:live:a3"), kind="delete_cap_reached", thread_key="")
    publish(store, cap, now=T0, delivered_at=T0 + 1)
    assert maintain(store, now=T0 + 8 * DAY)["notifications"] == 3
    assert stored_keys(store) == {n.dedup_key for n in open_notes}
    # After a restart, enforcement announces open countdowns again: the outbox still drops them.
    assert not any(publish(store, note, now=T0 + 8 * DAY) for note in open_notes)


def test_a_message_folded_into_one_still_waiting_stays_until_that_one_is_sent(store: StateStore) -> None:
    folded, newer = closed_alert(store, "run-a", "alert:t1"), closed_alert(store, "run-a", "resolve")
    for note in (folded, newer):
        store.outbox.enqueue(note, channels=[CHANNEL], now=T0)
    old, waiting = store.outbox.pending()
    assert store.outbox.mark_superseded(old.id, by=waiting.id, now=T0 + 1)
    maintain(store, now=T0 + 30 * DAY)
    assert stored_keys(store) == {folded.dedup_key, newer.dedup_key}  # the waiting message will name it
    store.outbox.mark_delivered(waiting.id, now=T0 + 30 * DAY)
    maintain(store, now=T0 + 38 * DAY)
    assert stored_keys(store) == set()


def test_the_monitors_messages_about_itself_stay_while_their_episode_is_open(store: StateStore) -> None:
    def selfwatch(kind: str, key: str) -> Notification:
        return replace(notification(f"{kind}:{key}"), kind=kind, thread_key=f"monitor_blind:{key}")  # type: ignore[arg-type]

    for note in (selfwatch("monitor_blind", "api_unreachable:1800000000"), selfwatch("monitor_blind", "data_stale:1")):
        publish(store, note, now=T0, delivered_at=T0 + 1)
    publish(store, replace(notification("mystery"), kind="from_a_newer_version"), now=T0, delivered_at=T0)  # type: ignore[arg-type]
    store.set_meta("selfwatch_open_episodes", json.dumps({"blind": {"api_unreachable": {"since": T0}}}))
    maintain(store, now=T0 + 8 * DAY)
    assert stored_keys(store) == {"monitor_blind:api_unreachable:1800000000", "mystery"}
    store.set_meta("selfwatch_open_episodes", "not json")  # unreadable: keep all of theirs
    maintain(store, now=T0 + 9 * DAY)
    assert "monitor_blind:api_unreachable:1800000000" in stored_keys(store)


# -- the action log -------------------------------------------------------------------------------------


def test_the_action_log_keeps_open_episodes_and_each_watched_runs_latest_decision(store: StateStore) -> None:
    def log(run_id: str, decision: str, *, intent_id: int | None = None, days: float = 0.0) -> int:
        return store.append_action(action(decision, run_id=run_id, intent_id=intent_id, created_at=T0 + days * DAY))

    for run_id in ("run-a", "run-open", "run-retrying"):
        store.remember_run(run_id, source="discovered", seen_at=T0)
    first = log("run-a", "delete_pending")
    log("run-a", "cancelled", intent_id=first)
    second = log("run-a", "delete_pending", days=1)
    log("run-a", "would_delete", intent_id=second, days=1)
    log("run-open", "delete_pending")  # a countdown still open, 100 days on (the daemon was down)
    pending = log("run-retrying", "delete_pending")
    intent = log("run-retrying", "delete_intent", intent_id=pending)
    log("run-retrying", "failed")  # a retried attempt: no intent_id, the intent stays open
    store.mark_run_finished("run-gone", finished_at=T0)
    gone = log("run-gone", "delete_pending")
    log("run-gone", "deleted", intent_id=gone)
    store.forget_run("run-gone", now=T0 + DAY)
    open_before = [a.id for a in store.open_actions("delete_pending") + store.open_actions("delete_intent")]

    assert maintain(store, now=T0 + 89 * DAY) == {}
    assert maintain(store, now=T0 + 100 * DAY)["actions"] == 5
    left = {(a.run_id, a.decision) for a in store.actions(limit=100)}
    assert left == {
        ("run-a", "would_delete"),  # the dry run reported it: enforcement must still see that
        ("run-open", "delete_pending"),
        ("run-retrying", "delete_pending"),
        ("run-retrying", "delete_intent"),
        ("run-retrying", "failed"),
    }
    # A restart finds exactly the same open episodes: nothing pruned reopens or closes one.
    assert [a.id for a in store.open_actions("delete_pending") + store.open_actions("delete_intent")] == open_before
    assert intent in open_before


def test_a_concluding_record_never_outlives_the_one_it_concludes_even_after_a_clock_jump(store: StateStore) -> None:
    def log(decision: str, *, at: float, intent_id: int | None = None, run_id: str = "run-a") -> int:
        return store.append_action(action(decision, run_id=run_id, intent_id=intent_id, created_at=at))

    store.remember_run("run-a", source="discovered", seen_at=T0)
    pending = log("delete_pending", at=T0 + 10 * DAY + 1)
    log("cancelled", intent_id=pending, at=T0)  # the host clock had stepped back ten days
    later = log("delete_pending", at=T0 + 1)
    log("cancelled", intent_id=later, at=T0 + 2)
    log("would_delete", at=T0, run_id="run-configured")  # named in watch.runs, not yet in known_runs
    assert maintain(store, now=T0 + 100 * DAY)["actions"] == 1  # only the second announcement
    assert store.open_actions("delete_pending") == []
    assert len(store.actions(run_id="run-configured")) == 1


def test_expired_protections_go(store: StateStore) -> None:
    store.protect("run-a", until=T0 + 60, reason="a while", now=T0)
    store.protect("run-b", until=None, reason="for ever", now=T0)
    store.protect("run-c", until=T0 + DAY, reason="a day", now=T0)
    assert maintain(store, now=T0 + 3600)["protections"] == 1
    assert [p.run_id for p in store.protections(now=T0)] == ["run-b", "run-c"]


def test_forget_run_keeps_a_tombstone_that_a_later_finish_does_not_undo(store: StateStore) -> None:
    store.remember_run("run-a", source="config", seen_at=T0)
    store.forget_run("run-a", now=T0 + 50)
    store.remember_run("run-a", source="discovered", seen_at=T0 + 60)  # seen in the wallet again
    assert store.known_runs()["run-a"] == KnownRun(
        run_id="run-a", source="config", first_seen=T0, finished_at=T0 + 50, retired_at=T0 + 50
    )
