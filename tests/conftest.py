"""Shared fixtures live in tests/support/; one fake of each real thing, used by every test."""

pytest_plugins = [
    "tests.support.simulator",
    "tests.support.fake_slack",
    "tests.support.daemon",
    "tests.support.prometheus",
]
