"""`prime-cost-monitor demo`: the simulator, the daemon against it, and a live console view.

No account, no network, no Slack: alerts go to the view (or stdout with --no-live), the state
store lives in a temporary folder, and everything stops cleanly on Ctrl-C. Against the simulator
the demo enforces for real (dry_run off) so the whole delete sequence can be watched; shipped
configs stay in dry-run.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
from collections import deque
from importlib import resources
from pathlib import Path
from typing import TextIO

from pydantic import SecretStr
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from monitor.config.durations import format_duration
from monitor.config.settings import Settings
from monitor.daemon import Daemon
from monitor.logs import configure_logging
from monitor.notify.base import Notifier
from monitor.notify.console import ConsoleNotifier
from monitor.records import Evaluation, Notification
from monitor.sim.server import SimulatorServer

RUN_CAP_USD = 5.0


class FeedNotifier:
    """The live view's notification channel: keeps the latest messages for the screen."""

    channel = "console"

    def __init__(self, size: int = 10) -> None:
        self.messages: deque[Notification] = deque(maxlen=size)

    async def send(self, notification: Notification, *, thread_ref: str | None) -> str | None:
        self.messages.append(notification)
        return notification.dedup_key

    async def aclose(self) -> None:
        return None


def demo_settings(*, base_url: str, api_key: str, metrics_port: int, state_path: str) -> Settings:
    return Settings(
        api={"base_url": base_url, "api_key": SecretStr(api_key), "timeout": 5, "max_retries": 2},
        watch={"discover": True},
        poll={"interval": 3, "min_interval": 1, "wallet_interval": 3, "burn_window": 30},
        rules=[
            {
                "name": "run-cap",
                "scope": "run",
                "metric": "total_cost_usd",
                "threshold": RUN_CAP_USD,
                "warn_at": [0.5, 0.8],
                "action": "delete",
                "renotify": "10m",
            },
            {"name": "wallet-floor", "scope": "wallet", "metric": "balance_usd", "below": 100, "warn_at": [0.8]},
        ],
        enforce={
            "dry_run": False,
            "grace_period": 10,
            "confirm_polls": 2,
            "max_deletes_per_hour": 3,
            "protect": ["prod-*"],
        },
        server={"listen": f"127.0.0.1:{metrics_port}"},
        state={"path": state_path},
        log={"format": "console", "level": "warning"},
    )


def _time_to_cap(ev: Evaluation | None) -> str:
    if ev is None or ev.time_to_limit_seconds is None:
        return ""
    return "over" if ev.breached else format_duration(ev.time_to_limit_seconds)


def render_view(daemon: Daemon, feed: FeedNotifier, *, metrics_url: str, sim_url: str) -> Group:
    runtime = daemon.runtime
    header = Text.assemble(
        ("prime-cost-monitor demo", "bold"),
        f"  simulator {sim_url}  ·  metrics {metrics_url}  ·  ",
        ("enforcing on the simulator (grace 10s, prod-* protected)", "yellow"),
        "  ·  Ctrl-C stops",
    )
    runs = Table(expand=True)
    for column in ("run", "model", "status", "tokens", "cost", "cap", "used", "burn $/h", "to cap", "alert"):
        runs.add_column(column, justify="right" if column in ("tokens", "cost", "used", "burn $/h") else "left")
    for run_id, snap in sorted(runtime.runs.items()):
        ev = runtime.evaluations.get((run_id, "run-cap"))
        used = "" if ev is None or ev.utilisation is None else f"{ev.utilisation:.0%}"
        style = "red" if ev is not None and ev.breached else ("yellow" if ev is not None and ev.tier else "")
        burn = runtime.burn_rates.get(run_id)
        runs.add_row(
            Text(snap.display_name),
            Text((snap.base_model or "").split("/")[-1]),
            Text(snap.status or ""),
            f"{snap.total_tokens:,}",
            f"${snap.total_cost_usd:,.2f}",
            f"${RUN_CAP_USD:,.2f}",
            Text(used, style=style),
            "" if burn is None else f"{burn:,.2f}",
            _time_to_cap(ev),
            Text("" if ev is None else ev.tier_label, style=style),
        )
    wallet = runtime.wallet
    wallet_line = (
        Text("wallet: waiting for the first reading")
        if wallet is None
        else Text(f"wallet {wallet.wallet_id}: balance ${wallet.balance_usd:,.2f} (floor $100, warning below $125)")
    )
    alerts = Table.grid(padding=(0, 1))
    for note in list(feed.messages)[-8:]:
        alerts.add_row(Text(note.title))
    actions = Table.grid(padding=(0, 1))
    for record in daemon.store.actions(limit=6):
        actions.add_row(Text(f"{record.decision:>14}  {record.run_id}  {record.reason}"[:160]))
    return Group(
        header,
        runs,
        wallet_line,
        Panel(alerts, title="notifications (Slack would get these)"),
        Panel(actions, title="action log (prime-cost-monitor status --actions)"),
    )


async def _demo(*, metrics_port: int, duration: float | None, live: bool, out: TextIO) -> int:
    scenario = resources.files("monitor.sim").joinpath("scenarios/demo.yml")
    with tempfile.TemporaryDirectory(prefix="prime-cost-monitor-demo-") as tmp:
        log_path = Path(tmp) / "daemon.log"
        log_file = log_path.open("a", encoding="utf-8")
        # The live view owns the screen, so logs go to a file; plain mode shows warnings only.
        if live:
            configure_logging(fmt="console", level="info", stream=log_file)
        else:
            configure_logging(fmt="console", level="warning", stream=sys.stderr)
        sim = SimulatorServer(str(scenario))
        sim_url = await sim.start()
        feed = FeedNotifier()
        notifiers: list[Notifier] = [feed] if live else [ConsoleNotifier(out)]
        settings = demo_settings(
            base_url=sim_url, api_key=sim.api_key, metrics_port=metrics_port, state_path=str(Path(tmp) / "state.db")
        )
        daemon = Daemon(settings=settings, notifiers=notifiers)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        daemon_task = asyncio.create_task(daemon.run_forever())
        try:
            metrics_url = await _metrics_url(daemon, daemon_task)
            print(f"simulator: {sim_url}   metrics: {metrics_url}   (Ctrl-C stops)", file=out, flush=True)
            deadline = None if duration is None else loop.time() + duration
            if live:
                console = Console(file=out)
                with Live(console=console, refresh_per_second=4, transient=False) as view:
                    while not _should_stop(stop, daemon_task, deadline, loop):
                        view.update(render_view(daemon, feed, metrics_url=metrics_url, sim_url=sim_url))
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 0.25)
            else:
                while not _should_stop(stop, daemon_task, deadline, loop):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.25)
        finally:
            daemon.request_stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(daemon_task, timeout=4)
            await sim.stop()
            log_file.close()
        sent = sum(daemon.runtime.alerts_sent.values())
        deleted = sum(n for (_, outcome), n in daemon.runtime.deletions.items() if outcome == "deleted")
        print(f"demo stopped: {sent} alerts sent, {deleted} run(s) deleted", file=out, flush=True)
        if daemon_task.done() and not daemon_task.cancelled() and daemon_task.exception() is not None:
            print(f"the daemon failed: {daemon_task.exception()}", file=sys.stderr)
            return 1
    return 0


async def _metrics_url(daemon: Daemon, daemon_task: asyncio.Task[None]) -> str:
    """The server binds inside run_forever; wait (bounded) until it has a port."""
    for _ in range(100):
        if daemon.server is not None:
            with contextlib.suppress(RuntimeError):  # not bound yet
                return f"{daemon.server.url}/metrics"
        if daemon_task.done():
            daemon_task.result()
        await asyncio.sleep(0.05)
    return "(metrics server not started)"


def _should_stop(
    stop: asyncio.Event, task: asyncio.Task[None], deadline: float | None, loop: asyncio.AbstractEventLoop
) -> bool:
    return stop.is_set() or task.done() or (deadline is not None and loop.time() >= deadline)


def run_demo(*, metrics_port: int = 9477, duration: float | None = None, live: bool = True) -> int:
    live = live and sys.stdout.isatty()
    return asyncio.run(_demo(metrics_port=metrics_port, duration=duration, live=live, out=sys.stdout))
