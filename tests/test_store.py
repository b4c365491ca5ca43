"""The SQLite state store: round-trips, bounds, the outbox, the action log, restarts, two processes."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from monitor.enforce.evidence import Evidence, Reading
from monitor.records import ActionRecord, AlertState, Notification, Protection
from monitor.snapshots import BillingRow, RunSnapshot, WalletSnapshot
from monitor.store.schema import MIGRATIONS, Migration, migrate, read_version
from monitor.store.state_store import SCHEMA_VERSION, KnownRun, SchemaTooNewError, StateStore, StoreError

T0 = 1_800_000_000.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "monitor.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[StateStore]:
    with StateStore(db_path, history_per_run=10, wallet_history_limit=5) as opened:
        yield opened


def run_snapshot(run_id: str = "run-a", taken_at: float = T0, cost: float = 1.25) -> RunSnapshot:
    return RunSnapshot(
        run_id=run_id,
        taken_at=taken_at,
        run_name=f"exp-{run_id}",
        base_model="Qwen/Qwen3.5-9B",
        status="RUNNING",
        team_id="team-1",
        # Past 2**53: a float column would round these; they must come back exact.
        training_tokens=2**53 + 1,
        inference_input_tokens=10**20,
        inference_output_tokens=7,
        training_cost_usd=0.1 + 0.2,
        inference_cost_usd=1 / 3,
        total_tokens=2**53 + 10**20 + 8,
        total_cost_usd=cost,
        training_price_per_mtok=0.6,
        inference_input_price_per_mtok=None,
        inference_output_price_per_mtok=1e-300,
        record_count=42,
    )


def wallet_snapshot(taken_at: float = T0, balance: float = 1234.5678901234567) -> WalletSnapshot:
    return WalletSnapshot(
        wallet_id="wallet-1",
        taken_at=taken_at,
        balance_usd=balance,
        team_id="team-1",
        total_billings=2,
        billings=(
            BillingRow(id="b2", resource_type="training", resource_id="run-a", amount_usd=0.1 + 0.2, created_at=T0),
            BillingRow(
                id="b1",
                resource_type="inference",
                resource_id=None,
                amount_usd=2.5,
                created_at=T0 - 60,
                last_billed_at=T0,
            ),
        ),
    )


def notification(dedup_key: str = "run-a/run-cap/1/alert", created_at: float = T0) -> Notification:
    return Notification(
        kind="alert",
        dedup_key=dedup_key,
        thread_key="run-a/run-cap/1",
        severity="warning",
        title="run exp-a at 80% of its budget",
        text="cost $40.00 of $50.00 — résumé ✓",
        created_at=created_at,
        subject="run-a",
        rule="run-cap",
        fields=(("cost", "$40.00"), ("limit", "$50.00")),
        link="https://app.primeintellect.ai/dashboard/training/run-a",
    )


def action(
    decision: str, *, created_at: float = T0, run_id: str = "run-a", intent_id: int | None = None
) -> ActionRecord:
    return ActionRecord(
        run_id=run_id,
        rule="run-cap",
        decision=decision,  # type: ignore[arg-type]
        reason=f"{decision} because total_cost_usd 51.5 > 50",
        created_at=created_at,
        config_hash="abc123",
        dry_run=False,
        evidence=Evidence.of(
            [
                Reading(
                    source="poll",
                    taken_at=T0,
                    total_cost_usd=0.1 + 0.2,
                    metric="total_tokens",
                    value=float(2**60),
                    limit=50.0,
                    record_count=2**60,
                    status="RUNNING",
                )
            ]
        ),
        intent_id=intent_id,
    )


def count_rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


# -- opening and the schema --------------------------------------------------------------------------------


def test_a_missing_directory_and_file_are_created_at_the_current_version(tmp_path: Path) -> None:
    # Only a path with nothing at it is created; an existing empty file is refused
    # (tests/test_store_integrity.py).
    path = tmp_path / "deep" / "er" / "monitor.db"
    with StateStore(path) as opened:
        assert opened.schema_version == SCHEMA_VERSION
        assert opened.latest_run_snapshots() == {}
    assert path.exists()


def test_the_file_uses_wal_and_a_busy_timeout(db_path: Path, store: StateStore) -> None:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_from_a_newer_schema_is_refused_naming_the_file_and_both_versions(db_path: Path) -> None:
    StateStore(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at, description) VALUES (99, 0, 'future')")
    with pytest.raises(SchemaTooNewError) as caught:
        StateStore(db_path)
    message = str(caught.value)
    assert str(db_path) in message
    assert "99" in message
    assert f"up to version {SCHEMA_VERSION}" in message


def test_a_failing_migration_leaves_the_file_at_the_previous_version(db_path: Path) -> None:
    StateStore(db_path).close()
    broken = Migration(
        version=SCHEMA_VERSION + 1,
        description="half-applied",
        statements=("CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"),
    )
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, path=str(db_path), migrations=(*MIGRATIONS, broken))
        assert read_version(conn) == SCHEMA_VERSION
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone() is None
    finally:
        conn.close()


def test_a_file_that_is_not_a_database_gives_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"garbage\.db"):
        StateStore(path)


def test_memory_store_works_and_a_closed_store_says_so() -> None:
    opened = StateStore(":memory:")
    opened.set_meta("k", "v")
    assert opened.get_meta("k") == "v"
    opened.close()
    opened.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        opened.get_meta("k")


# -- runs --------------------------------------------------------------------------------------------------


def test_run_snapshot_round_trips_exactly(store: StateStore) -> None:
    saved = run_snapshot()
    store.save_run_snapshot(saved)
    assert store.latest_run_snapshots() == {"run-a": saved}
    [loaded] = store.run_history("run-a")
    assert loaded == saved
    assert loaded.training_tokens == 2**53 + 1
    assert loaded.inference_input_tokens == 10**20
    assert loaded.training_cost_usd == 0.1 + 0.2
    assert loaded.inference_output_price_per_mtok == 1e-300


def test_latest_is_the_newest_reading_even_when_an_older_one_arrives_late(store: StateStore) -> None:
    store.save_run_snapshot(run_snapshot(taken_at=T0 + 60, cost=2.0))
    store.save_run_snapshot(run_snapshot(taken_at=T0, cost=1.0))
    store.save_run_snapshot(run_snapshot("run-b", taken_at=T0, cost=9.0))
    latest = store.latest_run_snapshots()
    assert latest["run-a"].total_cost_usd == 2.0
    assert latest["run-b"].total_cost_usd == 9.0
    assert [s.total_cost_usd for s in store.run_history("run-a")] == [1.0, 2.0]


def test_history_per_run_is_bounded_to_the_newest_rows(db_path: Path, store: StateStore) -> None:
    for i in range(25):
        store.save_run_snapshot(run_snapshot(taken_at=T0 + i, cost=float(i)))
    store.save_run_snapshot(run_snapshot("run-b", taken_at=T0))
    history = store.run_history("run-a")
    assert [s.total_cost_usd for s in history] == [float(i) for i in range(15, 25)]
    assert len(store.run_history("run-b")) == 1
    assert count_rows(db_path, "run_history") == 11  # pruned on disk, not just hidden


def test_a_smaller_bound_on_reopen_prunes_at_the_next_insert(db_path: Path, store: StateStore) -> None:
    for i in range(10):
        store.save_run_snapshot(run_snapshot(taken_at=T0 + i))
    store.close()
    with StateStore(db_path, history_per_run=3) as smaller:
        smaller.save_run_snapshot(run_snapshot(taken_at=T0 + 10))
        assert [s.taken_at for s in smaller.run_history("run-a")] == [T0 + 8, T0 + 9, T0 + 10]


def test_run_history_since_and_limit(store: StateStore) -> None:
    for i in range(8):
        store.save_run_snapshot(run_snapshot(taken_at=T0 + 10 * i, cost=float(i)))
    assert [s.total_cost_usd for s in store.run_history("run-a", since=T0 + 50)] == [5.0, 6.0, 7.0]
    assert [s.total_cost_usd for s in store.run_history("run-a", limit=2)] == [6.0, 7.0]
    assert [s.total_cost_usd for s in store.run_history("run-a", since=T0 + 20, limit=10)] == [2, 3, 4, 5, 6, 7]
    assert store.run_history("run-a", since=T0 + 1000) == []
    assert store.run_history("nope") == []


def test_known_runs_source_first_seen_and_finish(store: StateStore) -> None:
    store.remember_run("run-a", source="discovered", seen_at=T0 + 5)
    store.remember_run("run-a", source="config", seen_at=T0)
    store.remember_run("run-a", source="discovered", seen_at=T0 + 100)
    store.remember_run("run-b", source="discovered", seen_at=T0)
    store.mark_run_finished("run-b", finished_at=T0 + 300)
    store.mark_run_finished("run-c", finished_at=T0 + 400)
    assert store.known_runs() == {
        "run-a": KnownRun(run_id="run-a", source="config", first_seen=T0, finished_at=None),
        "run-b": KnownRun(run_id="run-b", source="discovered", first_seen=T0, finished_at=T0 + 300),
        "run-c": KnownRun(run_id="run-c", source="discovered", first_seen=T0 + 400, finished_at=T0 + 400),
    }


def test_forget_run_drops_its_state_but_keeps_the_action_log(store: StateStore) -> None:
    for run_id in ("run-a", "run-b"):
        store.save_run_snapshot(run_snapshot(run_id))
        store.remember_run(run_id, source="discovered", seen_at=T0)
        store.save_alert(AlertState(subject=run_id, rule="run-cap", tier=1))
    store.append_action(action("deleted"))
    store.forget_run("run-a", now=T0 + 100)
    assert list(store.latest_run_snapshots()) == ["run-b"]
    assert store.run_history("run-a") == []
    # Its id stays as a tombstone, finished and retired, so a restart neither polls nor rediscovers it.
    assert store.known_runs()["run-a"] == KnownRun(
        run_id="run-a", source="discovered", first_seen=T0, finished_at=T0 + 100, retired_at=T0 + 100
    )
    assert store.known_runs()["run-b"].retired_at is None
    assert store.get_alert("run-a", "run-cap") is None
    assert [a.run_id for a in store.actions()] == ["run-a"]
    # A run seen again after being forgotten starts a fresh history.
    store.save_run_snapshot(run_snapshot("run-a", taken_at=T0 + 1))
    assert len(store.run_history("run-a")) == 1


# -- wallet ------------------------------------------------------------------------------------------------


def test_wallet_latest_keeps_billings_and_history_keeps_balances(db_path: Path, store: StateStore) -> None:
    assert store.latest_wallet() is None
    for i in range(8):
        store.save_wallet_snapshot(wallet_snapshot(taken_at=T0 + i, balance=1000.0 - i / 3))
    latest = store.latest_wallet()
    assert latest == wallet_snapshot(taken_at=T0 + 7, balance=1000.0 - 7 / 3)
    assert latest is not None and latest.training_run_ids() == ["run-a"]
    history = store.wallet_history()
    assert [w.balance_usd for w in history] == [1000.0 - i / 3 for i in range(3, 8)]  # bounded to 5
    assert all(w.billings == () and w.wallet_id == "wallet-1" for w in history)
    assert [w.taken_at for w in store.wallet_history(since=T0 + 6)] == [T0 + 6, T0 + 7]
    assert count_rows(db_path, "wallet_history") == 5


def test_an_older_wallet_reading_does_not_replace_the_latest(store: StateStore) -> None:
    store.save_wallet_snapshot(wallet_snapshot(taken_at=T0 + 10, balance=5.0))
    store.save_wallet_snapshot(wallet_snapshot(taken_at=T0, balance=7.0))
    latest = store.latest_wallet()
    assert latest is not None and latest.balance_usd == 5.0


# -- alerts ------------------------------------------------------------------------------------------------


def test_alert_state_round_trips_and_filters_firing(store: StateStore) -> None:
    firing = AlertState(
        subject="run-a",
        rule="run-cap",
        tier=2,
        episode=3,
        opened_at=T0,
        last_notified_at=T0 + 1.5,
        last_value=0.1 + 0.2,
        severity="critical",
    )
    quiet = AlertState(subject="wallet-1", rule="wallet-floor")
    store.save_alert(firing)
    store.save_alert(quiet)
    assert store.get_alert("run-a", "run-cap") == firing
    assert store.get_alert("run-a", "other") is None
    assert store.alerts() == [firing, quiet]
    assert store.alerts(firing_only=True) == [firing]
    firing.tier = 0
    store.save_alert(firing)
    assert store.alerts(firing_only=True) == []


# -- outbox ------------------------------------------------------------------------------------------------


def test_notification_round_trips_with_tuple_fields(store: StateStore) -> None:
    sent = notification()
    assert store.outbox.enqueue(sent, channels=["slack"], now=T0)
    [item] = store.outbox.pending()
    assert item.notification == sent
    assert item.notification.fields == (("cost", "$40.00"), ("limit", "$50.00"))
    assert isinstance(item.notification.fields[0], tuple)
    assert (item.channel, item.attempts, item.next_attempt_at, item.last_error) == ("slack", 0, T0, None)


def test_enqueue_deduplicates_for_ever(db_path: Path, store: StateStore) -> None:
    assert store.outbox.enqueue(notification(), channels=["slack", "webhook"], now=T0) is True
    assert store.outbox.enqueue(notification(), channels=["slack", "console"], now=T0 + 1) is False
    assert [i.channel for i in store.outbox.pending()] == ["slack", "webhook"]
    for item in store.outbox.pending():
        store.outbox.mark_delivered(item.id, now=T0 + 2)
    # Delivered does not mean forgotten: the same key is still refused.
    assert store.outbox.enqueue(notification(), channels=["slack"], now=T0 + 3) is False
    assert count_rows(db_path, "notifications") == 1
    assert store.outbox.pending() == []


def test_due_respects_next_attempt_and_orders_oldest_first(store: StateStore) -> None:
    for key in ("k1", "k2", "k3"):
        store.outbox.enqueue(notification(key), channels=["slack"], now=T0)
    first = store.outbox.pending()[0]
    store.outbox.mark_failed(first.id, error="HTTP 503", next_attempt_at=T0 + 30)
    assert [i.notification.dedup_key for i in store.outbox.due(now=T0)] == ["k2", "k3"]
    assert [i.notification.dedup_key for i in store.outbox.due(now=T0, limit=1)] == ["k2"]
    assert [i.notification.dedup_key for i in store.outbox.due(now=T0 + 30)] == ["k1", "k2", "k3"]
    assert [i.notification.dedup_key for i in store.outbox.pending()] == ["k1", "k2", "k3"]


def test_mark_failed_counts_attempts_and_keeps_the_error(store: StateStore) -> None:
    store.outbox.enqueue(notification(), channels=["webhook"], now=T0)
    [item] = store.outbox.pending()
    store.outbox.mark_failed(item.id, error="connect refused", next_attempt_at=T0 + 10)
    store.outbox.mark_failed(item.id, error="HTTP 500", next_attempt_at=T0 + 40)
    [again] = store.outbox.pending()
    assert (again.attempts, again.last_error, again.next_attempt_at) == (2, "HTTP 500", T0 + 40)
    assert store.outbox.due(now=T0 + 39) == []


def test_each_channel_is_delivered_independently(store: StateStore) -> None:
    store.outbox.enqueue(notification(), channels=["slack", "webhook", "console"], now=T0)
    by_channel = {item.channel: item for item in store.outbox.pending()}
    store.outbox.mark_delivered(by_channel["console"].id, now=T0)
    store.outbox.mark_failed(by_channel["slack"].id, error="ratelimited", next_attempt_at=T0 + 60)
    assert [i.channel for i in store.outbox.due(now=T0)] == ["webhook"]
    assert [i.channel for i in store.outbox.due(now=T0, channel="slack")] == []
    assert [i.channel for i in store.outbox.pending(channel="slack")] == ["slack"]
    assert store.outbox.delivered_count() == 1
    assert store.outbox.delivered_count(channel="console") == 1
    assert store.outbox.delivered_count(channel="slack") == 0
    store.outbox.mark_delivered(by_channel["console"].id, now=T0 + 5)  # twice is harmless
    assert store.outbox.delivered_count() == 1


def test_enqueue_needs_a_channel(store: StateStore) -> None:
    with pytest.raises(ValueError, match="channel"):
        store.outbox.enqueue(notification(), channels=[], now=T0)
    assert store.outbox.enqueue(notification(), channels=["slack"], now=T0)


def test_thread_refs(store: StateStore) -> None:
    assert store.outbox.thread_ref("slack", "run-a/run-cap/1") is None
    store.outbox.set_thread_ref("slack", "run-a/run-cap/1", "1800000000.000100")
    store.outbox.set_thread_ref("webhook", "run-a/run-cap/1", "other")
    assert store.outbox.thread_ref("slack", "run-a/run-cap/1") == "1800000000.000100"
    store.outbox.set_thread_ref("slack", "run-a/run-cap/1", "1800000001.000200")
    assert store.outbox.thread_ref("slack", "run-a/run-cap/1") == "1800000001.000200"
    assert store.outbox.thread_ref("webhook", "run-a/run-cap/1") == "other"


# -- action log ------------------------------------------------------------------------------------------


def test_actions_round_trip_newest_first_with_ids(store: StateStore) -> None:
    first = store.append_action(action("delete_pending", created_at=T0))
    second = store.append_action(action("delete_intent", created_at=T0 + 120))
    third = store.append_action(action("deleted", created_at=T0 + 121, intent_id=second))
    store.append_action(action("would_delete", created_at=T0 + 200, run_id="run-b"))
    assert first < second < third
    records = store.actions(run_id="run-a")
    assert [(r.id, r.decision) for r in records] == [
        (third, "deleted"),
        (second, "delete_intent"),
        (first, "delete_pending"),
    ]
    assert records[0] == replace(action("deleted", created_at=T0 + 121, intent_id=second), id=third)
    assert records[0].evidence.readings[0].total_cost_usd == 0.1 + 0.2
    assert records[0].evidence.readings[0].record_count == 2**60
    assert [r.decision for r in store.actions(limit=2)] == ["would_delete", "deleted"]
    assert [r.decision for r in store.actions(since=T0 + 121)] == ["would_delete", "deleted"]


def test_open_actions_are_intents_without_a_result(store: StateStore) -> None:
    done = store.append_action(action("delete_intent", created_at=T0))
    store.append_action(action("deleted", created_at=T0 + 1, intent_id=done))
    open_one = store.append_action(action("delete_intent", created_at=T0 + 2, run_id="run-b"))
    store.append_action(action("refused", created_at=T0 + 3, run_id="run-c"))
    assert [r.id for r in store.open_actions("delete_intent")] == [open_one]
    assert store.open_actions("delete_pending") == []


def test_count_actions_in_a_window(store: StateStore) -> None:
    for offset, decision in ((0, "deleted"), (1800, "deleted"), (3000, "already_gone"), (3500, "refused")):
        store.append_action(action(decision, created_at=T0 + offset))
    assert store.count_actions(decisions=["deleted", "already_gone"], since=T0 + 600) == 2
    assert store.count_actions(decisions=["deleted"], since=T0) == 2
    assert store.count_actions(decisions=["deleted"], since=T0 + 4000) == 0
    assert store.count_actions(decisions=[], since=T0) == 0


# -- protections and meta --------------------------------------------------------------------------------


def test_protections_expire_replace_and_unprotect(store: StateStore) -> None:
    store.protect("run-a", until=T0 + 3600, reason="demo tomorrow", now=T0)
    store.protect("run-b", until=None, reason="prod", now=T0)
    assert store.protections(now=T0) == [
        Protection(run_id="run-a", created_at=T0, until=T0 + 3600, reason="demo tomorrow"),
        Protection(run_id="run-b", created_at=T0, until=None, reason="prod"),
    ]
    assert [p.run_id for p in store.protections(now=T0 + 3600)] == ["run-b"]
    store.protect("run-a", until=T0 + 7200, reason="extended", now=T0 + 100)
    assert store.protections(now=T0 + 3600)[0] == Protection("run-a", T0 + 100, T0 + 7200, "extended")
    assert store.unprotect("run-b") is True
    assert store.unprotect("run-b") is False
    assert [p.run_id for p in store.protections(now=T0)] == ["run-a"]


def test_meta(store: StateStore) -> None:
    assert store.get_meta("last_config_hash") is None
    store.set_meta("last_config_hash", "abc")
    store.set_meta("last_config_hash", "def")
    assert store.get_meta("last_config_hash") == "def"


# -- restarts and a second process ----------------------------------------------------------------------


def test_a_new_store_on_the_same_file_sees_everything(db_path: Path) -> None:
    with StateStore(db_path) as first:
        first.save_run_snapshot(run_snapshot())
        first.remember_run("run-a", source="config", seen_at=T0)
        first.save_wallet_snapshot(wallet_snapshot())
        first.save_alert(AlertState(subject="run-a", rule="run-cap", tier=1, opened_at=T0))
        first.outbox.enqueue(notification(), channels=["slack"], now=T0)
        first.outbox.set_thread_ref("slack", "t", "ts-1")
        intent = first.append_action(action("delete_intent"))
        first.protect("run-a", until=None, reason="x", now=T0)
        first.set_meta("k", "v")
    with StateStore(db_path) as second:
        assert second.latest_run_snapshots() == {"run-a": run_snapshot()}
        assert second.run_history("run-a") == [run_snapshot()]
        assert list(second.known_runs()) == ["run-a"]
        assert second.latest_wallet() == wallet_snapshot()
        assert second.alerts(firing_only=True)[0].opened_at == T0
        assert second.outbox.enqueue(notification(), channels=["slack"], now=T0) is False
        assert [i.notification for i in second.outbox.due(now=T0)] == [notification()]
        assert second.outbox.thread_ref("slack", "t") == "ts-1"
        assert [r.id for r in second.open_actions("delete_intent")] == [intent]
        assert [p.run_id for p in second.protections(now=T0)] == ["run-a"]
        assert second.get_meta("k") == "v"
        # History numbering continues: the bound still holds after a restart.
        second.save_run_snapshot(run_snapshot(taken_at=T0 + 1))
        assert len(second.run_history("run-a")) == 2


def test_a_second_store_reads_while_the_first_is_writing(db_path: Path) -> None:
    with StateStore(db_path) as daemon, StateStore(db_path) as cli:
        daemon.set_meta("k", "committed")
        with daemon._write() as conn:  # a write transaction left open, as mid-write
            conn.execute("UPDATE meta SET value = 'uncommitted' WHERE key = 'k'")
            assert cli.get_meta("k") == "committed"  # WAL: the reader is not blocked and sees no half-write
            assert cli.protections(now=T0) == []
        assert cli.get_meta("k") == "uncommitted"
        cli.protect("run-a", until=None, reason="from the CLI", now=T0)
        assert [p.run_id for p in daemon.protections(now=T0)] == ["run-a"]


def test_a_second_writer_waits_for_the_lock_instead_of_failing(db_path: Path) -> None:
    with StateStore(db_path) as daemon, StateStore(db_path, busy_timeout_ms=20_000) as cli:
        errors: list[BaseException] = []

        def protect_from_cli() -> None:
            try:
                cli.protect("run-a", until=None, reason="cli", now=T0)
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=protect_from_cli)
        with daemon._write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            writer.start()
            writer.join(timeout=0.3)
            assert writer.is_alive()  # blocked on the daemon's write lock, not failed
        writer.join(timeout=20)
        assert not writer.is_alive() and errors == []
        assert [p.run_id for p in daemon.protections(now=T0)] == ["run-a"]


def test_a_writer_that_outwaits_the_busy_timeout_gets_an_error_naming_the_file(db_path: Path) -> None:
    with StateStore(db_path) as daemon, StateStore(db_path, busy_timeout_ms=10) as cli:
        with daemon._write(), pytest.raises(StoreError, match=r"monitor\.db.*locked"):
            cli.set_meta("k", "v")
        cli.set_meta("k", "v")  # the failed attempt left no transaction behind
        assert daemon.get_meta("k") == "v"
