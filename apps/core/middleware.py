from __future__ import annotations

import tempfile
from collections.abc import Callable

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core.errors import error_body

# Room for a multipart body's boundaries and part headers around an upload's bytes; the view
# checks the file's own size against UPLOAD_MAX_BYTES exactly.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# How much of a chunked body is read per call, and how much of it is held in memory before
# the rest spools to a temporary file (an upload's body may be tens of megabytes).
_CHUNK_BYTES = 64 * 1024
_SPOOL_IN_MEMORY_BYTES = 1024 * 1024


def body_limit(path: str) -> int:
    """The largest body an API path accepts: UPLOAD_MAX_BYTES for uploads, API_MAX_BODY_BYTES
    (JSON) for everything else."""
    if path.rstrip("/") == "/api/v1/uploads":
        return settings.UPLOAD_MAX_BYTES + MULTIPART_OVERHEAD_BYTES
    return settings.API_MAX_BODY_BYTES


def _is_chunked(request: HttpRequest) -> bool:
    return "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()


def _read_chunked_body(request: HttpRequest, limit: int) -> HttpResponse | None:
    """Read a chunked body (no Content-Length) up to `limit` bytes and give it to Django as
    if it had come with one; a 413 when it is longer.

    Under WSGI a chunked request has no CONTENT_LENGTH (gunicorn de-chunks wsgi.input), and
    Django reads a body without one as empty: a chunked submit answered "kind: This field is
    required", and a 2 MB one that same 400 instead of 413. The body is read at most one
    chunk past the limit, so an endless one costs no more than an allowed one."""
    stream = request.META["wsgi.input"]
    # Held by the request's stream, and closed (a spilled file deleted) when the request is
    # dropped: nothing outlives the request.
    body = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    length = 0
    while length <= limit:
        chunk = stream.read(min(_CHUNK_BYTES, limit + 1 - length))
        if not chunk:
            break
        body.write(chunk)
        length += len(chunk)
    if length > limit:
        body.close()
        return JsonResponse(
            error_body("body_too_large", f"The request body is over {limit} bytes, the limit."),
            status=413,
        )
    body.seek(0)
    request._stream = LimitedStream(body, length)  # type: ignore[attr-defined]  # what WSGIRequest reads
    request.META["CONTENT_LENGTH"] = str(length)
    return None


class BodySizeLimitMiddleware:
    """Refuse an oversized API body with 413 before anything reads it.

    DRF's parsers read the request stream directly, bypassing Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE check (which guards only `request.body`), so the limit is
    enforced here from Content-Length, per path (`body_limit`). A chunked body, which has
    no Content-Length, is read here under the same limit (`_read_chunked_body`).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            limit = body_limit(request.path)
            if not request.META.get("CONTENT_LENGTH") and _is_chunked(request):
                refused = _read_chunked_body(request, limit)
                if refused is not None:
                    return refused
            raw = request.META.get("CONTENT_LENGTH") or "0"
            try:
                length = int(raw)
            except ValueError:
                return JsonResponse(error_body("invalid_content_length", "Content-Length is not a number."), status=400)
            if length > limit:
                return JsonResponse(
                    error_body("body_too_large", f"The request body is {length} bytes; the limit is {limit} bytes."),
                    status=413,
                )
        return self.get_response(request)
