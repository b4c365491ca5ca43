"""Both connection pools under the client (`api.transport`: aiohttp, the default, and httpcore) keep its promises.

The other tests/test_client*.py run on the default pool. Here each promise that rests on the pool is
checked on both, over loopback: the size cap and the gzip cap while streaming, the total deadline,
the path sent byte for byte, the error kinds; and what only a pool decides: kept-alive connections
reused and bounded by `max_concurrency`, no retry of its own, a broken answer (bad status line, a
header too long, a body cut short, a connection dropped) an UnreachableError after which the same
client goes on. A raw TCP server (below) sends the broken answers no HTTP server library would.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from monitor.api.client import PrimeClient, RetryPolicy
from monitor.api.errors import InvalidResponseError, UnreachableError
from monitor.api.transport import TRANSPORTS, TransportName
from monitor.clock import ManualClock
from monitor.config.settings import ApiSettings
from tests.support.canned_api import GOOD_USAGE, CannedApi, CannedReply, MiB

GOOD_BODY = json.dumps(GOOD_USAGE).encode()
GOOD_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(GOOD_BODY) + GOOD_BODY
)

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)


def make_client(base_url: str, transport: TransportName, **overrides: Any) -> PrimeClient:
    options: dict[str, Any] = {
        "base_url": base_url,
        "api_key": SecretStr("test-key-0123456789"),
        "clock": ManualClock(),
        "retry": RetryPolicy(max_attempts=1),
        "timeout": 5.0,
        "transport": transport,
    }
    options.update(overrides)
    return PrimeClient(**options)


# --- a raw HTTP/1.1 server: scripted bytes per request ---------------------------------------------------

# (connection number, request number on that connection), both from 0 -> (the bytes to send, then close
# the connection?). Sending b"" and closing drops the request unanswered.
Script = Callable[[int, int], tuple[bytes, bool]]
KEEP_OPEN, CLOSE = False, True


class RawServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []  # each request's head, in arrival order
        self.base_url = ""
        self._open: dict[asyncio.StreamWriter, asyncio.Task[None] | None] = {}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = self.connections
        self.connections += 1
        self._open[writer] = asyncio.current_task()
        try:
            for number in range(1000):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(head)
                answer, close = self.script(connection, number)
                writer.write(answer)
                await writer.drain()
                if close:
                    return
        finally:
            writer.close()
            self._open.pop(writer, None)

    async def close_connections(self) -> None:
        """Hang up on every client still connected and let each handler end by itself (not cancelled)."""
        handlers = [task for task in self._open.values() if task is not None]
        for writer in list(self._open):
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)


@asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[RawServer]:
    server = RawServer(script)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.base_url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()
        await server.close_connections()
        await listener.wait_closed()


# --- what both pools keep ----------------------------------------------------------------------------------


async def test_a_run_id_path_goes_out_byte_for_byte(api: CannedApi, transport: TransportName) -> None:
    api.reply = CannedReply(body=GOOD_BODY)
    async with make_client(api.base_url, transport) as client:
        await client.get_run_usage("x..y")
        await client.get_run_usage("%2e")
    assert api.received == [
        ("GET", "/api/v1/billing/runs/x%2E%2Ey/usage"),
        ("GET", "/api/v1/billing/runs/%252e/usage"),
    ]


async def test_a_stream_past_the_cap_is_cut_and_the_client_goes_on(api: CannedApi, transport: TransportName) -> None:
    api.reply = CannedReply(chunks=[b'{"run_id": "run-1", "pad": "'] + [b" " * (64 * 1024)] * 1600)
    async with make_client(api.base_url, transport) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.get_run_usage("run-1")
        assert "larger than the limit of 8.0 MiB" in str(caught.value)
        assert api.chunks_sent < 1600 // 4
        api.reply = CannedReply(body=GOOD_BODY)
        assert (await client.get_run_usage("run-1")).total_tokens == 1500


async def test_a_gzip_bomb_is_inflated_only_to_the_cap(api: CannedApi, transport: TransportName) -> None:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join([squeeze.compress(b'{"pad": "')] + [squeeze.compress(b"0" * MiB) for _ in range(100)])
    api.reply = CannedReply(body=bomb + squeeze.flush(), headers={"Content-Encoding": "gzip"})
    async with make_client(api.base_url, transport) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.get_run_usage("run-1")
    assert "larger than the limit" in str(caught.value)


async def test_the_deadline_covers_the_whole_body(api: CannedApi, transport: TransportName) -> None:
    api.reply = CannedReply(chunks=[GOOD_BODY[:-1]] + [b" "] * 100 + [b"}"], chunk_delay=0.1)
    async with make_client(api.base_url, transport, timeout=0.5) as client:
        with pytest.raises(UnreachableError) as caught:
            await client.get_run_usage("run-1")
        assert caught.value.kind == "timeout"
        assert client.stats.count("usage", "timeout") == 1
        api.reply = CannedReply(body=GOOD_BODY)
        assert (await client.get_run_usage("run-1")).record_count == 2


async def test_a_refused_connection_is_unreachable_not_a_timeout(transport: TransportName) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with make_client(f"http://127.0.0.1:{port}", transport) as client:
        with pytest.raises(UnreachableError) as caught:
            await client.get_run_usage("run-1")
        assert client.stats.count("usage", "connection_error") == 1
    assert caught.value.kind == "unreachable"
    assert f"cannot reach 127.0.0.1:{port} (ConnectError" in str(caught.value)


@pytest.mark.parametrize(
    "broken",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",  # status is not a number
        b"SPDY/9 200 OK\r\n\r\n",  # not HTTP
        b"HTTP/1.1 200 OK\r\nX-Pad: " + b"p" * MiB + b"\r\n\r\n",  # a header line of 1 MiB
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + GOOD_BODY,  # the body is cut short
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # a chunk size that is not hex
        b"",  # the connection closes with no answer
    ],
    ids=["bad-status", "not-http", "huge-header", "short-body", "bad-chunk", "no-answer"],
)
async def test_a_broken_answer_is_unreachable_and_the_client_goes_on(transport: TransportName, broken: bytes) -> None:
    def script(connection: int, number: int) -> tuple[bytes, bool]:
        return (broken, CLOSE) if connection == 0 else (GOOD_ANSWER, KEEP_OPEN)

    async with raw_server(script) as server, make_client(server.base_url, transport) as client:
        with pytest.raises(UnreachableError) as caught:
            await client.get_run_usage("run-1")
        assert caught.value.kind == "unreachable"
        assert caught.value.url == f"{server.base_url}/api/v1/billing/runs/run-1/usage"
        assert client.stats.count("usage", "connection_error") == 1
        assert (await client.get_run_usage("run-1")).total_tokens == 1500


# --- what only the pool decides -------------------------------------------------------------------------------


async def test_kept_alive_connections_are_reused_and_bounded(transport: TransportName) -> None:
    async with (
        raw_server(lambda connection, number: (GOOD_ANSWER, KEEP_OPEN)) as server,
        make_client(server.base_url, transport, max_concurrency=4) as client,
    ):
        for _ in range(20):
            await client.get_run_usage("run-1")
        assert server.connections == 1
        await asyncio.gather(*(client.get_run_usage("run-1") for _ in range(40)))
    assert len(server.requests) == 60
    assert server.connections <= 4


async def test_a_request_is_sent_once_per_attempt(transport: TransportName) -> None:
    # Each connection answers its first request and drops the second unanswered. A pool that resent
    # the dropped request on a new connection would hide the failure and send one request more.
    def script(connection: int, number: int) -> tuple[bytes, bool]:
        return (GOOD_ANSWER, KEEP_OPEN) if number == 0 else (b"", CLOSE)

    async with raw_server(script) as server, make_client(server.base_url, transport) as client:
        await client.get_run_usage("run-1")
        with pytest.raises(UnreachableError):
            await client.delete_run("run-1")
        assert client.stats.count("delete", "connection_error") == 1
    assert [head.split(b" ", 1)[0] for head in server.requests] == [b"GET", b"DELETE"]


def test_a_client_dropped_without_closing_logs_no_error(
    transport: TransportName, caplog: pytest.LogCaptureFixture
) -> None:
    # E.g. a client a reload replaced just before shutdown: its connections go, quietly.
    async def use_and_drop() -> None:
        async with raw_server(lambda connection, number: (GOOD_ANSWER, KEEP_OPEN)) as server:
            client = make_client(server.base_url, transport)
            assert (await client.get_run_usage("run-1")).record_count == 2
            del client
            gc.collect()

    with caplog.at_level(logging.WARNING):
        asyncio.run(use_and_drop())
        gc.collect()
    assert [record.getMessage() for record in caplog.records] == []


async def test_the_pool_comes_from_the_settings(transport: TransportName) -> None:
    assert PrimeClient.from_settings(ApiSettings()).transport_name == "aiohttp"
    client = PrimeClient.from_settings(ApiSettings(transport=transport))
    assert client.transport_name == transport
    await client.aclose()
    with pytest.raises(ValidationError, match="transport"):
        ApiSettings(transport="curl")
