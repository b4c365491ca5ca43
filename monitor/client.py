"""Async client of the Prime Training API: typed responses, retries decided in one place.

Retries (exponential backoff with full jitter) on 5xx, 429 (honouring Retry-After, seconds or an
HTTP date), timeouts and connection errors; never on 401, 403, 404 or 422. Every attempt is timed
and counted in RequestStats by endpoint and outcome code. The sleep and the clock are passed in.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import structlog
from pydantic import BaseModel, SecretStr, ValidationError

from monitor import __version__
from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.config import ApiSettings, normalise_base_url
from monitor.errors import (
    ApiError,
    ClientError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    UnreachableError,
    ValidationFailedError,
)
from monitor.models import DeleteRunResponse, RunUsageResponse, WalletResponse
from monitor.retry_after import parse_retry_after
from monitor.runtime import RequestStats

log = structlog.get_logger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
WALLET_PAGE_LIMIT = 100  # the spec's maximum `limit`


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    # A Retry-After longer than this is not waited for: the caller gets RateLimitedError and the
    # next scheduled poll tries again, so one slow answer never wedges a job.
    max_retry_after: float = 120.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))] (AWS architecture blog's advice)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(0, ceiling)


class _Retryable(Exception):
    """An attempt failed in a way that another attempt may fix; carries the error to raise at the end."""

    def __init__(self, error: ApiError, *, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _field_path(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    return ".".join(str(part) for part in first["loc"]) or "(body)"


def _describe_422(response: httpx.Response) -> tuple[str, list[str]]:
    """Read both the spec's `errors[]` shape and FastAPI's `detail[]` shape."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200], []
    problems: list[tuple[str, str]] = []
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        for item in body["errors"]:
            if isinstance(item, dict):
                problems.append((str(item.get("param", "?")), str(item.get("details", ""))))
    elif isinstance(body, dict) and isinstance(body.get("detail"), list):
        for item in body["detail"]:
            if isinstance(item, dict):
                loc = item.get("loc") or []
                param = ".".join(str(p) for p in loc if p not in ("query", "path", "body")) or "?"
                problems.append((param, str(item.get("msg", ""))))
    elif isinstance(body, dict) and "detail" in body:
        problems.append(("?", str(body["detail"])))
    message = "; ".join(f"{param}: {details}" for param, details in problems) or response.text[:200]
    return message, [param for param, _ in problems]


class PrimeClient:
    """One connection pool, bounded concurrency, typed results or one error class per failure."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | None,
        team_id: str | None = None,
        timeout: float = 10.0,
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
        stats: RequestStats | None = None,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.team_id = team_id
        self.retry = retry or RetryPolicy()
        self.stats = stats if stats is not None else RequestStats()
        self._clock = clock
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(max_concurrency)
        headers = {"User-Agent": f"prime-cost-monitor/{__version__}", "Accept": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/api/v1",
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_settings(
        cls, settings: ApiSettings, *, clock: Clock = SYSTEM_CLOCK, stats: RequestStats | None = None
    ) -> PrimeClient:
        return cls(
            base_url=settings.base_url,
            api_key=settings.api_key,
            team_id=settings.team_id,
            timeout=settings.timeout,
            max_concurrency=settings.max_concurrency,
            retry=RetryPolicy(max_attempts=settings.max_retries + 1),
            clock=clock,
            stats=stats,
        )

    def __repr__(self) -> str:
        return f"PrimeClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> PrimeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # The endpoints --------------------------------------------------------------------------

    async def get_run_usage(self, run_id: str) -> RunUsageResponse:
        path = f"/billing/runs/{quote(run_id, safe='')}/usage"
        body = await self._request("GET", path, endpoint="usage")
        return self._parse(body, RunUsageResponse, endpoint="usage")

    async def get_wallet(self, *, rows: int = 20, team_id: str | None = None) -> WalletResponse:
        """Balance and the newest `rows` billing rows, paging by the spec's limit of 100."""
        team = team_id if team_id is not None else self.team_id
        first: WalletResponse | None = None
        collected: list[Any] = []
        offset = 0
        while True:
            limit = max(1, min(WALLET_PAGE_LIMIT, rows - len(collected)))
            params: dict[str, Any] = {"limit": limit, "offset": offset}
            if team:
                params["teamId"] = team
            body = await self._request("GET", "/billing/wallet", endpoint="wallet", params=params)
            page = self._parse(body, WalletResponse, endpoint="wallet")
            first = first or page
            collected.extend(page.recent_billings)
            offset += len(page.recent_billings)
            if len(collected) >= rows or len(page.recent_billings) < limit or offset >= page.total_billings:
                break
        return first.model_copy(update={"recent_billings": collected[:rows]})

    async def delete_run(self, run_id: str) -> DeleteRunResponse:
        """Idempotent on the service; a 404 (already gone) raises NotFoundError for the caller to record."""
        body = await self._request("DELETE", f"/training/runs/{quote(run_id, safe='')}", endpoint="delete")
        return self._parse(body, DeleteRunResponse, endpoint="delete")

    # The one place retries are decided -------------------------------------------------------

    async def _request(self, method: str, path: str, *, endpoint: str, params: Mapping[str, Any] | None = None) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(method, path, endpoint=endpoint, params=params)
            except _Retryable as failure:
                if attempt >= self.retry.max_attempts:
                    raise failure.error from None
                if failure.retry_after is not None:
                    if failure.retry_after > self.retry.max_retry_after:
                        raise failure.error from None
                    delay = failure.retry_after
                else:
                    delay = self.retry.backoff(attempt, self._rng)
                self.stats.observe_retry(endpoint)
                log.warning(
                    "api_retry",
                    endpoint=endpoint,
                    attempt=attempt,
                    delay_seconds=round(delay, 3),
                    reason=str(failure.error),
                )
                await self._clock.sleep(delay)

    async def _attempt(self, method: str, path: str, *, endpoint: str, params: Mapping[str, Any] | None) -> Any:
        started = self._clock.monotonic()
        async with self._semaphore:
            try:
                response = await self._http.request(method, path, params=params)
            except httpx.TimeoutException as exc:
                self.stats.observe(endpoint, "timeout", self._clock.monotonic() - started)
                raise _Retryable(
                    UnreachableError(f"{endpoint}: timed out ({type(exc).__name__})", endpoint=endpoint)
                ) from None
            except httpx.TransportError as exc:
                self.stats.observe(endpoint, "connection_error", self._clock.monotonic() - started)
                raise _Retryable(
                    UnreachableError(f"{endpoint}: cannot reach {self.base_url}: {exc}", endpoint=endpoint)
                ) from None
        self.stats.observe(endpoint, str(response.status_code), self._clock.monotonic() - started)
        return self._interpret(response, endpoint=endpoint)

    def _interpret(self, response: httpx.Response, *, endpoint: str) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            try:
                return response.json()
            except (ValueError, json.JSONDecodeError):
                raise InvalidResponseError(
                    f"{endpoint}: the body is not JSON ({response.text[:80]!r})",
                    endpoint=endpoint,
                    status=status,
                    field="(body)",
                ) from None
        if status in (401, 403):
            raise UnauthorizedError(
                f"{endpoint}: the API refused the key (HTTP {status}); check PRIME_API_KEY and team access",
                endpoint=endpoint,
                status=status,
            )
        if status == 404:
            raise NotFoundError(f"{endpoint}: not found (HTTP 404)", endpoint=endpoint, status=status)
        if status == 422:
            message, params = _describe_422(response)
            raise ValidationFailedError(f"{endpoint}: rejected: {message}", endpoint=endpoint, params=params)
        if status == 429:
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), now=self._clock.now(), date_header=response.headers.get("Date")
            )
            raise _Retryable(
                RateLimitedError(f"{endpoint}: rate limited (HTTP 429)", endpoint=endpoint, retry_after=retry_after),
                retry_after=retry_after,
            )
        if status >= 500:
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), now=self._clock.now(), date_header=response.headers.get("Date")
            )
            raise _Retryable(
                ServerError(f"{endpoint}: server error (HTTP {status})", endpoint=endpoint, status=status),
                retry_after=retry_after,
            )
        if 400 <= status < 500:
            raise ClientError(f"{endpoint}: request refused (HTTP {status})", endpoint=endpoint, status=status)
        raise ApiError(f"{endpoint}: unexpected HTTP {status}", endpoint=endpoint, status=status)

    @staticmethod
    def _parse(body: Any, model: type[ModelT], *, endpoint: str) -> ModelT:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            field = _field_path(exc)
            raise InvalidResponseError(
                f"{endpoint}: the response does not match the spec at `{field}`: "
                f"{exc.errors(include_url=False)[0]['msg']}",
                endpoint=endpoint,
                field=field,
            ) from None
