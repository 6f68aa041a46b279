from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core.errors import error_body

# Room for a multipart body's boundaries and part headers around an upload's bytes; the view
# checks the file's own size against UPLOAD_MAX_BYTES exactly.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def body_limit(path: str) -> int:
    """The largest body an API path accepts: UPLOAD_MAX_BYTES for uploads, API_MAX_BODY_BYTES
    (JSON) for everything else."""
    if path.rstrip("/") == "/api/v1/uploads":
        return settings.UPLOAD_MAX_BYTES + MULTIPART_OVERHEAD_BYTES
    return settings.API_MAX_BODY_BYTES


class BodySizeLimitMiddleware:
    """Refuse an oversized API body with 413 before anything reads it.

    DRF's parsers read the request stream directly, bypassing Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE check (which guards only `request.body`), so the limit is
    enforced here from Content-Length, per path (`body_limit`).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            limit = body_limit(request.path)
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
