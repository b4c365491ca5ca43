"""The README's first command: the demo starts, shows a breach, and stops on Ctrl-C within 5 s."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

from tests.support.daemon import free_port


def read_until(proc: subprocess.Popen[str], needle: str, *, timeout: float) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not seen within {timeout}s:\n{seen[-3000:]}")


def test_demo_shows_a_breach_and_a_delete_then_stops_on_sigint() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "demo", "--no-live", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        seen = read_until(proc, "metrics: http://127.0.0.1:", timeout=30)
        seen += read_until(proc, "breached run-cap", timeout=120)
        seen += read_until(proc, "Deleted run exp-fast-burn", timeout=60)
        assert "exp-fast-burn at 50% of run-cap" in seen and "at 80% of run-cap" in seen
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, _ = proc.communicate(timeout=5)
        assert time.monotonic() - started < 5
        assert proc.returncode == 0
        assert "demo stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_live_view_renders_in_a_terminal_and_stops_on_sigint() -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "demo", "--port", str(free_port())],
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "160", "LINES": "50", "TERM": "xterm"},
    )
    os.close(terminal)
    screen = b""
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not (b"exp-healthy" in screen and b"wallet-demo" in screen):
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                screen += os.read(controller, 65536)
        assert b"exp-fast-burn" in screen and b"exp-healthy" in screen and b"wallet-demo" in screen, screen[-2000:]
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        proc.wait(timeout=5)
        assert time.monotonic() - started < 5
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
