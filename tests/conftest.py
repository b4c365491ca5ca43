"""Shared fixtures live in tests/support/; one fake of each real thing, used by every test."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import structlog

pytest_plugins = [
    "tests.support.simulator",
    "tests.support.fake_slack",
    "tests.support.daemon",
    "tests.support.prometheus",
    "tests.support.canned_api",
]


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Env beats config files, so a developer's own PRIME_* or Slack variables must not reach a test
    (nor a daemon or CLI process a test starts with this environment)."""
    for name in list(os.environ):
        if name.startswith("PRIME_") or name == "SLACK_BOT_TOKEN":
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """A test that configures logging (level, stream) must not change what the next test sees."""
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
