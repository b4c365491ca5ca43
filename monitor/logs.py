"""structlog set-up: JSON lines by default, a console renderer on a flag, secrets redacted.

Redaction works twice: by key (anything named like a token, key, secret or password) and by
value (every secret the settings hold is registered, and any string containing one is masked),
so a secret that leaks into an exception message is still not written out. Tracebacks are
rendered without local variables, which could hold the key.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from pydantic import SecretStr

from monitor.config import Settings

REDACTED = "***"
# Whole key names, so that `tokens` (a count) or `dedup_key` are not mistaken for secrets.
_SECRET_KEY = re.compile(
    r"^(token|tokenvalue|token_value|api_?key|apikey|secret|password|passwd|authorization|auth|bearer|"
    r"hf_?token|wandb_?api_?key|webhook_url|url_with_token|.*_token|.*_secret|.*_password|.*_api_key)$",
    re.I,
)
_known_secrets: set[str] = set()


def register_secrets(values: Iterable[str | SecretStr | None]) -> None:
    for value in values:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        # Very short strings would mask ordinary words; real keys are long.
        if raw and len(raw) >= 6:
            _known_secrets.add(raw)


def secrets_of(settings: Settings) -> list[SecretStr | None]:
    return [
        settings.api.api_key,
        settings.notify.slack.token,
        settings.notify.slack.webhook_url,
        settings.notify.webhook.url,
    ]


def scrub(text: str) -> str:
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if _SECRET_KEY.match(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def configure_logging(*, fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback)
        exception_processors: list[Any] = []
    else:
        renderer = structlog.processors.JSONRenderer()
        exception_processors = [
            structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *exception_processors,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (apscheduler, aiohttp) go to the same stream, quietly.
    logging.basicConfig(stream=out, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
