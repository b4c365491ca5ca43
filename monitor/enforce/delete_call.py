"""One DELETE under an open intent, and how its answer ends the episode (or schedules a retry).

Every answer is recorded and announced through the journal: accepted (`deleted`, or `reconciled`
for an intent found open after a restart), 404 (`already_gone`), a retryable failure (a `failed`
record that leaves the intent open, retried after a backoff, then given up loudly), or 401 (the
enforcer stops). A run that a re-read shows already stopped gets no DELETE at all (`landed_before`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
from monitor.enforce.evidence import Attempt, Evidence, Reading
from monitor.enforce.journal import Journal
from monitor.enforce.messages import utc
from monitor.enforce.safety import MAX_DELETE_ATTEMPTS, retry_delay
from monitor.enforce.state import Track
from monitor.snapshots import RunSnapshot

_RETRYABLE = (ServerError, UnreachableError, RateLimitedError)


@dataclass(frozen=True, slots=True)
class Unauthorized:
    """The API refused the key for the DELETE: the enforcer stops (nothing concluded yet)."""

    error: str


# "concluded": the episode ended; "retry": it waits for its next attempt; "gave_up": it ended failed
# and no new episode may start for this run and rule until a reload.
DeleteOutcome = Literal["concluded", "retry", "gave_up"] | Unauthorized


class DeleteCall:
    def __init__(self, *, journal: Journal, clock: Clock) -> None:
        self.journal = journal
        self.clock = clock

    async def send(
        self, client: PrimeClient, track: Track, *, extra: list[Reading], run_gone_on_reread: bool
    ) -> DeleteOutcome:
        pending = track.pending
        assert pending is not None and pending.intent_id is not None
        pending.attempt += 1
        conclude = self.journal.conclude
        try:
            response = await client.delete_run(track.run_id)
        except NotFoundError:
            await conclude(track, "already_gone", reason="DELETE answered 404: the run was already gone", extra=extra)
        except UnauthorizedError as exc:
            return Unauthorized(error=str(exc))
        except InvalidResponseError as exc:
            # A 2xx whose body does not match the spec: the API accepted the delete.
            await self._deleted(track, extra=extra, note=f" (the answer did not match the spec: {exc})")
        except _RETRYABLE as exc:
            return await self._failed(track, error=str(exc), retryable=True, extra=extra)
        except ApiError as exc:
            return await self._failed(track, error=str(exc), retryable=False, extra=extra)
        else:
            if response.deleted:
                await self._deleted(track, extra=extra, note="")
            elif run_gone_on_reread:
                reason = "DELETE answered deleted: false and the run had already stopped"
                await conclude(track, "already_gone", reason=reason, extra=extra)
            else:
                return await self._failed(track, error="DELETE answered deleted: false", retryable=True, extra=extra)
        return "concluded"

    async def landed_before(self, track: Track, snapshot: RunSnapshot, *, extra: list[Reading]) -> None:
        """The re-read shows the run no longer running: a DELETE sent earlier may have landed. Record
        that, and send none."""
        pending = track.pending
        assert pending is not None
        when = "before the restart" if pending.restarted else "by an earlier attempt whose answer was lost"
        if snapshot.status == "STOPPED":
            reason = (
                f"the re-read shows the run STOPPED: the DELETE sent {when} took effect (or someone stopped it);"
                " no second DELETE"
            )
            decision: Literal["reconciled", "deleted", "already_gone"] = (
                "reconciled" if pending.restarted else "deleted"
            )
        else:
            reason = f"the re-read shows the run {snapshot.status}: it ended on its own; no DELETE sent again"
            decision = "already_gone"
        await self.journal.conclude(track, decision, reason=reason, extra=extra)

    async def _deleted(self, track: Track, *, extra: list[Reading], note: str) -> None:
        assert track.pending is not None
        if track.pending.restarted:
            reason = f"DELETE accepted, completing an intent found open after a restart{note}"
            await self.journal.conclude(track, "reconciled", reason=reason, extra=extra)
        else:
            await self.journal.conclude(track, "deleted", reason=f"DELETE accepted{note}", extra=extra)

    async def _failed(self, track: Track, *, error: str, retryable: bool, extra: list[Reading]) -> DeleteOutcome:
        pending = track.pending
        assert pending is not None and pending.intent_id is not None
        if retryable and pending.attempt < MAX_DELETE_ATTEMPTS:
            delay = retry_delay(pending.attempt)
            retry_at = self.clock.now() + delay
            attempt = Attempt(
                intent_id=pending.intent_id,
                attempt=pending.attempt,
                of=MAX_DELETE_ATTEMPTS,
                retry_at=retry_at,
                error=error,
            )
            # Recorded without intent_id: the intent stays open, so a restart retries it too.
            self.journal.record(
                track,
                "failed",
                reason=f"DELETE attempt {pending.attempt} of {MAX_DELETE_ATTEMPTS} failed ({error}); retrying at"
                f" {utc(retry_at)}",
                evidence=Evidence.of(extra, attempts=[attempt]),
                intent_id=None,
                dry_run=False,
            )
            pending.deadline = retry_at
            pending.deadline_mono = self.clock.monotonic() + delay
            return "retry"
        tries = f"after {pending.attempt} attempts" if retryable else "and cannot be retried"
        await self.journal.conclude(track, "failed", reason=f"DELETE failed {tries}: {error}", extra=extra)
        return "gave_up"
