"""A Python client for the job platform's HTTP API (sync and async), its CLI, and a helper
that verifies webhook signatures."""

from ._core import TERMINAL_STATUSES
from .aio import AsyncClient, AsyncJob
from .client import Client, Job
from .errors import (
    ApiError,
    AuthenticationFailed,
    Conflict,
    ConnectionFailed,
    IdempotencyKeyReused,
    InvalidInput,
    JobPlatformError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    Unavailable,
    WaitTimeout,
)
from .webhooks import InvalidSignature, verify_webhook

__version__ = "0.1.0"

__all__ = [
    "TERMINAL_STATUSES",
    "ApiError",
    "AsyncClient",
    "AsyncJob",
    "AuthenticationFailed",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "IdempotencyKeyReused",
    "InvalidInput",
    "InvalidSignature",
    "Job",
    "JobPlatformError",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "Unavailable",
    "WaitTimeout",
    "verify_webhook",
]
