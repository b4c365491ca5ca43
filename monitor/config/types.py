"""Field types the settings share: URLs the clients can use, plain one-line text, timeouts."""

from __future__ import annotations

from typing import Annotated

import httpx
from pydantic import AfterValidator, Field, SecretStr

from monitor.config.durations import Duration, within

# A request or a delivery that needs longer than this is a hang, not a slow answer.
MAX_TIMEOUT = 600.0


def url_problem(value: str) -> str | None:
    """Why `value` cannot be an http(s) URL the clients can use, or None. Never quotes the value:
    a webhook URL is a secret."""
    if not value.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if len(value) > 2048:
        return "is longer than 2048 characters"
    if not value.isprintable() or any(char.isspace() for char in value):
        return "cannot hold spaces or control characters"
    try:
        host = httpx.URL(value).host
    except Exception:  # httpx raises several types for a malformed URL; any of them means "not usable"
        return "is not a valid URL"
    return None if host else "has no host"


def _checked_url(value: str) -> str:
    problem = url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _checked_secret_url(value: SecretStr) -> SecretStr:
    _checked_url(value.get_secret_value())
    return value


def _plain_text(value: str) -> str:
    if not value.isprintable():
        raise ValueError("cannot hold control or invisible characters")
    return value


Url = Annotated[str, AfterValidator(_checked_url)]
SecretUrl = Annotated[SecretStr, AfterValidator(_checked_secret_url)]
PlainText = Annotated[str, Field(max_length=1000), AfterValidator(_plain_text)]
# A NUL or a control character in a path fails in open() and sqlite3 at run time, not at load.
FilePath = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_plain_text)]
Timeout = Annotated[Duration, within(low=0.1, high=MAX_TIMEOUT)]
