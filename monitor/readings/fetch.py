"""The one way a run is read: one usage request, its failure named by kind, its body as a reading.

The poll and the enforcer's re-read before a DELETE both read a run through `fetch_run`, so both
see the same errors the same way; what a reading is worth against the ones before it is decided by
monitor.readings.model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from monitor.api.client import PrimeClient
from monitor.api.errors import (
    ApiError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    UnreachableError,
)
from monitor.clock import Clock
from monitor.snapshots import RunSnapshot


@dataclass(frozen=True, slots=True)
class RunRead:
    """What one read of a run gave: a reading (kind "ok"), or a failure of a kind
    (see monitor.exporter.read_health.ReadKind)."""

    kind: str
    snapshot: RunSnapshot | None = None
    error: str = ""
    # The URL that failed (scheme, host and path only), when the client names it.
    url: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "ok" and self.snapshot is not None


# Reads a run for a decision, judged against its last accepted reading (monitor.poller.Poller.reread).
RunReader = Callable[[str], Awaitable[RunRead]]


def failure_kind(error: ApiError) -> str:
    """The read kind of an API error: what a person must fix differs for each."""
    named = getattr(error, "kind", None)
    if isinstance(named, str) and named:
        return named
    if isinstance(error, UnauthorizedError):
        return "forbidden" if error.status == 403 else "unauthorized"
    if isinstance(error, NotFoundError):
        return "not_found"
    if isinstance(error, InvalidResponseError):
        return "invalid_response"
    if isinstance(error, RateLimitedError):
        return "rate_limited"
    if isinstance(error, ServerError):
        return "server_error"
    if isinstance(error, UnreachableError):
        return "timeout" if "timed out" in str(error) else "unreachable"
    return "invalid_request"


async def fetch_run(
    client: PrimeClient, run_id: str, *, clock: Clock, team_id: str | None, urgent: bool = False
) -> RunRead:
    """Read a run's usage. The reading's time is when the request was sent: its figures are at least
    that fresh, and an answer slower than the poll interval cannot make them look fresher. `urgent`:
    the re-read before a delete, which must not queue behind a pass of polls."""
    taken_at, taken_mono = clock.now(), clock.monotonic()
    try:
        usage = await client.get_run_usage(run_id, urgent=urgent)
    except ApiError as exc:
        return RunRead(kind=failure_kind(exc), error=str(exc), url=str(getattr(exc, "url", "") or ""))
    snapshot = RunSnapshot.from_response(usage, taken_at=taken_at, team_id=team_id, taken_mono=taken_mono)
    return RunRead(kind="ok", snapshot=snapshot)
