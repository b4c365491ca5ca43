#!/usr/bin/env python3
"""The image's HEALTHCHECK: GET /healthz on the address the daemon really listens on.

The address is resolved as the daemon resolves it: PRIME_MONITOR_SERVER__LISTEN (or a JSON
PRIME_MONITOR_SERVER section) over `server.listen` in the config file over the default
0.0.0.0:9477. The config file is the one the daemon was started with (`--config` in PID 1's
command line, which is tini's and carries the daemon's arguments), so a `docker run ... run
--config /my.yml` is followed too. A wildcard host is probed on loopback.

Exit 0: healthy, or the HTTP server is disabled (server.enabled: false; nothing to ask).
Exit 1: unhealthy or unreachable, with one line saying why (Docker keeps it in `docker inspect`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG = "/etc/prime-cost-monitor/config.yml"
DEFAULT_LISTEN = "0.0.0.0:9477"
TIMEOUT_S = 4.0


def daemon_config_path(pid: int) -> str:
    """The --config the daemon (under tini) was started with, else the image's default."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return DEFAULT_CONFIG
    words = [argument.decode(errors="replace") for argument in arguments]
    for index, word in enumerate(words):
        if word == "--config" and index + 1 < len(words):
            return words[index + 1]
        if word.startswith("--config="):
            return word.partition("=")[2]
    return DEFAULT_CONFIG


def _server_section(config_path: str, environ: Mapping[str, str]) -> dict[str, Any]:
    section: dict[str, Any] = {}
    try:
        loaded = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        loaded = None
    if isinstance(loaded, dict) and isinstance(loaded.get("server"), dict):
        section.update(loaded["server"])
    whole = environ.get("PRIME_MONITOR_SERVER")
    if whole:
        try:
            parsed = json.loads(whole)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            section.update(parsed)
    for key in ("listen", "enabled"):
        value = environ.get(f"PRIME_MONITOR_SERVER__{key.upper()}")
        if value is not None:
            section[key] = value
    return section


def healthz_url(config_path: str, environ: Mapping[str, str]) -> str | None:
    """The /healthz URL to probe, or None when the server is disabled."""
    section = _server_section(config_path, environ)
    if str(section.get("enabled", True)).strip().lower() in ("false", "0", "no", "off"):
        return None
    listen = str(section.get("listen") or DEFAULT_LISTEN)
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Docker HEALTHCHECK for prime-cost-monitor.")
    parser.add_argument("--config", help="the daemon's config file (default: read from the daemon's command line)")
    parser.add_argument("--pid", type=int, default=1, help="the process whose command line names --config")
    args = parser.parse_args(argv)
    config_path = args.config or daemon_config_path(args.pid)
    url = healthz_url(config_path, os.environ)
    if url is None:
        print("server.enabled is false: no /healthz to ask")
        return 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        print(f"{url}: {exc.code} {exc.read(300).decode(errors='replace').strip()}")
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: unreachable ({exc})")
        return 1
    print(f"{url}: {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
