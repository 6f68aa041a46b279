"""Checking a webhook's signature, exactly as the platform signs it (apps/webhooks/signing.py).

    signed = f"{Webhook-Timestamp}.".encode() + raw_body
    v1     = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()

The Webhook-Signature header is `v1=<hex>`, possibly several space- or comma-separated values
(secret rotation): any one matching is enough. A timestamp more than `tolerance` seconds from
this machine's clock is refused, so a captured request cannot be replayed later."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from .errors import JobPlatformError

SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSignature(JobPlatformError):
    """The webhook is not signed with this secret, its headers are missing, or it is stale."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    # Frameworks hand headers over in any case (Django's request.headers, a plain dict, ...).
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, Any],
    secret: str,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict:
    """The webhook's JSON body once its signature checks out; raises InvalidSignature otherwise.
    Pass the raw body exactly as received, before any JSON parsing."""
    timestamp, signature = _header(headers, "Webhook-Timestamp"), _header(headers, "Webhook-Signature")
    if not timestamp or not signature:
        raise InvalidSignature("missing Webhook-Timestamp or Webhook-Signature header")
    try:
        ts = int(timestamp)
    except ValueError:
        raise InvalidSignature(f"bad Webhook-Timestamp {timestamp!r}") from None
    if abs((time.time() if now is None else now) - ts) > tolerance:
        raise InvalidSignature("Webhook-Timestamp is outside the tolerance (a stale or replayed request)")
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    expected = sign(secret, ts, raw)
    for item in signature.replace(",", " ").split():
        scheme, _, value = item.partition("=")
        if scheme == SCHEME and hmac.compare_digest(value.strip(), expected):
            return json.loads(raw)
    raise InvalidSignature("no v1 signature matches")
