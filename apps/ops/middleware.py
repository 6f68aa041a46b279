from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.core import redis as platform_redis
from apps.ops.metrics import count_request

# The route label of an /api/ request that matched no URL pattern (a 404 before any view).
UNMATCHED_ROUTE = "unmatched"


class RequestMetricsMiddleware:
    """Count API requests and their latency by method, route pattern and status (a route
    like `api/v1/jobs/<uuid:job_id>`, never the raw path, so series stay few). Every label
    is from a fixed set: a known method or OTHER (apps.ops.metrics.count_request), a URL
    pattern of ours or "unmatched", a status code; a client cannot add a series."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        # The request's fire-and-forget Redis writes (its metrics, the submitted count) leave
        # in one round trip at its end.
        with platform_redis.batched_writes():
            response = self.get_response(request)
            if request.path.startswith("/api/"):
                match = getattr(request, "resolver_match", None)
                route = match.route if match is not None and match.route else UNMATCHED_ROUTE
                count_request(request.method or "", route, response.status_code, time.perf_counter() - started)
        return response
