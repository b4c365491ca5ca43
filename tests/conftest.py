"""Shared fixtures live in tests/support/; one fake of each real thing, used by every test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

pytest_plugins = [
    "tests.support.simulator",
    "tests.support.fake_slack",
    "tests.support.daemon",
    "tests.support.prometheus",
]


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """A test that configures logging (level, stream) must not change what the next test sees."""
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
