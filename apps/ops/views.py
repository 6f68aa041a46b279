from __future__ import annotations

from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process is up and serving. Touches no dependency on purpose."""
    return JsonResponse({"status": "ok"})
