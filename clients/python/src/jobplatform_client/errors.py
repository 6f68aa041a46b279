"""Typed exceptions for the API's errors.

Every error the API answers is `{"error": {"code", "message", "details"}}`; the HTTP status
picks the class (match on the class for the family, on `.code` for the exact reason)."""

from __future__ import annotations

from typing import Any


class JobPlatformError(Exception):
    """Anything this client raises on purpose."""


class ApiError(JobPlatformError):
    """An error answer from the API."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        details: Any = None,
        status: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if code else f"{status}: {message}")
        self.message = message
        self.code = code
        self.details = details
        self.status = status
        self.retry_after = retry_after


class InvalidInput(ApiError):
    """400: the request was refused as it is (invalid_input, invalid_payload, unknown_kind, ...)."""


class AuthenticationFailed(ApiError):
    """401: no token, or one the API does not know."""


class PermissionDenied(ApiError):
    """403: not allowed (a staff-only endpoint, a priority this client may not use)."""


class NotFound(ApiError):
    """404: no such job (or another client's), workflow, schedule, file or path."""


class Conflict(ApiError):
    """409: e.g. cancelling a job that has already finished (job_terminal)."""


class PayloadTooLarge(ApiError):
    """413: the body is over the API's limit."""


class IdempotencyKeyReused(ApiError):
    """422: the Idempotency-Key was used for a different request; details.job_id is the original."""


class RateLimited(ApiError):
    """429: throttled, too many jobs in flight, or the queue is full; `retry_after` says when to retry."""


# Another name for the same thing: a 429 is the platform shedding load as much as a quota.
Overloaded = RateLimited


class Unavailable(ApiError):
    """503: the broker is unreachable and the backlog is at its limit."""


class ServerError(ApiError):
    """5xx other than 503: a bug on the server."""


class ConnectionFailed(JobPlatformError):
    """The request never got an answer (refused connection, timeout, ...)."""


class WaitTimeout(JobPlatformError, TimeoutError):
    """`Job.wait` ran out of time before the job finished; `.job` is the last state seen."""

    def __init__(self, message: str, job: Any = None) -> None:
        super().__init__(message)
        self.job = job


_BY_STATUS = {
    400: InvalidInput,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: IdempotencyKeyReused,
    429: RateLimited,
    503: Unavailable,
}


def error_for(status: int, body: Any, retry_after: float | None = None) -> ApiError:
    """The exception for an error answer: `body` is its parsed JSON (or text when it was not JSON)."""
    code, message, details = "", "", None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code", ""))
        message = str(err.get("message", ""))
        details = err.get("details")
    elif isinstance(body, str):
        message = body[:500]
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(message or f"HTTP {status}", code=code, details=details, status=status, retry_after=retry_after)
