"""The wallet read: its balance, judged like a run's reading, and the runs its billing rows reveal.

Billing rows come newest first. Discovery pages them until it reaches rows older than the newest one
it saw last time (those it has read before), so a team with thousands of rows misses no new run; the
first read after a start is bounded by `watch.wallet_rows`. When that bound cuts rows, the monitor
says so once and exports how many rows it could not read (runs billed only there may be missed).
"""

from __future__ import annotations

from datetime import datetime

import structlog

from monitor.api.client import PrimeClient
from monitor.api.errors import ApiError
from monitor.api.ids import run_id_problem
from monitor.api.models import BillingEntry
from monitor.clock import Clock
from monitor.config.settings import Settings
from monitor.exporter.live import RuntimeState
from monitor.readings.fetch import failure_kind
from monitor.readings.model import WalletModel
from monitor.readings.watchlist import WatchList
from monitor.snapshots import WalletSnapshot
from monitor.store.state_store import StateStore

log = structlog.get_logger(__name__)

# The wallet reading keeps this many of the newest rows (status views); discovery reads them all.
KEPT_ROWS = 100


def _row_time(row: BillingEntry) -> datetime:
    return row.last_billed_at or row.updated_at or row.created_at


class Discovery:
    def __init__(
        self, *, settings: Settings, store: StateStore, runtime: RuntimeState, clock: Clock, watch: WatchList
    ) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.clock = clock
        self.watch = watch
        self.model = WalletModel()
        # The newest billing time seen by the last read: rows older than it were read before.
        self._watermark: datetime | None = None
        self._refused_ids: set[str] = set()
        self._cut_logged = False

    async def poll(self, client: PrimeClient) -> WalletSnapshot | None:
        taken_at, taken_mono = self.clock.now(), self.clock.monotonic()
        watermark = self._watermark
        try:
            read = await client.read_wallet(
                max_rows=self.settings.watch.wallet_rows,
                stop_when=None if watermark is None else (lambda row: _row_time(row) < watermark),
            )
        except ApiError as exc:
            kind = failure_kind(exc)
            if kind == "invalid_response":
                self.runtime.invalid_response("wallet")
            first = self.runtime.wallet_health.last_kind != kind or not self.runtime.wallet_health.last_poll_failed
            self.runtime.wallet_read_failed(kind=kind, error=str(exc), at=self.clock.now(), mono=self.clock.monotonic())
            if first:
                log.error("wallet_read_failed", kind=kind, error=str(exc))
            return None
        rows = read.wallet.recent_billings
        snapshot = WalletSnapshot.from_response(
            read.wallet.model_copy(update={"recent_billings": rows[:KEPT_ROWS]}), taken_at=taken_at
        )
        verdict = self.model.judge(snapshot)
        if verdict.dropped_transient:
            self.runtime.reading_rejected("wallet", "negative_not_confirmed")
        if verdict.outcome != "accepted":
            if verdict.outcome == "rejected":
                self.runtime.reading_rejected("wallet", verdict.code)
            self.runtime.wallet_read_failed(kind=verdict.outcome, error=verdict.reason, at=taken_at, mono=taken_mono)
            log.warning("wallet_reading_not_accepted", outcome=verdict.outcome, reason=verdict.reason)
            return None
        self.store.save_wallet_snapshot(snapshot)
        self.runtime.wallet_read(snapshot, mono=taken_mono)
        if self.settings.watch.discover:
            self._discover(rows, taken_at=taken_at)
            self._note_coverage(read.complete, rows_read=len(rows), total=read.wallet.total_billings)
        if rows:
            newest = max(_row_time(row) for row in rows)
            self._watermark = newest if watermark is None else max(newest, watermark)
        return snapshot

    def _discover(self, rows: list[BillingEntry], *, taken_at: float) -> None:
        for row in rows:
            run_id = row.resource_id
            if row.resource_type != "training" or not run_id:
                continue
            if run_id in self.watch.discovered or run_id in self.watch.configured:
                continue
            problem = run_id_problem(run_id)
            if problem is not None:
                if run_id not in self._refused_ids:
                    self._refused_ids.add(run_id)
                    self.runtime.unaddressable_run_refused()
                    log.error("discovered_run_id_refused", run_id=run_id[:300], billing_row=row.id, problem=problem)
                continue
            self.watch.discovered.add(run_id)
            self.store.remember_run(run_id, source="discovered", seen_at=taken_at)
            log.info("run_discovered", run_id=run_id)

    def _note_coverage(self, complete: bool, *, rows_read: int, total: int) -> None:
        if complete:
            if self._watermark is None:  # a first read that reached the end: nothing is unread
                self.runtime.discovery_coverage(rows_unread=0)
            return
        unread = max(total - rows_read, 0)
        self.runtime.discovery_coverage(rows_unread=unread)
        if not self._cut_logged:
            self._cut_logged = True
            log.warning(
                "discovery_rows_unread",
                rows_read=rows_read,
                total_billings=total,
                rows_unread=unread,
                hint="runs billed only in older rows may be missed; raise watch.wallet_rows or list them in watch.runs",
            )
