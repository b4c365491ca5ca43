"""Async client of the Prime Training API: typed responses, retries decided in one place.

Retries (exponential backoff with full jitter) on 5xx, 429 (honouring Retry-After, seconds or an
HTTP date), timeouts and connection errors; never on 401, 403, 404 or 422. Every attempt is timed
and counted in RequestStats by endpoint and outcome code. The sleep and the clock are passed in.
At most `max_concurrency` requests are in flight, plus URGENT_SLOTS kept for a DELETE and for a
read marked urgent, so neither waits behind a queue of polls.

What it refuses, so nothing downstream acts on a figure that is not the API's:
- a run id that could address another path (`monitor.api.ids.run_id_problem`): UnaddressableRunError,
  never sent; every path segment is encoded with `monitor.api.ids.path_segment` ('.' included);
- a body over `max_response_bytes`, not UTF-8 JSON, nested too deep, with a non-finite or
  out-of-bounds number, or missing a field (see `monitor.api.body` and `monitor.api.models`):
  InvalidResponseError naming the field;
- an attempt that has no complete answer (connect, headers and the whole body) within `timeout`:
  UnreachableError with kind "timeout", retried like any timeout.

httpx is the interface; the connection pool under it is aiohttp's by default (`api.transport`,
`monitor.api.transport`), several times cheaper per request than httpx's own, which stays available.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import structlog
from pydantic import BaseModel, SecretStr, ValidationError

from monitor import __version__
from monitor.api.answer import Answer, Retryable, interpret, public_url, short_repr
from monitor.api.body import BodyError, check_json_content_type, field_name, read_limited
from monitor.api.errors import InvalidResponseError, UnaddressableRunError, UnreachableError
from monitor.api.ids import path_segment, run_id_problem
from monitor.api.models import BillingEntry, DeleteRunResponse, RunUsageResponse, WalletResponse
from monitor.api.transport import TransportName, make_transport
from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.config.settings import ApiSettings, normalise_base_url
from monitor.exporter.requests import RequestStats

log = structlog.get_logger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
WALLET_PAGE_LIMIT = 100  # the spec's maximum `limit`
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
# In-flight slots kept apart for urgent requests (a DELETE, the re-read before one): they never queue
# behind a pass of thousands of polls waiting for the max_concurrency shared slots.
URGENT_SLOTS = 2


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


@dataclass(frozen=True, slots=True)
class WalletRead:
    """What one `read_wallet` saw: the wallet with every row read, newest first, each row id once."""

    wallet: WalletResponse
    pages: int
    complete: bool  # True: stopped because stop_when matched, or every row was read; False: cut by max_rows


def _field_path(error: ValidationError) -> str:
    return field_name(tuple(error.errors(include_url=False)[0]["loc"]))


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
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        retry: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
        stats: RequestStats | None = None,
        rng: random.Random | None = None,
        transport: TransportName | httpx.AsyncBaseTransport = "aiohttp",
    ) -> None:
        """`transport`: the connection pool under httpx, by name (see `monitor.api.transport`) or an instance."""
        self.base_url = normalise_base_url(base_url)
        self.team_id = team_id
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.retry = retry or RetryPolicy()
        self.transport_name = transport if isinstance(transport, str) else type(transport).__name__
        self.stats = stats if stats is not None else RequestStats()
        self._clock = clock
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._urgent = asyncio.Semaphore(URGENT_SLOTS)
        headers = {
            "User-Agent": f"prime-cost-monitor/{__version__}",
            "Accept": "application/json",
            # Only codings monitor.api.body inflates under the size cap (httpx would add br/zstd
            # when their packages happen to be installed).
            "Accept-Encoding": "gzip, deflate",
        }
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/api/v1",
            headers=headers,
            # Per phase, as a backstop: the deadline that counts is the total one in _attempt.
            timeout=httpx.Timeout(timeout),
            transport=(
                make_transport(transport, max_connections=max_concurrency + URGENT_SLOTS)
                if isinstance(transport, str)
                else transport
            ),
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
            max_response_bytes=settings.max_response_bytes,
            retry=RetryPolicy(max_attempts=settings.max_retries + 1),
            clock=clock,
            stats=stats,
            transport=settings.transport,
        )

    def __repr__(self) -> str:
        return f"PrimeClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> PrimeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    # The endpoints --------------------------------------------------------------------------

    async def get_run_usage(self, run_id: str, *, urgent: bool = False) -> RunUsageResponse:
        """`urgent`: sent in a slot of its own (URGENT_SLOTS) instead of waiting behind the polls in flight."""
        segment = self._run_segment(run_id, endpoint="usage")
        return await self._fetch(
            "GET", f"/billing/runs/{segment}/usage", RunUsageResponse, endpoint="usage", urgent=urgent
        )

    async def delete_run(self, run_id: str) -> DeleteRunResponse:
        """Idempotent on the service; a 404 (already gone) raises NotFoundError for the caller to record.
        Always urgent: money burns while it waits."""
        segment = self._run_segment(run_id, endpoint="delete")
        return await self._fetch(
            "DELETE", f"/training/runs/{segment}", DeleteRunResponse, endpoint="delete", urgent=True
        )

    async def get_wallet(self, *, rows: int = 20, team_id: str | None = None) -> WalletResponse:
        """Balance and the newest `rows` billing rows (each id once), paging by the spec's limit of 100."""
        read = await self.read_wallet(max_rows=max(1, rows), team_id=team_id)
        return read.wallet.model_copy(update={"recent_billings": read.wallet.recent_billings[:rows]})

    async def read_wallet(
        self,
        *,
        max_rows: int,
        stop_when: Callable[[BillingEntry], bool] | None = None,
        team_id: str | None = None,
    ) -> WalletRead:
        """Page the wallet's billing rows (100 a page, by offset), newest first, for discovery.

        Stops after the page in which `stop_when` first returns True for a row (the rest of that page
        is kept), on a short page, when the offset reaches `total_billings`, or when `max_rows` rows
        have been read (then `complete` is False). Balance, currency and ids come from the first page.

        Rows move while we page: a row billed meanwhile jumps to the front, shifting the others one
        place down, so a row already read can come again on the next page; it is kept once (by id).
        Residual risk, accepted: the row that jumped is not seen in this read (it was further down
        when its page was not yet read, and is now on a page already read); being the newest, it is
        the first row of the next read. A row removed meanwhile shifts the others up, so the row just
        past a page boundary is not seen in this read; it is seen again when next billed (a run that
        bills nothing spends nothing).
        """
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        team = team_id if team_id is not None else self.team_id
        first: WalletResponse | None = None
        rows: list[BillingEntry] = []
        seen: set[str] = set()
        fetched = 0  # rows received, duplicates included: what max_rows bounds
        pages = 0
        while True:
            limit = min(WALLET_PAGE_LIMIT, max_rows - fetched)
            params: dict[str, Any] = {"limit": limit, "offset": fetched}
            if team:
                params["teamId"] = team
            page = await self._fetch("GET", "/billing/wallet", WalletResponse, endpoint="wallet", params=params)
            pages += 1
            if first is None:
                first = page
            elif page.wallet_id != first.wallet_id:
                raise InvalidResponseError(
                    f"wallet: page {pages} is of wallet {short_repr(page.wallet_id)}, "
                    f"page 1 of {short_repr(first.wallet_id)}",
                    endpoint="wallet",
                    status=200,
                    url=public_url(self._http.build_request("GET", "/billing/wallet").url),
                    field="wallet_id",
                )
            # A page longer than asked for is cut to what was asked: the rest comes again at the next offset.
            page_rows = page.recent_billings[:limit]
            fetched += len(page_rows)
            matched = False
            for row in page_rows:
                if row.id in seen:
                    continue
                seen.add(row.id)
                rows.append(row)
                if stop_when is not None and not matched and stop_when(row):
                    matched = True
            if matched or len(page_rows) < limit or fetched >= page.total_billings:
                complete = True
                break
            if fetched >= max_rows:
                complete = False
                break
        wallet = first.model_copy(update={"recent_billings": rows})
        return WalletRead(wallet=wallet, pages=pages, complete=complete)

    def _run_segment(self, run_id: str, *, endpoint: str) -> str:
        problem = run_id_problem(run_id)
        if problem is not None:
            raise UnaddressableRunError(
                f"{endpoint}: run id {short_repr(run_id)} cannot be addressed safely ({problem}); nothing was sent",
                endpoint=endpoint,
                run_id=run_id,
                problem=problem,
            )
        return path_segment(run_id)

    # The one place retries are decided -------------------------------------------------------

    async def _fetch(
        self,
        method: str,
        path: str,
        model: type[ModelT],
        *,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        urgent: bool = False,
    ) -> ModelT:
        value, url = await self._send(method, path, endpoint=endpoint, params=params, urgent=urgent)
        return self._parse(value, model, endpoint=endpoint, url=url)

    async def _request(self, method: str, path: str, *, endpoint: str, params: Mapping[str, Any] | None = None) -> Any:
        """The JSON value of a 2xx answer, after retries; an ApiError otherwise."""
        value, _ = await self._send(method, path, endpoint=endpoint, params=params, urgent=False)
        return value

    async def _send(
        self, method: str, path: str, *, endpoint: str, params: Mapping[str, Any] | None, urgent: bool
    ) -> tuple[Any, str]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(method, path, endpoint=endpoint, params=params, urgent=urgent)
            except Retryable as failure:
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
                    kind=failure.error.kind,
                    reason=str(failure.error),
                )
                await self._clock.sleep(delay)

    async def _attempt(
        self, method: str, path: str, *, endpoint: str, params: Mapping[str, Any] | None, urgent: bool
    ) -> tuple[Any, str]:
        request = self._http.build_request(method, path, params=params)
        url = public_url(request.url)
        host = request.url.netloc.decode("ascii")
        async with self._urgent if urgent else self._semaphore:
            # Timed from here: waiting for a slot in our own pool is not the API's slowness.
            started = self._clock.monotonic()
            try:
                # One deadline for the whole attempt: connect, headers and every byte of the body.
                async with asyncio.timeout(self.timeout):
                    answer = await self._exchange(request, url=url)
            except (TimeoutError, httpx.TimeoutException):
                self.stats.observe(endpoint, "timeout", self._clock.monotonic() - started)
                raise Retryable(
                    UnreachableError(
                        f"{endpoint}: timed out: no complete answer from {host} within {self.timeout:g}s "
                        f"({method} {url})",
                        endpoint=endpoint,
                        url=url,
                        kind="timeout",
                    )
                ) from None
            except httpx.TransportError as exc:
                self.stats.observe(endpoint, "connection_error", self._clock.monotonic() - started)
                raise Retryable(
                    UnreachableError(
                        f"{endpoint}: cannot reach {host} ({type(exc).__name__}: {exc or 'no detail'}) "
                        f"({method} {url})",
                        endpoint=endpoint,
                        url=url,
                    )
                ) from None
        self.stats.observe(endpoint, str(answer.status), self._clock.monotonic() - started)
        return interpret(answer, endpoint=endpoint, now=self._clock.now()), url

    async def _exchange(self, request: httpx.Request, *, url: str) -> Answer:
        response = await self._http.send(request, stream=True)
        try:
            problem: BodyError | None = None
            body = b""
            try:
                if 200 <= response.status_code < 300:
                    check_json_content_type(response)
                # Error bodies are read too (bounded), so the connection goes back to the pool.
                body = await read_limited(response, limit=self.max_response_bytes)
            except BodyError as exc:
                problem = exc
            return Answer(
                method=request.method,
                url=url,
                status=response.status_code,
                headers=response.headers,
                body=body,
                body_problem=problem,
            )
        finally:
            await response.aclose()

    @staticmethod
    def _parse(body: Any, model: type[ModelT], *, endpoint: str, url: str) -> ModelT:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            field = _field_path(exc)
            raise InvalidResponseError(
                f"{endpoint}: the response from {url} is unusable at `{field}`: "
                f"{exc.errors(include_url=False)[0]['msg']}",
                endpoint=endpoint,
                status=200,
                url=url,
                field=field,
            ) from None
