"""`wrk` (Debian package `wrk`, a C load generator) against the simulator: the ceiling a Python client is compared to.

Used by client_throughput.py and scale.py. wrk runs as its own process with one thread and `concurrency`
connections, each with one request in flight, for a fixed time; a Lua script cycles the requests over the
same run ids the Python drivers use, with the same Bearer header. Its CPU comes from the reaped children's times, the
simulator's from /proc, both per request.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import API_KEY, cpu_seconds

WRK_TIMEOUT_MARGIN = 30.0


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float  # the wrk process
    server_cpu_seconds: float
    errors: int  # socket errors and non-2xx answers

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def wrk_note() -> str:
    path = wrk_binary()
    if path is None:
        return "wrk: NOT installed (apt-get install wrk): the wrk rows and ratios are left out"
    version = subprocess.run([path, "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    return f"wrk: {version.strip() or path}"


def _lua(ids: list[str], path_template: str) -> str:
    quoted = ", ".join(f'"{run_id}"' for run_id in ids)
    return (
        f"local ids = {{{quoted}}}\n"
        "local i = 0\n"
        f'wrk.headers["Authorization"] = "Bearer {API_KEY}"\n'
        'wrk.headers["Accept"] = "application/json"\n'
        "request = function()\n"
        "  i = i + 1\n"
        f'  return wrk.format("GET", string.format("{path_template}", ids[(i % #ids) + 1]))\n'
        "end\n"
    )


def _duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(
    base_url: str,
    ids: list[str],
    *,
    concurrency: int,
    seconds: float,
    server_pid: int,
    workdir: Path,
    path_template: str = "/api/v1/billing/runs/%s/usage",
) -> WrkResult:
    """One wrk run of `seconds`; raises RuntimeError if wrk is missing or its output cannot be read."""
    binary = wrk_binary()
    if binary is None:
        raise RuntimeError("wrk is not installed")
    script = workdir / "wrk-usage.lua"
    script.write_text(_lua(ids, path_template), encoding="ascii")
    command = [binary, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script)]
    server_cpu = cpu_seconds(server_pid)
    children_before = os.times()
    proc = subprocess.Popen([*command, base_url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=seconds + WRK_TIMEOUT_MARGIN)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError("wrk did not finish in time") from None
    # communicate() reaped wrk: its CPU is what this process's reaped children gained meanwhile.
    children = os.times()
    wrk_cpu = (children.children_user - children_before.children_user) + (
        children.children_system - children_before.children_system
    )
    server_cpu = cpu_seconds(server_pid) - server_cpu
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    if proc.returncode != 0 or done is None or p50 is None or p99 is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out[-2000:]}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return WrkResult(
        requests=int(done.group(1)),
        seconds=_duration_ms(done.group(2) + done.group(3)) / 1000,
        p50_ms=_duration_ms(p50.group(1)),
        p99_ms=_duration_ms(p99.group(1)),
        cpu_seconds=wrk_cpu,
        server_cpu_seconds=server_cpu,
        errors=errors,
    )
