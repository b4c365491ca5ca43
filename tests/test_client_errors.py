"""Every ApiError says its cause: a `kind`, the request's URL (never its query string) and words a person can act on.

Against the simulator (faults, a wrong key, an unknown run, a team the key is not in), a closed
port, and tests/support/canned_api.py for what the simulator never answers (403, a redirect).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pydantic import SecretStr

from monitor.api.client import PrimeClient, RetryPolicy
from monitor.api.errors import (
    ApiError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    UnreachableError,
    ValidationFailedError,
)
from monitor.clock import ManualClock
from tests.support.canned_api import CannedReply, serve_canned_api
from tests.support.simulator import SimulatorHandle

USAGE_PATH = "/api/v1/billing/runs/run-qwen4b/usage"


def make_client(base_url: str, *, api_key: str, **overrides: Any) -> PrimeClient:
    options: dict[str, Any] = {
        "base_url": base_url,
        "api_key": SecretStr(api_key),
        "clock": ManualClock(),
        "retry": RetryPolicy(max_attempts=2),
        "timeout": 0.5,
    }
    options.update(overrides)
    return PrimeClient(**options)


@pytest.mark.parametrize(
    ("fault", "error_class", "kind", "status", "words"),
    [
        ({"kind": "error", "status": 503}, ServerError, "server_error", 503, "server error (HTTP 503)"),
        ({"kind": "error", "status": 502}, ServerError, "server_error", 502, "server error (HTTP 502)"),
        ({"kind": "rate_limit", "retry_after": 1}, RateLimitedError, "rate_limited", 429, "rate limited (HTTP 429)"),
        ({"kind": "hang", "hang_seconds": 30}, UnreachableError, "timeout", None, "timed out: no complete answer"),
        ({"kind": "malformed"}, InvalidResponseError, "invalid_response", 200, "not JSON"),
        ({"kind": "drift", "field": "total_cost_usd"}, InvalidResponseError, "invalid_response", 200, "Field required"),
        ({"kind": "unauthorized"}, UnauthorizedError, "unauthorized", 401, "the API refused the key (HTTP 401)"),
    ],
)
async def test_each_fault_has_its_kind_and_the_url(
    simulator: SimulatorHandle,
    fault: dict[str, Any],
    error_class: type[ApiError],
    kind: str,
    status: int | None,
    words: str,
) -> None:
    simulator.add_fault(endpoint="usage", **fault)
    async with make_client(simulator.base_url, api_key=simulator.api_key) as client:
        with pytest.raises(error_class) as caught:
            await client.get_run_usage("run-qwen4b")
    error = caught.value
    assert (error.kind, error.status, error.endpoint) == (kind, status, "usage")
    assert error.url == simulator.base_url + USAGE_PATH
    assert words in str(error)
    assert error.url in str(error)


async def test_a_refused_key_is_told_apart_from_a_missing_run(simulator: SimulatorHandle) -> None:
    secret = "wrong-key-0123456789"
    async with make_client(simulator.base_url, api_key=secret) as client:
        with pytest.raises(UnauthorizedError) as refused:
            await client.get_run_usage("run-qwen4b")
    async with make_client(simulator.base_url, api_key=simulator.api_key) as client:
        with pytest.raises(NotFoundError) as missing:
            await client.get_run_usage("no-such-run")
    assert refused.value.kind == "unauthorized" and "check PRIME_API_KEY" in str(refused.value)
    assert secret not in str(refused.value) and secret not in repr(refused.value)
    assert missing.value.kind == "not_found" and missing.value.status == 404
    assert f"not found (HTTP 404): GET {simulator.base_url}/api/v1/billing/runs/no-such-run/usage" in str(missing.value)


async def test_the_url_never_carries_the_query_string_or_user_info(simulator: SimulatorHandle) -> None:
    # The simulator answers 401 for a team the key is not a member of.
    base = simulator.base_url.replace("http://", "http://someone:hunter2@")
    async with make_client(base, api_key=simulator.api_key) as client:
        with pytest.raises(UnauthorizedError) as caught:
            await client.get_wallet(team_id="team-secret-name")
    error = caught.value
    assert error.url == simulator.base_url + "/api/v1/billing/wallet"
    for hidden in ("?", "team-secret-name", "limit=", "hunter2", "someone"):
        assert hidden not in str(error)


async def test_a_rejected_request_is_invalid_request(simulator: SimulatorHandle) -> None:
    async with make_client(simulator.base_url, api_key=simulator.api_key) as client:
        with pytest.raises(ValidationFailedError) as caught:
            await client._request("GET", "/billing/wallet", endpoint="wallet", params={"limit": 0})
    assert caught.value.kind == "invalid_request"
    assert "limit" in caught.value.params
    assert "(HTTP 422)" in str(caught.value) and "limit" in str(caught.value)


async def test_an_unreachable_host_is_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with make_client(f"http://127.0.0.1:{port}", api_key="k" * 20) as client:
        with pytest.raises(UnreachableError) as caught:
            await client.delete_run("run-1")
    error = caught.value
    assert error.kind == "unreachable" and error.status is None
    assert f"cannot reach 127.0.0.1:{port}" in str(error)
    assert error.url == f"http://127.0.0.1:{port}/api/v1/training/runs/run-1"


async def test_forbidden_is_told_apart_from_a_refused_key() -> None:
    async with serve_canned_api() as api, make_client(api.base_url, api_key="k" * 20) as client:
        api.reply = CannedReply(status=403, body=b'{"detail": "Not a member of this team"}')
        with pytest.raises(UnauthorizedError) as caught:
            await client.get_run_usage("run-1")
    error = caught.value
    assert (error.kind, error.status) == ("forbidden", 403)
    assert "the key was accepted but has no access (HTTP 403)" in str(error)
    assert "refused the key" not in str(error)


async def test_a_redirect_is_not_followed_and_names_where_it_pointed() -> None:
    async with serve_canned_api() as api, make_client(api.base_url, api_key="k" * 20) as client:
        api.reply = CannedReply(status=302, headers={"Location": "https://login.example/sso?session=abc"})
        with pytest.raises(InvalidResponseError) as caught:
            await client.get_wallet()
        assert api.received == [("GET", "/api/v1/billing/wallet")]
    error = caught.value
    assert (error.kind, error.status, error.field) == ("invalid_response", 302, "(status)")
    assert "unexpected HTTP 302 to https://login.example/sso" in str(error)
    assert "session=abc" not in str(error)
