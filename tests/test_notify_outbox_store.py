"""The outbox's rows in the state store: the V2 migration of a file with queued items, the
superseded state, attempt markers, releasing a channel, and a root's ref stored with its delivery."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

from monitor.store.schema import MIGRATIONS, migrate
from monitor.store.state_store import StateStore
from tests.test_notify_blocks import make_notification

T0 = 1_800_000_000.0


def test_a_version_1_file_with_queued_items_migrates_and_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    queued = make_notification(dedup_key="alert:run-1:cap:e0:t1", thread_key="run-1:cap:e0", created_at=T0 - 50)
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, path=str(path), migrations=MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO notifications (dedup_key, created_at, data) VALUES (?, ?, ?)",
        (queued.dedup_key, queued.created_at, json.dumps(asdict(queued))),
    )
    conn.execute("INSERT INTO outbox (notification_id, channel, next_attempt_at) VALUES (1, 'slack', ?)", (T0,))
    conn.close()

    with StateStore(path) as store:
        [item] = store.outbox.pending()
        assert store.schema_version >= 2  # migrated past the version that added queued_at
        assert item.notification == queued and item.queued_at == T0 - 50 and item.attempt_started_at is None
        assert [(e.kind, e.state) for e in store.outbox.thread_entries(channel="slack", thread_key="run-1:cap:e0")] == [
            ("alert", "open")
        ]
        assert store.outbox.outbox_backlog("slack") == (1, T0 - 50)


def test_superseded_items_leave_the_queue_and_travel_with_the_newest(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.db") as store:
        for tier in (1, 2, 3):
            store.outbox.enqueue(
                make_notification(dedup_key=f"t{tier}", title=f"tier {tier}"), channels=["slack"], now=T0
            )
        first, second, third = store.outbox.pending()

        assert store.outbox.mark_superseded(first.id, by=second.id, now=T0 + 1)
        assert store.outbox.mark_superseded(second.id, by=third.id, now=T0 + 2)
        assert not store.outbox.mark_superseded(second.id, by=third.id, now=T0 + 3)  # no longer open

        assert [item.id for item in store.outbox.pending()] == [third.id]
        assert [item.id for item in store.outbox.due(now=T0 + 10)] == [third.id]
        # The first was folded into the second, which was folded into the third: both travel with it.
        assert [item.notification.title for item in store.outbox.superseded_into(third.id)] == ["tier 1", "tier 2"]
        assert store.outbox.superseded_count(channel="slack") == 2 and store.outbox.outbox_backlog("slack") == (1, T0)


def test_attempt_markers_release_and_a_root_ref_stored_with_its_delivery(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.db") as store:
        store.outbox.enqueue(make_notification(dedup_key="a", thread_key="t"), channels=["slack", "webhook"], now=T0)
        slack, webhook = store.outbox.pending()
        store.outbox.mark_attempt_started(slack.id, at=T0 + 1)
        store.outbox.mark_failed(slack.id, error="timeout", next_attempt_at=T0 + 300, attempt_started_at=T0 + 1)
        store.outbox.mark_failed(webhook.id, error="HTTP 400", next_attempt_at=T0 + 300)
        assert [(i.channel, i.attempt_started_at) for i in store.outbox.pending()] == [
            ("slack", T0 + 1),
            ("webhook", None),
        ]

        assert store.outbox.release_channel("slack", now=T0 + 2) == 1
        assert [i.channel for i in store.outbox.due(now=T0 + 2)] == ["slack"]

        store.outbox.mark_delivered(slack.id, now=T0 + 3, thread_key="t", ref="1800000003.000100")
        assert (
            store.outbox.thread_ref("slack", "t") == "1800000003.000100"
            and store.outbox.thread_ref("webhook", "t") is None
        )
        assert store.outbox.open_outbox_channels() == {"webhook": 1}
