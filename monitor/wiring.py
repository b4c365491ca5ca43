"""One function builds every component of the pipeline from the settings, with the clock, the API
client and the notifiers injectable: the daemon, `check`, the demo, the benchmarks and the tests
all wire the monitor the same way.

    config -> poller (API client, reading model, discovery) -> pipeline (rules, alerts)
           -> enforcer (deletes) / outbox (notifications) -> runtime state -> metrics and health
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.alerts.selfwatch import SelfWatch
from monitor.api.client import PrimeClient
from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.config.settings import Settings
from monitor.enforce.enforcer import Enforcer
from monitor.exporter.live import RuntimeState
from monitor.notify import build_notifiers
from monitor.notify.base import Notifier
from monitor.notify.outbox import OutboxDispatcher
from monitor.pipeline import Pipeline
from monitor.poller import Poller
from monitor.store.state_store import StateStore


@dataclass
class Components:
    settings: Settings
    clock: Clock
    runtime: RuntimeState
    store: StateStore
    client: PrimeClient
    dispatcher: OutboxDispatcher
    poller: Poller
    enforcer: Enforcer
    pipeline: Pipeline
    selfwatch: SelfWatch

    def apply(self, settings: Settings) -> None:
        """New settings for every component that reads them (a reload)."""
        self.settings = settings
        for part in (self.poller, self.pipeline, self.enforcer, self.selfwatch):
            part.settings = settings
        self.poller.watch.configured = list(settings.watch.runs)
        self.runtime.config_applied(settings.config_hash())

    def use_client(self, client: PrimeClient) -> None:
        """A new API client (a reload changed the key, the URL or the limits)."""
        self.client = client
        self.poller.client = client
        self.enforcer.client = client

    def retire(self, run_id: str) -> None:
        """A finished run past its retention leaves every component, and the store."""
        self.runtime.forget_run(run_id)
        self.poller.forget(run_id)
        self.pipeline.forget(run_id)
        self.store.forget_run(run_id, now=self.clock.now())

    async def aclose(self) -> None:
        await self.dispatcher.aclose()
        await self.client.aclose()
        self.store.close()


def build(
    settings: Settings,
    *,
    clock: Clock = SYSTEM_CLOCK,
    notifiers: list[Notifier] | None = None,
    client: PrimeClient | None = None,
    store: StateStore | None = None,
    runtime: RuntimeState | None = None,
    exclusive: bool = False,
) -> Components:
    """Every component, wired. `exclusive`: hold the state file's one-writer lock (the daemon)."""
    if runtime is None:
        runtime = RuntimeState(started_at=clock.now(), started_mono=clock.monotonic())
    runtime.config_applied(settings.config_hash())
    if store is None:
        store = StateStore(settings.state.path, history_per_run=settings.state.history_per_run, exclusive=exclusive)
    client = client or PrimeClient.from_settings(settings.api, clock=clock, stats=runtime.requests)
    dispatcher = OutboxDispatcher(
        store=store,
        notifiers=notifiers if notifiers is not None else build_notifiers(settings.notify),
        clock=clock,
        retry_base=settings.notify.retry_base,
        retry_max=settings.notify.retry_max,
        runtime=runtime,
    )
    runtime.channels_configured(dispatcher.channels)
    poller = Poller(settings=settings, client=client, store=store, runtime=runtime, clock=clock)
    enforcer = Enforcer(
        settings=settings,
        client=client,
        store=store,
        runtime=runtime,
        dispatcher=dispatcher,
        clock=clock,
        reader=poller.reread,
    )
    pipeline = Pipeline(
        settings=settings, store=store, runtime=runtime, dispatcher=dispatcher, clock=clock, enforcer=enforcer
    )
    poller.on_reading = pipeline.on_reading
    selfwatch = SelfWatch(
        settings=settings,
        runtime=runtime,
        dispatcher=dispatcher,
        store=store,
        clock=clock,
        active_runs=poller.watch.active,
    )
    return Components(
        settings=settings,
        clock=clock,
        runtime=runtime,
        store=store,
        client=client,
        dispatcher=dispatcher,
        poller=poller,
        enforcer=enforcer,
        pipeline=pipeline,
        selfwatch=selfwatch,
    )
