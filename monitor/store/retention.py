"""How long the state store keeps each kind of row: one policy, derived from the settings.

What the daemon reads back decides each bound:
- a run's readings feed only the burn rate (poll.burn_window, read back as `now - burn_window -
  interval`), so they are kept for that plus `state.history_margin`; the newest few always stay;
- the wallet's balances feed the spend rules (the longest `window`, 24 h without one), read back as
  `now - window - wallet_interval`, so they are kept for that plus the margin;
- closed notifications (delivered or superseded) for `state.notification_retention`, and after that
  only those whose dedup key can never be published again (monitor.store.recurrence);
- the action log for `state.action_retention`, never a record of a run with an open delete episode,
  nor the latest record of each run x rule while the run is watched (monitor.store.prune);
- a retired run's tombstone until `TOMBSTONE_WALLET_ROWS_FACTOR` x `watch.wallet_rows` runs finished
  after it (see `tombstones_kept`).
`state.history_per_run` stays as a hard cap on readings per run, on top of the time bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.config.durations import DAY
from monitor.config.settings import Settings

# A run's newest readings are kept whatever their age: a run that stopped being polled (finished, or
# answering 404) keeps a burn-rate baseline for when it is read again.
KEEP_NEWEST_READINGS = 5
# The wallet keeps its newest balances the same way.
KEEP_NEWEST_BALANCES = 5
# A save prunes at most this many old rows: about one goes per new one once the bound holds, and a
# backlog (a file from before the bound, a burn window made shorter) is maintenance's, in bounded steps,
# never a poll's.
PRUNE_PER_SAVE = 16
# Discovery reads at most watch.wallet_rows of the newest billing rows: once this many times that
# many runs finished after a retired run, its row is out of discovery's reach, and its tombstone goes.
TOMBSTONE_WALLET_ROWS_FACTOR = 2
# The spend window the pipeline reads without a wallet rule (monitor.pipeline).
DEFAULT_WALLET_WINDOW = DAY


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Every bound in seconds (or rows), as the store applies it; `of(settings)` is the daemon's."""

    # Readings older than the newest (per run) minus this are pruned, except the newest few.
    history_seconds: float
    # Wallet balances older than now minus this are pruned, except the newest few.
    wallet_history_seconds: float
    # Closed notifications older than this may go (if their key cannot recur).
    notification_seconds: float
    # Action records older than this may go (never those of open episodes).
    action_seconds: float
    # watch.retention: a finished run older than this (and a maintenance interval) is retired by the
    # store itself if no component did (a run not restored after a restart).
    finished_run_seconds: float
    # Tombstones kept for discovered runs: the newest this many by finish time.
    tombstones_kept: int
    # Runs named in watch.runs: their tombstones are never pruned (a restart would poll them again).
    configured_runs: frozenset[str]
    # A maintenance cycle runs at most this often.
    maintenance_interval: float

    @classmethod
    def of(cls, settings: Settings) -> RetentionPolicy:
        poll, state = settings.poll, settings.state
        wallet_window = max((rule.window for rule in settings.wallet_rules), default=DEFAULT_WALLET_WINDOW)
        return cls(
            history_seconds=poll.burn_window + poll.interval + state.history_margin,
            wallet_history_seconds=wallet_window + poll.wallet_interval + state.history_margin,
            notification_seconds=state.notification_retention,
            action_seconds=state.action_retention,
            finished_run_seconds=settings.watch.retention,
            tombstones_kept=TOMBSTONE_WALLET_ROWS_FACTOR * settings.watch.wallet_rows,
            configured_runs=frozenset(settings.watch.runs),
            maintenance_interval=state.maintenance_interval,
        )
