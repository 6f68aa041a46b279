"""One outbound POST to an address that was already checked (apps.core.urlsafety).

The standard library's http.client is used on purpose: it never follows redirects, never
reads proxy settings from the environment, and lets the connection go to the checked IP
address while the Host header, TLS SNI and certificate check still use the URL's host name.
Connecting to the checked address (instead of resolving the name again) closes the DNS
rebinding gap between the check and the request.

What this does not cover: a receiver on an allowed (public) address that itself forwards
requests inward is beyond what a client of it can see; and with WEBHOOK_ALLOW_PRIVATE=1
(local use only) every address but the cloud metadata ones is allowed.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from apps.core.telemetry import outgoing_headers
from apps.core.text import clean_text

EXCERPT_BYTES = 512  # of the receiver's answer, kept for the attempt's record


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    excerpt: str


def _pin(conn: http.client.HTTPConnection, address: str) -> http.client.HTTPConnection:
    """Make `conn` open its socket to `address` whatever its host name resolves to now.
    http.client opens sockets through this per-instance hook (HTTPSConnection wraps the
    socket afterwards with server_hostname=conn.host, so TLS still checks the name)."""

    def connect(host_port: tuple[str, int], timeout: float, source_address: object = None) -> socket.socket:
        return socket.create_connection((address, host_port[1]), timeout, source_address)  # type: ignore[arg-type]

    conn._create_connection = connect  # type: ignore[attr-defined]
    return conn


def safe_url(url: str) -> str:
    """The URL without its query and fragment (which may carry a receiver's token), for
    messages and log lines."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"


def post_pinned(url: str, *, addresses: list[str], body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """POST `body` to `url`, connecting only to one of `addresses` (tried in order, as
    socket.create_connection would). Raises OSError (timeouts included) or
    http.client.HTTPException when no answer comes back."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {safe_url(url)}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    last_error: OSError | None = None
    for address in addresses:
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
        _pin(conn, address)
        try:
            try:
                conn.connect()
            except OSError as exc:
                last_error = exc  # the next address may answer
                continue
            # Connected: send once. A failure from here on is this attempt's failure, not a
            # reason to send the same webhook to a second address.
            # The delivery's trace context (apps.core.telemetry; none unless tracing is on), so the
            # receiver's own trace continues the job's.
            conn.request("POST", target, body=body, headers={**headers, **outgoing_headers()})
            response = conn.getresponse()
            excerpt = response.read(EXCERPT_BYTES).decode("utf-8", errors="replace")
            # The receiver's words end up in the attempt's error, which PostgreSQL stores: a
            # NUL in them ("400 refused\0") made the failure itself impossible to record.
            return Answer(status=response.status, reason=clean_text(response.reason), excerpt=clean_text(excerpt))
        finally:
            conn.close()
    raise last_error or OSError(f"no address to connect to for {safe_url(url)}")
