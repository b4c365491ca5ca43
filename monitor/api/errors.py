"""Error classes the API client raises: one per failure a caller must tell apart.

Every error carries `endpoint` (usage, wallet, delete), `status` (the HTTP status, None when no
answer came), `url` (scheme://host/path of the request: never its query string, user info or
headers; "" when nothing was sent) and `kind`, one word for the cause that `check`, logs and
metrics can show:

| kind | class | cause |
| --- | --- | --- |
| unauthorized | UnauthorizedError | 401: the API refused the key |
| forbidden | UnauthorizedError | 403: the key is valid but lacks access to this run or team |
| not_found | NotFoundError | 404 |
| invalid_request | ValidationFailedError, ClientError | 422, or another 4xx |
| rate_limited | RateLimitedError | 429 after the retries ran out |
| server_error | ServerError | 5xx after the retries ran out |
| unreachable | UnreachableError | connection refused, DNS failure, reset, after the retries ran out |
| timeout | UnreachableError | no complete answer within `api.timeout`, after the retries ran out |
| invalid_response | InvalidResponseError | not JSON, too large or deep, a bad number or field, a redirect |
| unaddressable | UnaddressableRunError | a run id that cannot be put in a URL safely; nothing was sent |

Messages never carry the API key or a request's Authorization header.
"""

from __future__ import annotations

from typing import ClassVar

KINDS = (
    "unauthorized",
    "forbidden",
    "not_found",
    "invalid_request",
    "rate_limited",
    "server_error",
    "unreachable",
    "timeout",
    "invalid_response",
    "unaddressable",
)


class ApiError(Exception):
    """Base of every failure talking to the Prime API."""

    default_kind: ClassVar[str] = "invalid_response"

    def __init__(
        self, message: str, *, endpoint: str = "", status: int | None = None, url: str = "", kind: str | None = None
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status
        self.url = url
        self.kind = kind or self.default_kind


class ClientError(ApiError):
    """A 4xx the caller caused (or a request the client refused to send); retrying cannot help."""

    default_kind = "invalid_request"


class UnauthorizedError(ClientError):
    """401 (`kind` "unauthorized": the key is missing, wrong or revoked) or 403 (`kind` "forbidden")."""

    default_kind = "unauthorized"


class NotFoundError(ClientError):
    """404: the run (or path) does not exist; for DELETE, the run is already gone."""

    default_kind = "not_found"


class ValidationFailedError(ClientError):
    """422: the API rejected the request's parameters; `params` names them."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = 422,
        url: str = "",
        params: list[str] | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status, url=url)
        self.params = params or []


class UnaddressableRunError(ClientError):
    """A run id that `monitor.api.ids.run_id_problem` refuses: it could address another path. Never sent."""

    default_kind = "unaddressable"

    def __init__(self, message: str, *, endpoint: str = "", run_id: object = None, problem: str = "") -> None:
        super().__init__(message, endpoint=endpoint)
        self.run_id = run_id
        self.problem = problem


class RateLimitedError(ApiError):
    """429 after the retries ran out."""

    default_kind = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = 429,
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status, url=url)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx after the retries ran out."""

    default_kind = "server_error"


class UnreachableError(ApiError):
    """No answer: connection refused, DNS failure (`kind` "unreachable") or a timeout (`kind` "timeout")."""

    default_kind = "unreachable"


class InvalidResponseError(ApiError):
    """An answer that is not a usable one; `field` names what is wrong ("(body)" for the body as a whole)."""

    default_kind = "invalid_response"

    def __init__(
        self, message: str, *, endpoint: str = "", status: int | None = None, url: str = "", field: str = ""
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status, url=url)
        self.field = field
