"""The monitor about itself: one message when it cannot see, one when it can again; and one when a
single run cannot be read, one when it can.

A monitor that silently stops guarding is worse than none, because people trust it. So each blind
cause (monitor.exporter.health: key refused, API unreachable, data stale, store failing, a notification
channel failing) that holds for `health.blind_after` opens an episode: one "monitor is blind"
notification with the cause and since when, on every channel that still works (straight to the
channels, bypassing the outbox, when the store itself is what fails), and one "restored" when it
clears. A run that fails `health.run_alert_after` polls in a row while the monitor otherwise sees
(another team's run id, a deleted run, answers that fail validation, a bug in its processing) gets
one "cannot read run" message for the episode and one "readable again". Open episodes are kept in
the store, so a restart neither repeats nor loses them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from monitor.alerts.words import safe_text
from monitor.clock import Clock
from monitor.config.durations import format_duration
from monitor.config.settings import Settings
from monitor.enforce.messages import utc
from monitor.exporter.health import (
    API_UNREACHABLE,
    DATA_STALE,
    KEY_REFUSED,
    NOTIFICATIONS_FAILING,
    STORE_FAILING,
    BlindCause,
    ChannelState,
    blind_causes,
)
from monitor.exporter.live import RuntimeState
from monitor.exporter.read_health import RunHealth
from monitor.notify.outbox import OutboxDispatcher
from monitor.records import Notification
from monitor.store.schema import StoreError
from monitor.store.state_store import StateStore

log = structlog.get_logger(__name__)

META_KEY = "selfwatch_open_episodes"
MONITOR_WIDE = frozenset({KEY_REFUSED, API_UNREACHABLE, DATA_STALE})
_WHAT = {
    KEY_REFUSED: "the API refuses the key",
    API_UNREACHABLE: "the API cannot be reached",
    DATA_STALE: "its data is stale",
    STORE_FAILING: "its state store fails",
    NOTIFICATIONS_FAILING: "a notification channel fails",
}
_ADVICE = {
    KEY_REFUSED: "Check PRIME_API_KEY (and PRIME_TEAM_ID); a new key takes effect on SIGHUP.",
    API_UNREACHABLE: "Check the network path to the API (api.base_url) and the API's status.",
    DATA_STALE: "Check the daemon's log for jobs that time out or a loop that stalls.",
    STORE_FAILING: "Check the state volume (space, permissions, the file itself); /healthz fails until it works.",
    NOTIFICATIONS_FAILING: "Check that channel's token, URL and permissions; its messages wait in the outbox.",
}
_RUN_ADVICE = {
    "unauthorized": "The API refuses the key for this run: is it another team's run? Check the key's team access,"
    " or remove it from watch.runs.",
    "forbidden": "The key may not read this run (HTTP 403): check the key's team access, or remove it from watch.runs.",
    "not_found": "The API does not know this run (HTTP 404): a typo in watch.runs, or a run deleted long ago."
    " Polling it backs off.",
    "invalid_response": "The API's answers for this run do not match its spec: they are counted and ignored.",
    "rejected": "The API's figures for this run are implausible: they are counted and ignored.",
    "internal_error": "Processing this run fails inside the monitor (a bug): see run_processing_failed in the log.",
    "unaddressable": "This run id cannot be put in a URL safely: it is never sent.",
}


@dataclass
class _Episode:
    since: float
    detail: str
    channel: str = ""


class SelfWatch:
    def __init__(
        self,
        *,
        settings: Settings,
        runtime: RuntimeState,
        dispatcher: OutboxDispatcher,
        store: StateStore,
        clock: Clock,
        active_runs: Callable[[], list[str]],
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.dispatcher = dispatcher
        self.store = store
        self.clock = clock
        self._active_runs = active_runs
        self._blind: dict[str, _Episode] = {}
        self._unreadable: dict[str, _Episode] = {}
        self._load()

    # -- the check, every few seconds ------------------------------------------------------------

    async def check(self) -> None:
        now, now_mono = self.clock.now(), self.clock.monotonic()
        try:
            health_by_channel = self.dispatcher.channel_health()
            channels = [
                ChannelState(channel, health.failing_since, health.last_error, health.backlog)
                for channel, health in health_by_channel.items()
            ]
            self.runtime.outbox_seen(
                {c: (h.backlog, h.oldest_undelivered_at) for c, h in health_by_channel.items()},
                self.dispatcher.superseded_total,
            )
        except StoreError:
            channels = []  # the store is what fails: that cause is reported, channel health is unknown
        active = self._active_runs()
        causes = blind_causes(
            self.settings, self.runtime, now=now, now_mono=now_mono, has_runs=bool(active), channels=channels
        )
        held = {cause.key: cause for cause in causes if cause.held_for >= self.settings.health.blind_after}
        self.runtime.blind_now({key: cause.since for key, cause in held.items()})
        failing_channels = {c.channel for c in channels if c.failing_since is not None}
        changed = False
        for key, cause in held.items():
            if key not in self._blind:
                self._blind[key] = _Episode(since=cause.since, detail=cause.detail, channel=cause.channel)
                await self._announce(self._blind_notice(cause), avoid=failing_channels, cause=cause.cause)
                changed = True
        present = {cause.key for cause in causes}
        for key in [k for k in self._blind if k not in present]:
            episode = self._blind.pop(key)
            await self._announce(
                self._restored_notice(key, episode, now=now), avoid=failing_channels, cause=key.partition(":")[0]
            )
            changed = True
        # Runs failing because the monitor as a whole cannot see (or store) are covered by that message.
        monitor_blind = any(cause.cause in MONITOR_WIDE or cause.cause == STORE_FAILING for cause in causes)
        changed |= await self._check_runs(active, monitor_blind=monitor_blind, avoid=failing_channels, now=now)
        if changed:
            self._save()

    async def _check_runs(self, active: list[str], *, monitor_blind: bool, avoid: set[str], now: float) -> bool:
        changed = False
        threshold = self.settings.health.run_alert_after
        for run_id in active:
            health = self.runtime.health.get(run_id)
            episode = self._unreadable.get(run_id)
            failing = (
                health is not None
                and health.last_poll_failed
                and health.last_kind != "held"
                and health.failing_on_its_own
            )
            if episode is None and failing and not monitor_blind:
                assert health is not None
                if health.consecutive_failures >= threshold:
                    episode = _Episode(since=health.failing_since or now, detail=health.last_error or health.last_kind)
                    self._unreadable[run_id] = episode
                    await self._announce(self._unreadable_notice(run_id, health, episode), avoid=avoid, cause="run")
                    changed = True
            elif episode is not None and health is not None and not health.last_poll_failed:
                del self._unreadable[run_id]
                await self._announce(self._readable_notice(run_id, episode, now=now), avoid=avoid, cause="run")
                changed = True
        for run_id in [r for r in self._unreadable if r not in active]:
            del self._unreadable[run_id]  # finished or no longer watched: nothing left to tell
            changed = True
        return changed

    # -- delivery --------------------------------------------------------------------------------

    async def _announce(self, notification: Notification, *, avoid: set[str], cause: str) -> None:
        channels = [c for c in self.dispatcher.channels if c not in avoid]
        # A restored channel gets its own "restored" message too.
        if notification.kind == "monitor_restored":
            channels = list(self.dispatcher.channels)
        self.runtime.self_alert_sent(cause=cause, kind=notification.kind)
        log_ = log.bind(kind=notification.kind, dedup_key=notification.dedup_key, channels=channels)
        if not channels:
            log_.critical("self_alert_undeliverable", title=notification.title, reason="no working channel")
            return
        if self.runtime.store_failing_since is not None:
            sent = await self.dispatcher.send_direct(notification, channels=channels)
            log_.warning("self_alert_sent_directly", title=notification.title, delivered=sent)
            return
        try:
            self.dispatcher.publish(notification, channels=channels)
        except StoreError as exc:
            sent = await self.dispatcher.send_direct(notification, channels=channels)
            log_.warning("self_alert_sent_directly", title=notification.title, delivered=sent, store_error=str(exc))
            return
        log_.warning("self_alert_published", title=notification.title)

    # -- the words -------------------------------------------------------------------------------

    def _blind_notice(self, cause: BlindCause) -> Notification:
        what = _WHAT[cause.cause] + (f" ({cause.channel})" if cause.channel else "")
        key = f"{cause.key}:{int(cause.since)}"
        return Notification(
            kind="monitor_blind",
            dedup_key=f"monitor_blind:{key}",
            thread_key=f"monitor_blind:{key}",
            severity="critical",
            title=f"🙈 prime-cost-monitor is blind: {what}",
            text="\n".join(
                [
                    f"Since {utc(cause.since)}: {safe_text(cause.detail, limit=300)}.",
                    "Until it can see again, budget rules are not checked and no run is deleted"
                    if cause.cause in MONITOR_WIDE or cause.cause == STORE_FAILING
                    else "Alerts for that channel wait in the outbox and go out when it works again.",
                    _ADVICE[cause.cause],
                ]
            ),
            created_at=self.clock.now(),
            subject="prime-cost-monitor",
            rule=cause.key,
            fields=(("Cause", what), ("Since", utc(cause.since))),
        )

    def _restored_notice(self, key: str, episode: _Episode, *, now: float) -> Notification:
        cause = key.split(":", 1)[0]
        what = _WHAT.get(cause, cause) + (f" ({episode.channel})" if episode.channel else "")
        episode_key = f"{key}:{int(episode.since)}"
        return Notification(
            kind="monitor_restored",
            dedup_key=f"monitor_restored:{episode_key}",
            thread_key=f"monitor_blind:{episode_key}",
            severity="info",
            title=f"👀 prime-cost-monitor can see again: {what} no more",
            text=f"Blind from {utc(episode.since)} for {format_duration(now - episode.since)}; checking budgets again.",
            created_at=now,
            subject="prime-cost-monitor",
            rule=key,
        )

    def _unreadable_notice(self, run_id: str, health: RunHealth, episode: _Episode) -> Notification:
        snapshot = self.runtime.runs.get(run_id)
        name = safe_text(snapshot.display_name if snapshot else run_id)
        key = f"{run_id}:{int(episode.since)}"
        kind = health.last_kind
        critical = kind in ("unauthorized", "forbidden", "internal_error")
        return Notification(
            kind="run_unreadable",
            dedup_key=f"run_unreadable:{key}",
            thread_key=f"run_unreadable:{key}",
            severity="critical" if critical else "warning",
            title=f"🙈 Cannot read run {name}: {kind.replace('_', ' ')}",
            text="\n".join(
                [
                    f"{health.consecutive_failures} reads in a row failed since {utc(episode.since)}:"
                    f" {safe_text(episode.detail, limit=400)}.",
                    "Its budget rules cannot be checked and it will not be deleted until it can be read again.",
                    _RUN_ADVICE.get(kind, "The other runs are read as usual."),
                ]
            ),
            created_at=self.clock.now(),
            subject=run_id,
            rule="read",
            fields=(("Run ID", safe_text(run_id)), ("Failure", kind), ("Since", utc(episode.since))),
        )

    def _readable_notice(self, run_id: str, episode: _Episode, *, now: float) -> Notification:
        key = f"{run_id}:{int(episode.since)}"
        snapshot = self.runtime.runs.get(run_id)
        name = safe_text(snapshot.display_name if snapshot else run_id)
        return Notification(
            kind="run_readable",
            dedup_key=f"run_readable:{key}",
            thread_key=f"run_unreadable:{key}",
            severity="info",
            title=f"👀 Run {name} can be read again",
            text=f"Unreadable from {utc(episode.since)} for {format_duration(now - episode.since)};"
            " its rules apply again.",
            created_at=now,
            subject=run_id,
            rule="read",
        )

    # -- memory across restarts --------------------------------------------------------------------

    def _load(self) -> None:
        try:
            raw = self.store.get_meta(META_KEY)
        except StoreError:
            return
        if not raw:
            return
        try:
            data = json.loads(raw)
            self._blind = {k: _Episode(**v) for k, v in data.get("blind", {}).items()}
            self._unreadable = {k: _Episode(**v) for k, v in data.get("unreadable", {}).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("selfwatch_state_unreadable", error=str(exc))

    def _save(self) -> None:
        data = {
            "blind": {k: vars(v) for k, v in self._blind.items()},
            "unreadable": {k: vars(v) for k, v in self._unreadable.items()},
        }
        try:
            self.store.set_meta(META_KEY, json.dumps(data))
        except StoreError as exc:
            log.warning("selfwatch_state_not_saved", error=str(exc))
