"""Command line: `prime-cost-monitor run|check|validate|status|protect|unprotect|simulate|demo`.

Exit codes (check and run --once): 0 all within budget, 1 a rule breached, 2 bad config,
3 API unreachable or unauthorised, 4 a watched run or the wallet could not be read; 70 an internal
error (a bug: one line, the traceback with --debug).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
import traceback
from pathlib import Path

import structlog
from rich.console import Console

from monitor import __version__
from monitor.cli.check import render
from monitor.config.durations import parse_duration
from monitor.config.load import LoadedConfig, load_config
from monitor.config.settings import ConfigError, Settings
from monitor.logs import configure_logging, register_secrets, scrub, secrets_of
from monitor.pass_result import EXIT_CONFIG, EXIT_OK
from monitor.store.schema import StoreError


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """Built once per process: parsing leaves it unchanged, and building it costs milliseconds that
    add up when main() is called in-process thousands of times (the config fuzz tests)."""
    parser = argparse.ArgumentParser(
        prog="prime-cost-monitor",
        description="Guards the money spent on Prime Intellect Training API runs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an internal error, print its traceback")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="the daemon: poll, export metrics, alert, enforce")
    run.add_argument("--config", type=Path, help="YAML config file (env vars PRIME_MONITOR_* override it)")
    run.add_argument("--once", action="store_true", help="one full pass, then exit with check's codes")
    run.add_argument("--log-format", choices=["json", "console"], help="override log.format")

    check = commands.add_parser(
        "check", help="one pass, a table; exit 0 ok / 1 breach / 2 bad config / 3 API / 4 unreadable"
    )
    check.add_argument("--config", type=Path)
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")

    validate = commands.add_parser("validate", help="validate a config file and print what it sets")
    validate.add_argument("file", type=Path)

    status = commands.add_parser("status", help="what the state store knows: runs, alerts, actions")
    _state_arguments(status)
    status.add_argument("--actions", action="store_true", help="the full action log (audit)")
    status.add_argument("--json", action="store_true")
    status.add_argument("--limit", type=int, default=50)

    protect = commands.add_parser("protect", help="exempt a run from deletion (honoured by a running daemon)")
    _state_arguments(protect)
    protect.add_argument("run_id")
    protect.add_argument("--for", dest="duration", help="for how long, e.g. 6h (default: until unprotected)")
    protect.add_argument("--reason", default="", help="why (kept in the audit)")

    unprotect = commands.add_parser("unprotect", help="remove a runtime exemption")
    _state_arguments(unprotect)
    unprotect.add_argument("run_id")

    simulate = commands.add_parser("simulate", help="a spec-faithful Prime API simulator on loopback")
    simulate.add_argument("--port", type=int, default=8765)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--scenario", type=Path, help="scenario YAML (default: the built-in one)")

    demo = commands.add_parser("demo", help="simulator + daemon + live console view; no account needed")
    demo.add_argument("--port", type=int, default=9477, help="the daemon's /metrics port")
    demo.add_argument("--duration", help="stop by itself after this long (e.g. 2m)")
    demo.add_argument("--no-live", action="store_true", help="plain log lines instead of the live view")
    return parser


def _state_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="read the state path from this config")
    parser.add_argument("--state", help="the state store file (overrides the config's state.path)")


EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in the monitor, not in the input


def _say(text: str) -> None:
    """One message on stderr, secrets masked, whatever the file names or values hold."""
    print(f"prime-cost-monitor: {scrub(text)}", file=sys.stderr)


def _read(path: Path | None) -> LoadedConfig:
    loaded = load_config(path)
    register_secrets(secrets_of(loaded.settings))
    return loaded


def _load(path: Path | None) -> Settings:
    """Settings for commands that print results: warnings go to stderr, once."""
    loaded = _read(path)
    for warning in loaded.warnings:
        _say(f"warning: {warning}")
    return loaded.settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Commands that print results keep stdout for them; `run` and `demo` configure their own logging.
    configure_logging(fmt="console", level="warning")
    try:
        return _dispatch(args)
    except ConfigError as exc:
        _say(str(exc))
        return EXIT_CONFIG
    except StoreError as exc:
        _say(f"state.path: {exc}")
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout was closed (`status | head`): nothing more to say. Point it at /dev/null so the
        # interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        # A bug: one line, never a traceback, unless asked for. Secrets are masked either way.
        _say(f"internal error: {type(exc).__name__}: {exc}")
        if args.debug:
            print(scrub("".join(traceback.format_exception(exc))), file=sys.stderr)
        else:
            _say("run again with --debug for the traceback, and please report it")
        return EXIT_INTERNAL


def _dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "validate":
        settings = _load(args.file)
        shown = str(args.file).encode("utf-8", "backslashreplace").decode("utf-8")
        print(f"{shown}: ok ({len(settings.rules)} rules, config hash {settings.config_hash()})")
        return EXIT_OK
    if command == "check":
        return asyncio.run(_check(_load(args.config), as_json=args.json))
    if command == "run":
        loaded = _read(args.config)
        settings = loaded.settings
        configure_logging(fmt=args.log_format or settings.log.format, level=settings.log.level)
        log = structlog.get_logger("monitor.cli.main")
        for warning in loaded.warnings:
            log.warning("config_warning", warning=warning)
        try:
            return asyncio.run(_run(settings, config_path=args.config, once=args.once))
        except (ConfigError, StoreError):
            raise  # said by main, exit 2
        except Exception:
            # The daemon's log stream is where operators look: the traceback goes there, redacted.
            log.exception("daemon_crashed")
            return EXIT_INTERNAL
    if command in ("status", "protect", "unprotect"):
        from monitor.cli.status import run_state_command

        return run_state_command(args, load=_load)
    if command == "simulate":
        from monitor.sim.server import serve

        configure_logging(fmt="console", level="info")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve(host=args.host, port=args.port, scenario_path=str(args.scenario) if args.scenario else None)
            )
        return EXIT_OK
    if command == "demo":
        from monitor.cli.demo import run_demo

        try:
            duration = parse_duration(args.duration) if args.duration else None
        except ValueError as exc:
            raise ConfigError(f"--duration: {exc}") from None
        return run_demo(metrics_port=args.port, duration=duration, live=not args.no_live)
    raise AssertionError(command)


async def _check(settings: Settings, *, as_json: bool) -> int:
    from monitor.daemon import Daemon

    configure_logging(fmt="console", level="error")
    # A check reads and judges; it keeps no state, sends nothing and never deletes.
    dry = settings.model_copy(
        update={
            "state": settings.state.model_copy(update={"path": ":memory:"}),
            "enforce": settings.enforce.model_copy(update={"dry_run": True}),
        }
    )
    daemon = Daemon(settings=dry, notifiers=[], serve_http=False)
    try:
        result = await daemon.run_once()
    finally:
        await daemon.shutdown()
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        render(result, Console(soft_wrap=False, width=200))
    return result.exit_code


async def _run(settings: Settings, *, config_path: Path | None, once: bool) -> int:
    from monitor.daemon import Daemon

    daemon = Daemon(settings=settings, config_path=config_path, serve_http=not once)
    if once:
        try:
            result = await daemon.run_once()
        finally:
            await daemon.shutdown()
        return result.exit_code
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, daemon.request_stop)
    loop.add_signal_handler(signal.SIGINT, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    try:
        await daemon.run_forever()
    except OSError as exc:
        # Typically the metrics port is taken: say which, rather than a traceback.
        print(f"prime-cost-monitor: cannot start: {exc}", file=sys.stderr)
        return 1
    return EXIT_OK
