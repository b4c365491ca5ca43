"""`status`, `protect`, `unprotect`: commands that read or change the state store directly.

They open the daemon's SQLite file (WAL: safe beside a running daemon); a running daemon reads
protections at decision time, so `protect` takes effect without a restart.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from monitor.api.ids import run_id_problem
from monitor.config.durations import format_duration, parse_duration
from monitor.config.settings import ConfigError, Settings
from monitor.store.state_store import StateStore

_GLOB_CHARS = "*?[]"


def _state_path(args: argparse.Namespace, load: Callable[[Path | None], Settings]) -> str:
    if args.state:
        return str(args.state)
    return load(args.config).state.path


def run_state_command(args: argparse.Namespace, *, load: Callable[[Path | None], Settings]) -> int:
    path = _state_path(args, load)
    if path != ":memory:" and not Path(path).exists():
        raise ConfigError(f"state.path: no state store at {path} (has the daemon run with this config?)")
    store = StateStore(path)
    try:
        if args.command == "protect":
            return _protect(store, args)
        if args.command == "unprotect":
            removed = store.unprotect(args.run_id)
            print(f"{args.run_id}: {'protection removed' if removed else 'was not protected'}")
            return 0
        return _status(store, args)
    finally:
        store.close()


def protect_id_problem(run_id: str) -> str | None:
    """Why `protect` cannot take this id, or None. Runtime protections are exact ids."""
    problem = run_id_problem(run_id)
    if problem is not None:
        return problem
    glob = next((char for char in run_id if char in _GLOB_CHARS), None)
    if glob is not None:
        return (
            f"{run_id!r} holds the glob character {glob!r}, but runtime protections are exact run ids; "
            "to protect runs by a name pattern, add it to enforce.protect in the config (which takes globs)"
        )
    return None


def protect_seconds(text: str | None) -> float | None:
    """`--for`: a positive, finite duration, or None for "until unprotected"."""
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"--for: {exc}") from None
    if seconds <= 0:
        raise ConfigError("--for: must be longer than 0 (leave it out to protect until `unprotect`)")
    return seconds


def _protect(store: StateStore, args: argparse.Namespace) -> int:
    run_id: str = args.run_id
    problem = protect_id_problem(run_id)
    if problem is not None:
        raise ConfigError(f"protect: {problem}")
    seconds = protect_seconds(args.duration)
    if run_id not in store.known_runs() and run_id not in store.latest_run_snapshots():
        # Protecting ahead of a run's first reading is legitimate; a typo is likelier, so say so.
        print(
            f"prime-cost-monitor: warning: the state store has never seen run {run_id!r}; "
            "protecting it anyway (check the id if you meant a run the daemon watches)",
            file=sys.stderr,
        )
    now = time.time()
    until = now + seconds if seconds is not None else None
    store.protect(run_id, until=until, reason=args.reason, now=now)
    how_long = f"for {format_duration(seconds)}" if seconds is not None else "until `unprotect`"
    print(f"{run_id}: protected from deletion {how_long}")
    return 0


def _status(store: StateStore, args: argparse.Namespace) -> int:
    from monitor.cli.audit import actions_as_json, render_actions

    now = time.time()
    actions = store.actions(limit=args.limit)
    if args.json:
        document: dict[str, Any] = {"actions": actions_as_json(actions)}
        if not args.actions:
            document |= {
                "runs": [snap.to_dict() for snap in store.latest_run_snapshots().values()],
                "alerts": [vars_of(alert) for alert in store.alerts(firing_only=True)],
                "protections": [vars_of(p) for p in store.protections(now=now)],
            }
        print(json.dumps(document, indent=2, default=str))
        return 0
    console = Console(soft_wrap=False, width=200)
    if not args.actions:
        _print_runs(console, store)
        _print_alerts(console, store)
        _print_protections(console, store, now=now)
    console.print(render_actions(actions), markup=False, highlight=False)
    return 0


def vars_of(obj: object) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in getattr(obj, "__dataclass_fields__", {})}


def _print_runs(console: Console, store: StateStore) -> None:
    table = Table(title="runs")
    for column in ("run", "name", "model", "status", "total $", "tokens", "read at"):
        table.add_column(column)
    known = store.known_runs()
    for run_id, snap in sorted(store.latest_run_snapshots().items()):
        finished = known.get(run_id)
        status = snap.status or ""
        if finished is not None and finished.finished_at is not None:
            status += " (final)"
        table.add_row(
            escape(run_id),
            escape(snap.run_name or ""),
            escape(snap.base_model or ""),
            status,
            f"{snap.total_cost_usd:,.2f}",
            f"{snap.total_tokens:,}",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.taken_at)),
        )
    console.print(table)


def _print_alerts(console: Console, store: StateStore) -> None:
    table = Table(title="alerts open")
    for column in ("subject", "rule", "tier", "severity", "since", "last sent", "value"):
        table.add_column(column)
    for alert in store.alerts(firing_only=True):
        table.add_row(
            escape(alert.subject),
            escape(alert.rule),
            str(alert.tier),
            alert.severity,
            _when(alert.opened_at),
            _when(alert.last_notified_at),
            "" if alert.last_value is None else f"{alert.last_value:,.2f}",
        )
    console.print(table)


def _print_protections(console: Console, store: StateStore, *, now: float) -> None:
    table = Table(title="runtime protections (prime-cost-monitor protect)")
    for column in ("run", "until", "reason"):
        table.add_column(column)
    for protection in store.protections(now=now):
        until = "until unprotected" if protection.until is None else _when(protection.until)
        table.add_row(escape(protection.run_id), until, escape(protection.reason))
    console.print(table)


def _when(epoch: float | None) -> str:
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
