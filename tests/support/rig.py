"""The whole monitor in one process, on a manual clock moved in step with a manual-clock simulator.

    rig = MonitorRig(sim, settings)            # the daemon's own wiring (monitor.wiring), no scheduler
    await rig.start()                           # restore + reconcile, as a start does
    await rig.step(5)                           # advance both clocks 5 s, then every job once
    rig.sent                                    # what the notification channel received
    await rig.restart()                         # a new process on the same state file (after a crash)

Readings, deadlines and the ledger agree to the second. `RecordingNotifier` is the channel; pass
`notifiers=` for others (a second recorder with another name, the real Slack notifier...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monitor.clock import ManualClock
from monitor.config.settings import Settings
from monitor.daemon import Daemon
from monitor.notify.base import Notifier
from monitor.records import Notification
from tests.support.simulator import SimulatorHandle


class RecordingNotifier:
    """A channel that keeps what it was sent (share the list across restarts to count "in total").
    `keep` narrows what is kept (e.g. only enforcement messages); the rest is delivered and dropped."""

    def __init__(
        self,
        sent: list[Notification],
        *,
        channel: str = "recorder",
        keep: Callable[[Notification], bool] | None = None,
    ) -> None:
        self.sent = sent
        self.channel = channel
        self.keep = keep
        self.fail_with: Exception | None = None

    async def send(self, notification: Notification, *, thread_ref: str | None) -> str | None:
        if self.fail_with is not None:
            raise self.fail_with
        if self.keep is None or self.keep(notification):
            self.sent.append(notification)
        return notification.dedup_key

    async def aclose(self) -> None:
        return None


class MonitorRig:
    def __init__(
        self,
        sim: SimulatorHandle,
        settings: Settings,
        *,
        clock: ManualClock | None = None,
        sent: list[Notification] | None = None,
        notifiers: list[Notifier] | None = None,
    ) -> None:
        self.sim = sim
        self.settings = settings
        self.clock = clock or ManualClock(start=sim.now())
        self.sent: list[Notification] = sent if sent is not None else []
        recorder: Notifier = RecordingNotifier(self.sent)
        self.notifiers: list[Notifier] = notifiers if notifiers is not None else [recorder]
        self.daemon = Daemon(settings=settings, clock=self.clock, notifiers=self.notifiers, serve_http=False)
        self.parts = self.daemon.parts

    async def start(self) -> MonitorRig:
        await self.daemon.start()
        return self

    def advance(self, seconds: float) -> None:
        self.sim.advance(seconds)
        self.clock.advance(seconds)

    async def step(self, seconds: float = 0.0) -> None:
        if seconds:
            self.advance(seconds)
        await self.daemon.one_pass()

    async def steps(self, count: int, seconds: float) -> None:
        for _ in range(count):
            await self.step(seconds)

    async def restart(self, **changes: Any) -> MonitorRig:
        await self.close()
        rig = MonitorRig(
            self.sim, changes.get("settings", self.settings), clock=self.clock, sent=self.sent, notifiers=self.notifiers
        )
        return await rig.start()

    async def close(self) -> None:
        await self.parts.client.aclose()
        self.parts.store.close()

    # What tests look at ------------------------------------------------------------------------

    def kinds(self, subject: str | None = None) -> list[str]:
        return [n.kind for n in self.sent if subject is None or n.subject == subject]

    def decisions(self, run_id: str) -> list[str]:
        return [r.decision for r in reversed(self.parts.store.actions(run_id=run_id, limit=1000))]
