"""What one HTTP answer from the Prime API means: a JSON value, an error to raise, or one to retry.

Kept apart from the client's request loop so the mapping from status to error class and `kind`
reads in one place. Every error names the request (method and scheme://host/path, never the query
string) and says the cause in words: the key refused (401) vs no access to this run (403), the URL
of a 404, the host that cannot be reached, the deadline that passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from monitor.api.body import BodyError, parse_json
from monitor.api.errors import (
    ApiError,
    ClientError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    ValidationFailedError,
)
from monitor.api.retry_after import parse_retry_after


class Retryable(Exception):
    """An attempt failed in a way that another attempt may fix; carries the error to raise at the end."""

    def __init__(self, error: ApiError, *, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, read within the deadline: the body (bounded) or why it could not be used."""

    method: str
    url: str
    status: int
    headers: httpx.Headers
    body: bytes
    body_problem: BodyError | None


def public_url(url: httpx.URL) -> str:
    """scheme://host[:port]/path of a request: what errors may show (no user info, query or fragment)."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.raw_path.split(b'?', 1)[0].decode('ascii')}"


def short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_422(body: bytes) -> tuple[str, list[str]]:
    """Read both the spec's `errors[]` shape and FastAPI's `detail[]` shape."""
    text = body[:200].decode("utf-8", "replace")
    try:
        value = parse_json(body)
    except BodyError:
        return text, []
    problems: list[tuple[str, str]] = []
    if isinstance(value, dict) and isinstance(value.get("errors"), list):
        for item in value["errors"]:
            if isinstance(item, dict):
                problems.append((str(item.get("param", "?")), str(item.get("details", ""))))
    elif isinstance(value, dict) and isinstance(value.get("detail"), list):
        for item in value["detail"]:
            if isinstance(item, dict):
                loc = item.get("loc") or []
                param = ".".join(str(p) for p in loc if p not in ("query", "path", "body")) or "?"
                problems.append((param, str(item.get("msg", ""))))
    elif isinstance(value, dict) and "detail" in value:
        problems.append(("?", str(value["detail"])))
    message = "; ".join(f"{param}: {details}" for param, details in problems) or text
    return message, [param for param, _ in problems]


def _redirect_target(headers: httpx.Headers) -> str:
    location = headers.get("Location")
    if not location:
        return ""
    try:
        target = httpx.URL(location)
    except (httpx.InvalidURL, ValueError, TypeError):
        return ""
    return f" to {public_url(target)}" if target.scheme else ""


def interpret(answer: Answer, *, endpoint: str, now: float) -> Any:
    """The JSON value of a 2xx answer; otherwise the ApiError it means, wrapped in Retryable when retrying may help."""
    status, url, where = answer.status, answer.url, f"{answer.method} {answer.url}"
    if 200 <= status < 300:
        try:
            if answer.body_problem is not None:
                raise answer.body_problem
            return parse_json(answer.body)
        except BodyError as exc:
            raise InvalidResponseError(
                f"{endpoint}: invalid response (HTTP {status}) from {where}: {exc}",
                endpoint=endpoint,
                status=status,
                url=url,
                field=exc.field,
            ) from None
    if status == 401:
        raise UnauthorizedError(
            f"{endpoint}: the API refused the key (HTTP 401) at {where}: check PRIME_API_KEY",
            endpoint=endpoint,
            status=status,
            url=url,
            kind="unauthorized",
        )
    if status == 403:
        raise UnauthorizedError(
            f"{endpoint}: the key was accepted but has no access (HTTP 403) to {where}: "
            "check that the key's user or team owns this run or wallet (api.team_id, PRIME_TEAM_ID)",
            endpoint=endpoint,
            status=status,
            url=url,
            kind="forbidden",
        )
    if status == 404:
        raise NotFoundError(f"{endpoint}: not found (HTTP 404): {where}", endpoint=endpoint, status=status, url=url)
    if status == 422:
        message, params = describe_422(answer.body)
        raise ValidationFailedError(
            f"{endpoint}: the API rejected the request (HTTP 422) at {where}: {message}",
            endpoint=endpoint,
            url=url,
            params=params,
        )
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(
            answer.headers.get("Retry-After"), now=now, date_header=answer.headers.get("Date")
        )
        error: ApiError
        if status == 429:
            error = RateLimitedError(
                f"{endpoint}: rate limited (HTTP 429) at {where}", endpoint=endpoint, url=url, retry_after=retry_after
            )
        else:
            error = ServerError(
                f"{endpoint}: server error (HTTP {status}) at {where}", endpoint=endpoint, status=status, url=url
            )
        raise Retryable(error, retry_after=retry_after)
    if 400 <= status < 500:
        raise ClientError(
            f"{endpoint}: the API refused the request (HTTP {status}) at {where}",
            endpoint=endpoint,
            status=status,
            url=url,
        )
    # 1xx/3xx: the client follows no redirects; one usually means a wrong api.base_url.
    raise InvalidResponseError(
        f"{endpoint}: unexpected HTTP {status}{_redirect_target(answer.headers)} from {where}; check api.base_url",
        endpoint=endpoint,
        status=status,
        url=url,
        field="(status)",
    )
