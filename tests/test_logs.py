"""Logs: JSON lines, secrets masked by key and by value, tracebacks without local variables."""

from __future__ import annotations

import io
import json

import structlog
from pydantic import SecretStr

from monitor.logs import configure_logging, register_secrets

SECRET = "pk-live-0123456789abcdefSECRET"


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_secrets_are_masked_by_key_and_by_value() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level="info", stream=stream)
    register_secrets([SecretStr(SECRET)])
    log = structlog.get_logger("test")
    log.info("request", api_key="whatever-the-value", authorization="Bearer abc")
    log.info("oops", error=f"connection to https://x?token={SECRET} failed", nested={"detail": [SECRET]})
    log.info("model", key=SecretStr("another-secret-value"), tokens=1234)
    text = stream.getvalue()
    assert SECRET not in text and "whatever-the-value" not in text and "another-secret-value" not in text
    events = lines(stream)
    assert events[0]["api_key"] == "***" and events[0]["authorization"] == "***"
    assert "***" in str(events[1]["error"])
    # Ordinary fields are left alone: a token *count* is not a secret.
    assert events[2]["tokens"] == 1234
    assert events[0]["level"] == "info" and "timestamp" in events[0]


def test_tracebacks_are_rendered_without_locals() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level="info", stream=stream)
    log = structlog.get_logger("test")

    def failing(api_key: str) -> None:
        local_secret = api_key  # noqa: F841 - a local a traceback with locals would show
        raise RuntimeError("boom")

    try:
        failing("local-secret-0123456789")
    except RuntimeError:
        log.exception("job_failed", job="poll_runs")
    text = stream.getvalue()
    assert "boom" in text and "RuntimeError" in text
    assert "local-secret-0123456789" not in text


def test_level_filters() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level="warning", stream=stream)
    log = structlog.get_logger("test")
    log.info("quiet")
    log.warning("loud")
    assert [e["event"] for e in lines(stream)] == ["loud"]
