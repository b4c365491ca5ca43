"""The API client against the simulator over a loopback socket: every endpoint, every fault kind.

The client's sleep is a ManualClock, so retries and Retry-After are asserted from the waits it
asked for, without waiting.
"""

from __future__ import annotations

import asyncio
import socket
from email.utils import formatdate
from typing import Any

import pytest
from pydantic import SecretStr

from monitor.api.client import PrimeClient, RetryPolicy
from monitor.api.errors import (
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    UnreachableError,
    ValidationFailedError,
)
from monitor.api.retry_after import parse_retry_after
from monitor.clock import ManualClock
from monitor.config.settings import ApiSettings
from tests.support.simulator import SimulatorHandle, running_simulator


def make_client(sim: SimulatorHandle, *, clock: ManualClock | None = None, **overrides: Any) -> PrimeClient:
    options: dict[str, Any] = {
        "base_url": sim.base_url,
        "api_key": SecretStr(sim.api_key),
        "clock": clock or ManualClock(),
        "retry": RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=4.0),
        "timeout": 5.0,
    }
    options.update(overrides)
    return PrimeClient(**options)


async def test_run_usage_is_typed_and_agrees_with_the_ledger(simulator: SimulatorHandle) -> None:
    async with make_client(simulator) as client:
        usage = await client.get_run_usage("run-qwen4b")
    ledger = simulator.run_ledger("run-qwen4b")
    assert usage.run_id == "run-qwen4b"
    assert usage.base_model == "Qwen/Qwen3.5-4B"
    assert usage.status == "RUNNING"
    assert usage.pricing.training_per_mtok == pytest.approx(0.30)
    assert usage.training.tokens > 0
    assert usage.total_cost_usd == pytest.approx(usage.training.cost_usd + usage.inference.cost_usd)
    # What the API reports is what has been billed (landed), never more than the true accrual.
    assert usage.total_cost_usd <= ledger["accrued"]["total_cost_usd"] + 1e-9


async def test_wallet_pages_past_the_spec_limit_of_100_rows() -> None:
    billings = [{"resource_type": "compute", "amount_usd": 1.0, "billed_ago": 60 + i} for i in range(150)]
    scenario = {"wallets": [{"wallet_id": "w-big", "team_id": None, "starting_balance_usd": 10, "billings": billings}]}
    with running_simulator(scenario) as sim:
        async with make_client(sim) as client:
            wallet = await client.get_wallet(rows=130)
            assert len(wallet.recent_billings) == 130
            assert wallet.total_billings == 150
            assert sim.request_count("wallet") == 2  # limit=100 at offset 0, then limit=30 at offset 100
            ids = [row.id for row in wallet.recent_billings]
            assert len(set(ids)) == 130
            every = await client.get_wallet(rows=1000)
            assert len(every.recent_billings) == 150
            # Newest first across page boundaries.
            stamps = [row.last_billed_at or row.created_at for row in every.recent_billings]
            assert stamps == sorted(stamps, reverse=True)


async def test_team_wallet_is_selected_by_team_id(simulator: SimulatorHandle) -> None:
    async with make_client(simulator, team_id="team-a") as client:
        wallet = await client.get_wallet()
    assert wallet.wallet_id == "wallet-team-a"
    assert wallet.team_id == "team-a"


async def test_delete_is_idempotent_and_unknown_runs_are_not_found(simulator: SimulatorHandle) -> None:
    async with make_client(simulator) as client:
        first = await client.delete_run("run-qwen4b")
        second = await client.delete_run("run-qwen4b")
        assert first.deleted and second.deleted
        assert (await client.get_run_usage("run-qwen4b")).status == "STOPPED"
        with pytest.raises(NotFoundError):
            await client.delete_run("no-such-run")
        with pytest.raises(NotFoundError):
            await client.get_run_usage("no-such-run")
    assert simulator.run_ledger("run-qwen4b")["delete_count"] == 2


async def test_server_errors_are_retried_with_backoff_then_succeed(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="error", endpoint="usage", status=503, count=2)
    clock = ManualClock()
    async with make_client(simulator, clock=clock) as client:
        usage = await client.get_run_usage("run-qwen4b")
        assert usage.run_id == "run-qwen4b"
        assert client.stats.retried("usage") == 2
        assert client.stats.count("usage", "503") == 2
        assert client.stats.count("usage", "200") == 1
    assert len(clock.sleeps) == 2
    # Full jitter under an exponential ceiling: 0.5 s, then 1 s.
    assert 0 <= clock.sleeps[0] <= 0.5 and 0 <= clock.sleeps[1] <= 1.0
    assert simulator.request_count("usage") == 3


async def test_server_errors_give_up_after_max_attempts(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="error", endpoint="usage", status=500)
    async with make_client(simulator) as client:
        with pytest.raises(ServerError) as caught:
            await client.get_run_usage("run-qwen4b")
    assert caught.value.status == 500
    assert simulator.request_count("usage", 500) == 4


async def test_rate_limit_honours_retry_after_seconds(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="rate_limit", endpoint="wallet", retry_after=7, count=1)
    clock = ManualClock()
    async with make_client(simulator, clock=clock) as client:
        wallet = await client.get_wallet()
    assert wallet.wallet_id == "wallet-personal"
    assert clock.sleeps == [7.0]


async def test_rate_limit_longer_than_the_cap_is_not_waited_for(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="rate_limit", endpoint="wallet", retry_after=600)
    clock = ManualClock()
    async with make_client(simulator, clock=clock) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.get_wallet()
    assert caught.value.retry_after == 600
    assert clock.sleeps == []
    assert simulator.request_count("wallet") == 1


async def test_a_hang_past_the_timeout_is_retried(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="hang", endpoint="usage", count=1, hang_seconds=30)
    async with make_client(simulator, timeout=0.3) as client:
        usage = await client.get_run_usage("run-qwen4b")
        assert usage.run_id == "run-qwen4b"
        assert client.stats.count("usage", "timeout") == 1


async def test_malformed_json_is_an_invalid_response_and_not_retried(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="malformed", endpoint="usage")
    async with make_client(simulator) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.get_run_usage("run-qwen4b")
    assert caught.value.field == "(body)"
    assert simulator.request_count("usage") == 1


async def test_schema_drift_names_the_missing_field(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="drift", endpoint="usage", field="total_cost_usd")
    async with make_client(simulator) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.get_run_usage("run-qwen4b")
    assert caught.value.field == "total_cost_usd"
    assert "total_cost_usd" in str(caught.value)


async def test_unauthorized_is_not_retried_and_never_shows_the_key(simulator: SimulatorHandle) -> None:
    secret = "wrong-key-0123456789"
    async with make_client(simulator, api_key=SecretStr(secret)) as client:
        with pytest.raises(UnauthorizedError) as caught:
            await client.get_run_usage("run-qwen4b")
        assert secret not in repr(client)
    assert secret not in str(caught.value)
    assert simulator.request_count("usage", 401) == 1


async def test_injected_401_fault_is_unauthorized(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="unauthorized", endpoint="delete")
    async with make_client(simulator) as client:
        with pytest.raises(UnauthorizedError):
            await client.delete_run("run-qwen4b")
    assert simulator.run_ledger("run-qwen4b")["delete_count"] == 0


async def test_422_reads_the_spec_error_shape_and_is_not_retried(simulator: SimulatorHandle) -> None:
    async with make_client(simulator) as client:
        with pytest.raises(ValidationFailedError) as caught:
            # The client never sends this itself; it is how a 422 reaches any caller.
            await client._request("GET", "/billing/wallet", endpoint="wallet", params={"limit": 0})
    assert "limit" in caught.value.params
    assert simulator.request_count("wallet", 422) == 1


async def test_unreachable_api_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = ManualClock()
    client = PrimeClient(
        base_url=f"http://127.0.0.1:{port}",
        api_key=SecretStr("k" * 20),
        clock=clock,
        retry=RetryPolicy(max_attempts=3),
    )
    async with client:
        with pytest.raises(UnreachableError):
            await client.get_wallet()
    assert len(clock.sleeps) == 2
    assert client.stats.count("wallet", "connection_error") == 3


async def test_concurrency_is_bounded(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="latency", endpoint="usage", latency=0.2)
    async with make_client(simulator, max_concurrency=2) as client:
        in_flight = 0
        peak = 0
        original = client._http.send

        async def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await original(*args, **kwargs)
            finally:
                in_flight -= 1

        client._http.send = counting  # type: ignore[method-assign]
        await asyncio.gather(*(client.get_run_usage("run-qwen4b") for _ in range(6)))
    assert peak == 2


async def test_a_delete_and_an_urgent_read_never_wait_behind_queued_polls(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="latency", endpoint="usage", latency=0.5, count=5)
    async with make_client(simulator, max_concurrency=1) as client:
        # Four slow polls through the one shared slot: about 2 s end to end.
        polls = [asyncio.create_task(client.get_run_usage("run-qwen4b")) for _ in range(4)]
        await asyncio.sleep(0.05)
        deleted = await client.delete_run("run-team-9b")
        polls_done_at_delete = sum(poll.done() for poll in polls)
        urgent = await client.get_run_usage("run-qwen4b", urgent=True)
        polls_done_at_urgent_read = sum(poll.done() for poll in polls)
        await asyncio.gather(*polls)
    assert deleted.deleted and urgent.run_id == "run-qwen4b"
    # Each went out in a slot of its own while the polls were still queued for the shared one.
    assert polls_done_at_delete == 0
    assert polls_done_at_urgent_read <= 1


def test_base_url_is_normalised_like_the_prime_cli() -> None:
    for raw in ("http://h:1", "http://h:1/", "http://h:1/api/v1", "http://h:1/api/v1/"):
        assert ApiSettings(base_url=raw).base_url == "http://h:1"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("12", now=now) == 12.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None, now=now) is None
