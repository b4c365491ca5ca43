"""A wallet's billing rows and the page of them a wallet request asks for.

Rows are sorted newest first by `last_billed_at`, then by id (descending). Two layouts
(the scenario's `billing_rows`):

- `per_run`: one row per run that has landed a record, `bill_<run id>`, whose amount is the
  run's billed total and whose `last_billed_at` moves to each new record.
- `per_record`: one row per landed usage record, `bill_<run id>_<n>` (n from 1), whose amount
  is what that record added and whose times are all the record's time; a correction adds its
  own row `bill_<run id>_corr<k>` (k from 1) with the (negative) change it made. A wallet over
  many runs then holds thousands of rows.

Only the requested page becomes BillingEntry objects. For `per_record` the rows are never all
listed either: every run's records sit on the shared meter grid, so the number of rows newer
than a grid time is a sum over runs, a binary search finds the grid time the page starts at,
and a merge of the runs' rows from there yields the page.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from monitor.api.models import BillingEntry
from monitor.sim.accounting import BillingView, SimRun

BillingRows = Literal["per_run", "per_record"]


def iso(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


@dataclass(frozen=True)
class StaticRow:
    """A scenario's row of another resource type: history that does not move the balance."""

    at: float
    entry: BillingEntry


@dataclass(frozen=True)
class _Row:
    """A row's sort key and what it takes to build it (only done for the page)."""

    at: float
    id: str
    run: SimRun | None = None
    view: BillingView | None = None
    grid_index: int | None = None  # a record row's place on the meter grid
    first_index: int = 0
    amount_usd: float = 0.0
    static: BillingEntry | None = None


def _sort_key(row: _Row) -> tuple[float, str]:
    return row.at, row.id


def _training_row(
    *, row_id: str, run: SimRun, created: float, updated: float, last_billed: float, amount: float, currency: str
) -> BillingEntry:
    return BillingEntry(
        id=row_id,
        created_at=iso(created),
        updated_at=iso(updated),
        last_billed_at=iso(last_billed),
        amount_usd=amount,
        currency=currency,
        resource_type="training",
        resource_id=run.run_id,
    )


def _build(row: _Row, *, currency: str, meter_interval: float) -> BillingEntry:
    if row.static is not None:
        return row.static
    assert row.run is not None
    if row.view is not None:  # per_run
        view = row.view
        assert view.first_billed_at is not None and view.last_billed_at is not None
        return _training_row(
            row_id=row.id,
            run=row.run,
            created=view.first_billed_at,
            # A correction after the last record changes the row: updated_at says when.
            updated=view.updated_at or view.last_billed_at,
            last_billed=view.last_billed_at,
            amount=view.usage.total_cost_usd,
            currency=currency,
        )
    amount = row.amount_usd  # a correction row's is known; a record row's is worked out for the page only
    if row.grid_index is not None:
        amount = row.run.record_amount_usd(row.grid_index, first_index=row.first_index, meter_interval=meter_interval)
    return _training_row(
        row_id=row.id, run=row.run, created=row.at, updated=row.at, last_billed=row.at, amount=amount, currency=currency
    )


def per_run_page(
    *,
    billed: list[tuple[SimRun, BillingView]],
    statics: list[StaticRow],
    currency: str,
    meter_interval: float,
    limit: int,
    offset: int,
) -> tuple[int, list[BillingEntry]]:
    """(total_billings, the page) with one row per run that has landed a record."""
    # Plain (time, id, where) tuples sort fast; ids are unique, so `where` never decides.
    keys: list[tuple[float, str, int]] = [(row.at, row.entry.id, -1 - n) for n, row in enumerate(statics)]
    for n, (run, view) in enumerate(billed):
        if view.landed_records and view.last_billed_at is not None:
            keys.append((view.last_billed_at, f"bill_{run.run_id}", n))
    keys.sort(reverse=True)
    page: list[BillingEntry] = []
    for _, row_id, where in keys[offset : offset + limit]:
        if where < 0:
            page.append(statics[-1 - where].entry)
        else:
            run, view = billed[where]
            page.append(
                _build(_Row(at=0.0, id=row_id, run=run, view=view), currency=currency, meter_interval=meter_interval)
            )
    return len(keys), page


@dataclass(frozen=True)
class _RecordSpan:
    run: SimRun
    first: int
    last: int

    def newer_than(self, grid_index: int) -> int:
        """How many of this run's records land after grid_index."""
        return max(0, self.last - max(self.first, grid_index + 1) + 1)

    def rows_from(self, grid_index: int, meter_interval: float) -> Iterator[_Row]:
        """This run's record rows at or before grid_index, newest first."""
        for index in range(min(self.last, grid_index), self.first - 1, -1):
            yield _Row(
                at=index * meter_interval,
                id=f"bill_{self.run.run_id}_{index - self.first + 1}",
                run=self.run,
                grid_index=index,
                first_index=self.first,
            )


def per_record_page(
    *,
    runs: list[SimRun],
    statics: list[StaticRow],
    now: float,
    currency: str,
    meter_interval: float,
    limit: int,
    offset: int,
) -> tuple[int, list[BillingEntry]]:
    """(total_billings, the page) with one row per landed record and one per correction."""
    spans: list[_RecordSpan] = []
    loose = [_Row(at=s.at, id=s.entry.id, static=s.entry) for s in statics]
    for run in runs:
        span = run.landing_span(now, meter_interval=meter_interval)
        if span is not None:
            spans.append(_RecordSpan(run=run, first=span[0], last=span[1]))
        for number, correction in enumerate(run.corrections, start=1):
            if correction.landed_records and correction.at <= now:
                row_id = f"bill_{run.run_id}_corr{number}"
                loose.append(_Row(at=correction.at, id=row_id, run=run, amount_usd=correction.amount_usd))
    # Rows off the grid (static rows, corrections), oldest first for bisect.
    loose.sort(key=_sort_key)
    loose_times = [row.at for row in loose]
    total = sum(span.last - span.first + 1 for span in spans) + len(loose)
    if offset >= total:
        return total, []

    def newer_than(grid_index: int) -> int:
        at = grid_index * meter_interval
        return sum(span.newer_than(grid_index) for span in spans) + len(loose) - bisect.bisect_right(loose_times, at)

    # The smallest grid index with at most `offset` rows after it: the page starts at or before it.
    low = min([span.first for span in spans] + [int(t // meter_interval) for t in loose_times]) - 1
    high = max([span.last for span in spans] + [int(t // meter_interval) + 1 for t in loose_times])
    while low + 1 < high:  # invariant: newer_than(low) > offset >= newer_than(high)
        middle = (low + high) // 2
        if newer_than(middle) <= offset:
            high = middle
        else:
            low = middle
    start = high
    cut = bisect.bisect_right(loose_times, start * meter_interval)
    sources: list[Iterator[_Row]] = [span.rows_from(start, meter_interval) for span in spans]
    sources.append(reversed(loose[:cut]))
    merged = heapq.merge(*sources, key=_sort_key, reverse=True)
    skip = offset - newer_than(start)
    page = itertools.islice(merged, skip, skip + limit)
    return total, [_build(row, currency=currency, meter_interval=meter_interval) for row in page]
