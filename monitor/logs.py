"""structlog set-up: JSON lines by default, a console renderer on a flag, secrets redacted.

Redaction works at three levels, so a secret that reaches a log by any road is still not written:
- by key: a field named like a token, key, secret or password (`tokenValue`, `wandbApiKey`, `hfToken`
  too) is masked whole, in nested dicts and lists as well;
- by value: every secret the settings hold is registered and masked wherever it appears, and text is
  searched for secrets in known shapes: tokens inside URLs (userinfo, path segments, query values),
  `Bearer ...`, Slack and Hugging Face tokens, `token=...` / `"apiKey": "..."` pairs;
- on the final text: the rendered line, tracebacks included, in both formats, goes through the same
  text scrubber just before it is written.
Records of libraries that use stdlib `logging` (APScheduler, aiohttp, asyncio, httpx) are rendered by
the same processors (structlog's ProcessorFormatter on the root handler): one JSON line per record with
its logger name and level, redacted the same way, never plain text in the JSON log.
Tracebacks are rendered as text before redaction (console) or as a structure that redaction walks
(JSON), never with local variables, which could hold the key.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO
from urllib.parse import urlsplit

import structlog
from pydantic import SecretStr

from monitor.config.settings import Settings

REDACTED = "***"
_SECRET_NAME = (
    r"key|token|token_?value|api_?key|apikey|secret|password|passwd|authorization|auth|bearer|"
    r"hf_?token|wandb_?api_?key|webhook_?url|url_with_token|access_?token|refresh_?token|client_?secret|"
    r"[a-z0-9]+_token|[a-z0-9]+_secret|[a-z0-9]+_password|[a-z0-9]+_api_?key"
)
# Whole key names, so that `tokens` (a count) or `dedup_key` are not mistaken for secrets.
_SECRET_KEY = re.compile(rf"^(?:{_SECRET_NAME})$", re.I)
# `token=abc`, `"apiKey": "abc"`, `hfToken='abc'` inside text (an exception message, a response body).
_SECRET_PAIR = re.compile(
    rf"(?<![A-Za-z0-9_])([\"']?(?:{_SECRET_NAME})[\"']?\s*[:=]\s*)([\"']?)"
    r"(?!(?:null|true|false|None|True|False)\b)(?!\d+\b)([^\"'\s,;&}\]]+)",
    re.I,
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,})")
# Token shapes worth masking wherever they appear: Slack (xoxb-, xapp-), Hugging Face (hf_).
_TOKEN_SHAPES = re.compile(r"\b(?:xox[a-z]-[A-Za-z0-9-]{6,}|xapp-[A-Za-z0-9-]{6,}|hf_[A-Za-z0-9]{16,})")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}://[^\s\"'<>\\`]+")
# After these path segments every segment is a credential (hooks.slack.com/services/T/B/SECRET).
_HOOK_MARKERS = frozenset({"services", "hooks", "webhooks", "workflows", "triggers", "hook"})
_QUERY_SECRET = re.compile(
    r"(?i)^(?:.*token.*|.*key.*|.*secret.*|sig|signature|code|pass|password|passwd|auth.*|credential.*|session.*)$"
)
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_\-.~+/=%]+$")
_MAX_DEPTH = 20

_known_secrets: set[str] = set()


def register_secrets(values: Iterable[str | SecretStr | None]) -> None:
    """Mask these values wherever they appear; for a URL, also the credential parts inside it."""
    for value in values:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        # Very short strings would mask ordinary words; real keys are long.
        if not raw or len(raw) < 6:
            continue
        _known_secrets.add(raw)
        if "://" in raw:
            _known_secrets.update(part for part in _url_credentials(raw) if len(part) >= 8)


def secrets_of(settings: Settings) -> list[SecretStr | None]:
    return [
        settings.api.api_key,
        settings.notify.slack.token,
        settings.notify.slack.webhook_url,
        settings.notify.webhook.url,
    ]


def scrub(text: str) -> str:
    """`text` with every secret it holds masked: registered values, and tokens in known shapes."""
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "://" in text:
        text = _URL.sub(lambda match: _scrub_url(match.group(0)), text)
    text = _AUTH_SCHEME.sub(lambda match: f"{match.group(1)} {REDACTED}", text)
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    return _SECRET_PAIR.sub(lambda match: f"{match.group(1)}{match.group(2)}{REDACTED}", text)


def _looks_like_token(part: str) -> bool:
    if len(part) >= 32:
        return True
    has_letter = any(char.isalpha() for char in part)
    has_digit = any(char.isdigit() for char in part)
    return len(part) >= 16 and has_letter and has_digit and _TOKEN_CHARS.match(part) is not None


def _url_credentials(url: str) -> list[str]:
    """The parts of a URL that are credentials: userinfo, hook path segments, token-like segments, query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    if "@" in parts.netloc:
        found.append(parts.netloc.rpartition("@")[0])
    hook = False
    for segment in parts.path.split("/"):
        if segment and (hook or _looks_like_token(segment)):
            found.append(segment)
        hook = hook or segment.lower() in _HOOK_MARKERS
    for query in (parts.query, parts.fragment):
        for pair in query.split("&"):
            key, _, value = pair.partition("=")
            if value and (_QUERY_SECRET.match(key) or _looks_like_token(value)):
                found.append(value)
    return found


def _scrub_url(url: str) -> str:
    """The URL with its credentials masked and its shape kept: https://hooks.slack.com/services/***/***/***."""
    scheme, _, rest = url.partition("://")
    authority, slash, remainder = rest.partition("/")
    if "@" in authority:
        authority = REDACTED + "@" + authority.rpartition("@")[2]
    path, _, fragment = remainder.partition("#")
    path, query_mark, query = path.partition("?")
    hook = False
    segments = []
    for segment in path.split("/"):
        segments.append(REDACTED if segment and (hook or _looks_like_token(segment)) else segment)
        hook = hook or segment.lower() in _HOOK_MARKERS
    out = f"{scheme}://{authority}{slash}{'/'.join(segments)}"
    if query_mark:
        out += "?" + _scrub_query(query)
    if fragment:
        out += "#" + _scrub_query(fragment)
    return out


def _scrub_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        key, equals, value = pair.partition("=")
        if value and (_QUERY_SECRET.match(key) or _looks_like_token(value)):
            value = REDACTED
        pairs.append(f"{key}{equals}{value}")
    return "&".join(pairs)


def _redact_value(key: str, value: Any, depth: int = 0) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if _SECRET_KEY.match(key) and value not in (None, "", False):
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if depth >= _MAX_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v, depth + 1) for v in value]
    # Any other object would be rendered by its repr (both renderers do): scrub that text.
    return scrub(repr(value))


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _scrubbing(renderer: Callable[..., Any]) -> Callable[..., Any]:
    """The renderer, then the text scrubber over the whole line it produced (tracebacks included)."""

    def render(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
        rendered = renderer(logger, method, event_dict)
        return scrub(rendered) if isinstance(rendered, str) else rendered

    return render


def configure_logging(*, fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    renderer: Any
    exception_processors: list[Any]
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback)
        # Render the traceback to text here, before redaction; ConsoleRenderer would render it after.
        exception_processors = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.processors.JSONRenderer()
        exception_processors = [
            structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        ]
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    # What every event goes through last, ours and the libraries' alike.
    final: list[Any] = [*exception_processors, redact_secrets, _scrubbing(renderer)]
    level_number = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            *final,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (apscheduler, aiohttp, asyncio, httpx) go to the same stream, as
    # the same kind of line, quietly: warnings and up (their info lines are chatter at every poll).
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    logging.basicConfig(level=max(logging.WARNING, level_number), handlers=[handler], force=True)
