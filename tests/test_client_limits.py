"""What the client refuses in an answer: too large, too slow, too deep, not JSON, numbers out of bounds.

Served over loopback by tests/support/canned_api.py (a server that sends whatever bytes a test
sets) and the simulator (its `latency` fault). Every refusal is an InvalidResponseError (or a
timeout) naming the cause, and the same client instance then reads a good answer.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from pydantic import SecretStr

from monitor.api.client import PrimeClient, RetryPolicy
from monitor.api.errors import InvalidResponseError, UnreachableError
from monitor.clock import ManualClock
from monitor.config.settings import ApiSettings
from tests.support.canned_api import GOOD_USAGE, CannedApi, CannedReply, MiB
from tests.support.simulator import SimulatorHandle


def make_client(base_url: str, **overrides: Any) -> PrimeClient:
    options: dict[str, Any] = {
        "base_url": base_url,
        "api_key": SecretStr("test-key-0123456789"),
        "clock": ManualClock(),
        "retry": RetryPolicy(max_attempts=1),
        "timeout": 5.0,
    }
    options.update(overrides)
    return PrimeClient(**options)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


async def refused(client: PrimeClient, api: CannedApi, reply: CannedReply) -> InvalidResponseError:
    """Serve `reply`, expect InvalidResponseError, then prove the same client reads a good answer."""
    api.reply = reply
    with pytest.raises(InvalidResponseError) as caught:
        await client.get_run_usage("run-1")
    api.reply = CannedReply(body=json_bytes(GOOD_USAGE))
    assert (await client.get_run_usage("run-1")).total_tokens == 1500
    return caught.value


def test_the_size_limit_comes_from_the_settings() -> None:
    assert PrimeClient.from_settings(ApiSettings()).max_response_bytes == 8 * MiB
    assert PrimeClient.from_settings(ApiSettings(max_response_bytes=4096)).max_response_bytes == 4096


async def test_a_100_mib_stream_is_cut_at_the_limit_not_read(api: CannedApi) -> None:
    chunk = b" " * (64 * 1024)  # whitespace: every prefix could still become valid JSON
    chunks = [b'{"run_id": "run-1", "pad": "'] + [chunk] * 1600  # 100 MiB, chunked, no Content-Length
    async with make_client(api.base_url) as client:
        error = await refused(client, api, CannedReply(chunks=chunks))
    assert error.field == "(body)"
    assert "larger than the limit of 8.0 MiB" in str(error)
    # The server got to write a fraction of it before the client hung up.
    assert api.chunks_sent < 1600 // 4


async def test_a_declared_length_over_the_limit_is_refused_before_reading(api: CannedApi) -> None:
    body = json_bytes({**GOOD_USAGE, "pad": "x" * 20_000})
    async with make_client(api.base_url, max_response_bytes=4096) as client:
        error = await refused(client, api, CannedReply(body=body))
    assert f"{len(body) / 1024:.1f} KiB (Content-Length), over the limit of 4.0 KiB" in str(error)


async def test_a_gzip_bomb_is_inflated_only_up_to_the_limit(api: CannedApi) -> None:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join([squeeze.compress(b'{"pad": "')] + [squeeze.compress(b"0" * MiB) for _ in range(100)])
    bomb += squeeze.flush()
    assert len(bomb) < MiB  # 100 MiB once inflated
    async with make_client(api.base_url) as client:
        error = await refused(client, api, CannedReply(body=bomb, headers={"Content-Encoding": "gzip"}))
        assert "larger than the limit" in str(error)
        # A well-formed gzip answer is read as usual.
        api.reply = CannedReply(body=gzip.compress(json_bytes(GOOD_USAGE)), headers={"Content-Encoding": "gzip"})
        assert (await client.get_run_usage("run-1")).record_count == 2


async def test_an_encoding_the_client_did_not_ask_for_is_refused(api: CannedApi) -> None:
    async with make_client(api.base_url) as client:
        error = await refused(client, api, CannedReply(body=b"\x8b\x00", headers={"Content-Encoding": "br"}))
    assert "Content-Encoding the client did not ask for: br" in str(error)


# 64 levels inside the top-level object: found by the walk, which names where. 200,000: the parser
# gives up first (RecursionError, caught), so only the body as a whole can be named.
@pytest.mark.parametrize(("depth", "field"), [(64, "extra.0.0.0.…"), (200_000, "(body)")])
async def test_json_nested_deeper_than_64_levels_is_refused(api: CannedApi, depth: int, field: str) -> None:
    nested = "[" * depth + "]" * depth
    body = json.dumps(GOOD_USAGE)[:-1] + f', "extra": {nested}}}'
    async with make_client(api.base_url) as client:
        error = await refused(client, api, CannedReply(body=body.encode()))
    assert "nested deeper than 64 levels" in str(error)
    assert error.field == field


async def test_nesting_up_to_the_limit_is_read(api: CannedApi) -> None:
    nested = "[" * 63 + "]" * 63  # inside the top-level object: 64 levels
    api.reply = CannedReply(body=(json.dumps(GOOD_USAGE)[:-1] + f', "extra": {nested}}}').encode())
    async with make_client(api.base_url) as client:
        assert (await client.get_run_usage("run-1")).run_id == "run-1"


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ('"total_cost_usd": NaN', "total_cost_usd", "is NaN"),
        ('"total_cost_usd": Infinity', "total_cost_usd", "infinite"),
        ('"total_cost_usd": -Infinity', "total_cost_usd", "infinite"),
        ('"total_cost_usd": 1e999', "total_cost_usd", "infinite"),
        ('"total_cost_usd": 1e300', "total_cost_usd", "less than or equal to 1000000000000"),
        ('"total_cost_usd": 1' + "0" * 400, "total_cost_usd", "valid number"),
        ('"total_cost_usd": "0.4"', "total_cost_usd", "valid number"),
        ('"total_tokens": 1' + "0" * 5000, "(body)", "cannot be read"),
        ('"total_tokens": 1' + "0" * 16, "total_tokens", "less than or equal to 1000000000000000"),
        ('"total_tokens": -1', "total_tokens", "greater than or equal to 0"),
        ('"total_tokens": 1500.0', "total_tokens", "valid integer"),
        ('"total_tokens": true', "total_tokens", "valid integer"),
        ('"record_count": 18446744073709551616', "record_count", "less than or equal"),
        ('"pricing": {"training_per_mtok": 1e7}', "pricing.training_per_mtok", "less than or equal to 1000000"),
        ('"pricing": {"training_per_mtok": -0.3}', "pricing.training_per_mtok", "greater than or equal to 0"),
        ('"training": {"tokens": 1, "cost_usd": NaN}', "training.cost_usd", "is NaN"),
        ('"extra": [1, 2, NaN]', "extra.2", "is NaN"),
    ],
)
async def test_numbers_out_of_bounds_are_refused_naming_the_field(
    api: CannedApi, raw: str, field: str, words: str
) -> None:
    key = raw.split('"')[1]
    document = {name: value for name, value in GOOD_USAGE.items() if name != key}
    body = json.dumps(document)[:-1] + ", " + raw + "}"
    async with make_client(api.base_url) as client:
        error = await refused(client, api, CannedReply(body=body.encode()))
    assert error.field == field
    assert words in str(error)
    assert error.kind == "invalid_response"


async def test_a_negative_wallet_balance_is_a_reading_not_an_error(api: CannedApi) -> None:
    # An overdrawn wallet is real (usage lands after the fact); judging it is the rules' job.
    wallet = {"wallet_id": "w", "balance_usd": -12.5, "currency": "USD", "total_billings": 0, "recent_billings": []}
    api.reply = CannedReply(body=json_bytes(wallet))
    async with make_client(api.base_url) as client:
        assert (await client.get_wallet()).balance_usd == -12.5


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (CannedReply(body=b"<html>Sign in</html>", content_type="text/html"), "text/html, not application/json"),
        (CannedReply(body=json_bytes(GOOD_USAGE), content_type="text/plain"), "text/plain, not application/json"),
        (CannedReply(body=b'{"run_id": "\xff\xfe"}'), "not UTF-8 (invalid byte at offset 12)"),
        (CannedReply(body=b"\xef\xbb\xbf" + json_bytes(GOOD_USAGE)), "not JSON"),
        (CannedReply(body=json_bytes(GOOD_USAGE)[:40]), "not JSON"),
        (CannedReply(body=b""), "not JSON"),
    ],
)
async def test_bodies_that_are_not_utf8_json_are_refused(api: CannedApi, reply: CannedReply, words: str) -> None:
    async with make_client(api.base_url) as client:
        error = await refused(client, api, reply)
    assert error.field == "(body)"
    assert words in str(error)


async def test_a_problem_json_content_type_is_json(api: CannedApi) -> None:
    api.reply = CannedReply(body=json_bytes(GOOD_USAGE), content_type="application/vnd.prime+json")
    async with make_client(api.base_url) as client:
        assert (await client.get_run_usage("run-1")).run_id == "run-1"


async def test_the_timeout_bounds_the_whole_body_not_each_read(api: CannedApi) -> None:
    # Each chunk comes well within the timeout, the whole body would take 10 s: a per-read timeout
    # would wait for all of it.
    chunks = [json_bytes(GOOD_USAGE)[:-1]] + [b" "] * 100 + [b"}"]
    api.reply = CannedReply(chunks=chunks, chunk_delay=0.1)
    async with make_client(api.base_url, timeout=0.5) as client:
        with pytest.raises(UnreachableError) as caught:
            await client.get_run_usage("run-1")
        assert caught.value.kind == "timeout"
        assert "no complete answer from 127.0.0.1" in str(caught.value)
        assert client.stats.count("usage", "timeout") == 1
        assert api.chunks_sent < 50
        api.reply = CannedReply(body=json_bytes(GOOD_USAGE))
        assert (await client.get_run_usage("run-1")).total_tokens == 1500


async def test_a_slow_answer_from_the_simulator_times_out_then_is_retried(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="latency", endpoint="usage", latency=1.0, count=1)
    clock = ManualClock()
    client = make_client(
        simulator.base_url,
        api_key=SecretStr(simulator.api_key),
        timeout=0.3,
        clock=clock,
        retry=RetryPolicy(max_attempts=2),
    )
    async with client:
        usage = await client.get_run_usage("run-qwen4b")
        assert usage.run_id == "run-qwen4b"
        assert client.stats.count("usage", "timeout") == 1
        assert client.stats.retried("usage") == 1
    assert len(clock.sleeps) == 1
