"""Error classes the API client raises: one per failure a caller must tell apart.

Messages never carry the API key or a request's Authorization header.
"""

from __future__ import annotations


class ApiError(Exception):
    """Base of every failure talking to the Prime API."""

    endpoint: str

    def __init__(self, message: str, *, endpoint: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


class ClientError(ApiError):
    """A 4xx the caller caused; retrying the same request cannot help."""


class UnauthorizedError(ClientError):
    """401/403: the key is missing, wrong, revoked or lacks access."""


class NotFoundError(ClientError):
    """404: the run (or path) does not exist; for DELETE, the run is already gone."""


class ValidationFailedError(ClientError):
    """422: the API rejected the request's parameters."""

    def __init__(
        self, message: str, *, endpoint: str = "", status: int | None = 422, params: list[str] | None = None
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status)
        self.params = params or []


class RateLimitedError(ApiError):
    """429 after the retries ran out."""

    def __init__(
        self, message: str, *, endpoint: str = "", status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx after the retries ran out."""


class UnreachableError(ApiError):
    """Connection refused, DNS failure or timeout after the retries ran out."""


class InvalidResponseError(ApiError):
    """A 2xx whose body is not JSON or does not match the spec; `field` names what is wrong."""

    def __init__(self, message: str, *, endpoint: str = "", status: int | None = None, field: str = "") -> None:
        super().__init__(message, endpoint=endpoint, status=status)
        self.field = field
