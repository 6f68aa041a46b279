"""How webhooks are signed, and how a receiver checks them.

Every webhook is a POST with a JSON body and these headers:

    Content-Type: application/json
    User-Agent: jobplatform-webhooks/1
    Webhook-Id: <the delivery job's id; the same on every retry, so a receiver can dedupe>
    Webhook-Timestamp: <unix seconds when this attempt was signed>
    Webhook-Signature: v1=<hex HMAC-SHA256>

The signature is HMAC-SHA256, keyed with the client's webhook secret (UTF-8; GET
/api/v1/webhook-secret), over the timestamp, a full stop, and the raw body bytes exactly as
received (before any JSON parsing):

    signed  = f"{timestamp}.".encode() + raw_body
    v1      = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()

A receiver recomputes v1, compares it in constant time with the header's, and refuses a
timestamp more than five minutes from its own clock (a replayed request). The header may
carry several space- or comma-separated `v1=` values (reserved for secret rotation); any one
matching is enough. `verify_signature` below does all of this and depends on nothing but
the standard library, so a receiver can copy it as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `{timestamp}.{body}` under `secret`."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The value of the Webhook-Signature header."""
    return f"{SCHEME}={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes | str,
    header: str,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether `header` (Webhook-Signature) signs `body` at `timestamp` (Webhook-Timestamp)
    with `secret`, and the timestamp is within `tolerance` seconds of `now`."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    raw = body.encode("utf-8") if isinstance(body, str) else body
    expected = sign(secret, ts, raw)
    for item in header.replace(",", " ").split():
        scheme, _, value = item.partition("=")
        if scheme == SCHEME and hmac.compare_digest(value.strip(), expected):
            return True
    return False
