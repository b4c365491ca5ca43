"""Planted secrets through every log path, in both log formats: zero leaks.

Paths: plain fields, nested dicts and lists, the event text, values of unrelated fields (a webhook
receiver echoing its URL), exception messages, tracebacks (chained, with secrets in locals), objects
rendered by repr, and stdlib logging records. Secrets: the API key, a Slack bot token, a Slack webhook
URL (token in its path), a webhook URL with the token in its query, URL userinfo, tokenValue,
wandbApiKey and hfToken. Once registered (as the CLI does with the settings' secrets) and once not
(caught by key or by shape alone).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

import monitor.logs
from monitor.cli.main import main
from monitor.logs import REDACTED, configure_logging, register_secrets, scrub

API_KEY = "pk-live-7f3a9c0d2e4b6a8f1c3e5d7b9a0c2e4f"
SLACK_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
SLACK_WEBHOOK_SECRET = "Zx9Qw8Er7Ty6Ui5Op4As3Df2"
SLACK_WEBHOOK = f"https://hooks.slack.com/services/T01ABCDEF/B02GHIJKL/{SLACK_WEBHOOK_SECRET}"
QUERY_TOKEN = "qv-5ecret-Query-Value-4242"
QUERY_WEBHOOK = f"https://receiver.example.com/notify?channel=ops&token={QUERY_TOKEN}"
PATH_TOKEN = "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6"
PATH_WEBHOOK = f"https://receiver.example.com/in/{PATH_TOKEN}/post"
USERINFO_PASSWORD = "Us3rInfoPassw0rd"
USERINFO_URL = f"https://ops:{USERINFO_PASSWORD}@proxy.example.com:8443/api"
TOKEN_VALUE = "tv-run-token-value-0a1b2c3d"
WANDB_KEY = "0123456789abcdef0123456789abcdef01234567"
HF_TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"

ALL_SECRETS = [
    API_KEY,
    SLACK_TOKEN,
    SLACK_WEBHOOK_SECRET,
    QUERY_TOKEN,
    PATH_TOKEN,
    USERINFO_PASSWORD,
    TOKEN_VALUE,
    WANDB_KEY,
    HF_TOKEN,
]


class Echo:
    """An object logged as a field; both renderers fall back to its repr."""

    def __repr__(self) -> str:
        return f"Echo(url={SLACK_WEBHOOK!r}, auth='Bearer {API_KEY}')"


def fail_with_secrets_in_locals_and_message() -> None:
    api_key = API_KEY  # noqa: F841 - a traceback with locals would show it
    try:
        raise ConnectionError(f"POST {QUERY_WEBHOOK} refused; receiver said {SLACK_WEBHOOK}")
    except ConnectionError as cause:
        raise RuntimeError(
            f'delivery failed: {{"tokenValue": "{TOKEN_VALUE}", "wandbApiKey": "{WANDB_KEY}", '
            f'"hfToken": "{HF_TOKEN}"}} via {USERINFO_URL} with Authorization: Bearer {SLACK_TOKEN}'
        ) from cause


def log_everywhere(stream: io.StringIO) -> None:
    log = structlog.get_logger("test")
    log.info("fields", api_key=API_KEY, token=SLACK_TOKEN, webhook_url=SLACK_WEBHOOK, tokenValue=TOKEN_VALUE)
    log.info("camel", wandbApiKey=WANDB_KEY, hfToken=HF_TOKEN, total_tokens=1234)
    log.info(
        "nested",
        request={
            "json": {"tokenValue": TOKEN_VALUE, "config": {"wandbApiKey": WANDB_KEY}},
            "items": [{"hfToken": HF_TOKEN}],
        },
        urls=[SLACK_WEBHOOK, QUERY_WEBHOOK, (PATH_WEBHOOK, USERINFO_URL)],
    )
    log.warning(f"posting to {SLACK_WEBHOOK} and {QUERY_WEBHOOK}")
    log.warning("webhook_echo", response=f"received at {PATH_WEBHOOK} from {USERINFO_URL}; key={API_KEY}")
    log.warning("object", echo=Echo(), raw=f"hfToken={HF_TOKEN}".encode())
    try:
        fail_with_secrets_in_locals_and_message()
    except RuntimeError as exc:
        log.exception("job_failed", job="deliver")
        log.error("failed_with_exc_info", exc_info=exc)
        log.error("failed_error_field", error=str(exc), cause=repr(exc.__cause__))
        logging.getLogger("apscheduler.executors").error("job raised: %s", exc, exc_info=True)
    logging.getLogger("httpx").warning("HTTP Request: POST %s", SLACK_WEBHOOK)


@pytest.fixture(autouse=True)
def _own_secret_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor.logs, "_known_secrets", set())


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "by-key-and-shape"])
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_planted_secret_reaches_any_log_line(fmt: str, registered: bool) -> None:
    stream = io.StringIO()
    configure_logging(fmt=fmt, level="info", stream=stream)
    if registered:
        register_secrets([SecretStr(API_KEY), SLACK_TOKEN, SecretStr(SLACK_WEBHOOK), QUERY_WEBHOOK, None])
    log_everywhere(stream)
    text = stream.getvalue()
    leaked = [secret for secret in ALL_SECRETS if secret in text]
    assert not leaked, f"leaked {leaked} in:\n{text}"
    # The lines are still there and still useful: what happened, where, how much.
    for kept in (
        "job_failed",
        "ConnectionError",
        "RuntimeError",
        "receiver.example.com/in/***/post",
        "proxy.example.com",
    ):
        assert kept in text, kept
    if not registered:  # a registered URL is masked whole; otherwise only its credentials go
        assert "https://hooks.slack.com/services/***/***/***" in text
    assert "1234" in text and REDACTED in text and "apscheduler" in text
    if fmt == "json":
        events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert {e["event"] for e in events} >= {"fields", "nested", "job_failed", "failed_with_exc_info"}
        assert next(e for e in events if e["event"] == "camel")["total_tokens"] == 1234


def test_the_api_key_in_free_text_is_masked_once_registered() -> None:
    stream = io.StringIO()
    configure_logging(fmt="console", level="info", stream=stream)
    register_secrets([SecretStr(API_KEY)])
    structlog.get_logger("test").warning("auth_failed", detail=f"the server rejected {API_KEY} (revoked?)")
    assert API_KEY not in stream.getvalue() and "the server rejected ***" in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (SLACK_WEBHOOK, "https://hooks.slack.com/services/***/***/***"),
        (QUERY_WEBHOOK, "https://receiver.example.com/notify?channel=ops&token=***"),
        (PATH_WEBHOOK, "https://receiver.example.com/in/***/post"),
        (USERINFO_URL, "https://***@proxy.example.com:8443/api"),
        ("https://hooks.slack.com/services/T0/B0/SECRET", "https://hooks.slack.com/services/***/***/***"),
        ("GET http://127.0.0.1:8765/api/v1/billing/runs/run-qwen4b/usage 200", "run-qwen4b/usage 200"),
        ("wallet?limit=100&offset=0&teamId=team-x", "limit=100&offset=0&teamId=team-x"),
        ("total_tokens=5 input_tokens: 7 dedup_key=abc", "total_tokens=5 input_tokens: 7 dedup_key=abc"),
    ],
)
def test_urls_keep_their_shape_and_lose_their_credentials(text: str, kept: str) -> None:
    assert kept in scrub(text)


def test_cli_errors_never_echo_a_secret_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yml"
    # Invalid on purpose (no scheme), and it holds the webhook's secret.
    path.write_text(f"notify:\n  webhook: {{url: 'receiver.example.com/in/{PATH_TOKEN}'}}\n  slack: {{token: 42}}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "notify.webhook.url (line 2)" in err and "notify.slack.token (line 3)" in err
    assert PATH_TOKEN not in err
