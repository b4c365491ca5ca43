"""`read_wallet`: paging the wallet's billing rows for discovery, against the simulator.

A wallet of 250 rows (the spec's page limit is 100): stop at a known row, cut at max_rows, read
to the end, and rows that shift while paging (a run billed between two pages) kept once each.
One case the simulator never produces (a page longer than asked for) is served by canned_api.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from monitor.api.client import PrimeClient
from monitor.api.models import BillingEntry
from tests.support.canned_api import CannedReply, serve_canned_api
from tests.support.simulator import SimulatorHandle, running_simulator

ROWS = 250


def _scenario(rows: int) -> dict[str, Any]:
    billings = [
        {"id": f"bill-{i:03d}", "resource_type": "compute", "amount_usd": 1.0, "billed_ago": 120 + i}
        for i in range(rows)
    ]
    return {"wallets": [{"wallet_id": "w-main", "starting_balance_usd": 100, "billings": billings}], "runs": []}


@pytest.fixture
def wallet_sim() -> Iterator[SimulatorHandle]:
    with running_simulator(_scenario(ROWS)) as sim:
        yield sim


def _client(sim: SimulatorHandle) -> PrimeClient:
    return PrimeClient(base_url=sim.base_url, api_key=SecretStr(sim.api_key))


def _ids(rows: list[BillingEntry]) -> list[str]:
    return [row.id for row in rows]


async def test_reading_stops_after_the_page_where_a_known_row_appears(wallet_sim: SimulatorHandle) -> None:
    async with _client(wallet_sim) as client:
        read = await client.read_wallet(max_rows=1000, stop_when=lambda row: row.id == "bill-130")
    assert read.complete and read.pages == 2
    # The whole page holding the match is kept: rows 0..199, newest first.
    assert _ids(read.wallet.recent_billings) == [f"bill-{i:03d}" for i in range(200)]
    assert read.wallet.wallet_id == "w-main" and read.wallet.total_billings == ROWS
    assert wallet_sim.request_count("wallet") == 2


async def test_max_rows_cuts_the_read_and_says_so(wallet_sim: SimulatorHandle) -> None:
    async with _client(wallet_sim) as client:
        read = await client.read_wallet(max_rows=150, stop_when=lambda row: row.id == "bill-999")
    assert not read.complete and read.pages == 2
    # Every row received is kept, so exactly 150 means the second page asked for 50, not 100.
    assert _ids(read.wallet.recent_billings) == [f"bill-{i:03d}" for i in range(150)]
    assert wallet_sim.request_count("wallet") == 2


async def test_every_row_is_read_when_nothing_stops_it(wallet_sim: SimulatorHandle) -> None:
    async with _client(wallet_sim) as client:
        read = await client.read_wallet(max_rows=10_000)
    assert read.complete and read.pages == 3  # 100 + 100 + a short page of 50
    assert len(read.wallet.recent_billings) == ROWS


async def test_reading_stops_when_the_offset_reaches_the_total() -> None:
    with running_simulator(_scenario(200)) as sim:
        async with _client(sim) as client:
            read = await client.read_wallet(max_rows=10_000)
            assert read.complete and read.pages == 2  # no third request for an empty page
            assert len(read.wallet.recent_billings) == 200
            exact = await client.read_wallet(max_rows=200)
            assert exact.complete and exact.pages == 2


async def test_a_run_billed_between_pages_shifts_the_rows_and_none_is_kept_twice(wallet_sim: SimulatorHandle) -> None:
    billed_meanwhile = False

    def bill_a_new_run_while_paging(row: BillingEntry) -> bool:
        nonlocal billed_meanwhile
        if not billed_meanwhile:
            billed_meanwhile = True
            # Lands usage records at once: its billing row becomes the newest, and every other row
            # moves one place down, so page 2 starts with the last row of page 1.
            wallet_sim.add_run(
                id="run-late",
                base_model="Qwen/Qwen3.5-0.8B",
                rates={"training": 100, "inference_input": 10, "inference_output": 10},
                queue_seconds=0,
                started_ago=600,
            )
        return False

    async with _client(wallet_sim) as client:
        read = await client.read_wallet(max_rows=10_000, stop_when=bill_a_new_run_while_paging)
        ids = _ids(read.wallet.recent_billings)
        assert len(ids) == len(set(ids)) == ROWS
        assert ids == [f"bill-{i:03d}" for i in range(ROWS)]
        assert read.complete and read.pages == 3
        # The row that jumped to the front was on no page still to read (the documented residual
        # risk); being the newest, it is the first row of the next read.
        again = await client.read_wallet(max_rows=100, stop_when=lambda row: row.id == "bill-000")
    assert _ids(again.wallet.recent_billings)[:2] == ["bill_run-late", "bill-000"]
    assert again.complete and again.pages == 1


async def test_get_wallet_is_the_newest_rows(wallet_sim: SimulatorHandle) -> None:
    async with _client(wallet_sim) as client:
        wallet = await client.get_wallet(rows=130)
        with pytest.raises(ValueError, match="max_rows must be at least 1"):
            await client.read_wallet(max_rows=0)
    assert _ids(wallet.recent_billings) == [f"bill-{i:03d}" for i in range(130)]


async def test_a_page_longer_than_asked_for_is_cut_so_max_rows_holds() -> None:
    rows = [
        {
            "id": f"bill-{i:03d}",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "amount_usd": 1.0,
            "currency": "USD",
            "resource_type": "training",
            "resource_id": f"run-{i}",
        }
        for i in range(ROWS)
    ]

    def twenty_too_many(request: web.Request) -> CannedReply:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        page = rows[offset : offset + limit + 20]
        body = {
            "wallet_id": "w",
            "balance_usd": 1.0,
            "currency": "USD",
            "total_billings": ROWS,
            "recent_billings": page,
        }
        return CannedReply(body=json.dumps(body).encode())

    async with serve_canned_api() as api:
        api.reply = twenty_too_many
        async with PrimeClient(base_url=api.base_url, api_key=SecretStr("k" * 20)) as client:
            read = await client.read_wallet(max_rows=150)
    assert not read.complete and read.pages == 2
    assert _ids(read.wallet.recent_billings) == [f"bill-{i:03d}" for i in range(150)]
