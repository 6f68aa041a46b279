from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from apps.core.errors import error_body
from apps.jobs.broker import redis_client
from apps.ops.metrics import PlatformCollector
from apps.ops.selectors import live_workers

logger = logging.getLogger(__name__)

_registry = CollectorRegistry(auto_describe=False)
_registry.register(PlatformCollector())


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process is up and serving. Touches no dependency on purpose."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database, Redis and at least one live worker answer. 503 names the
    part that failed."""
    checks: dict[str, dict[str, object]] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    try:
        redis_client().ping()
        checks["redis"] = {"ok": True}
        workers = live_workers()
        checks["workers"] = {"ok": bool(workers), "alive": workers}
        if not workers:
            checks["workers"]["error"] = "no worker has sent a heartbeat lately"
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        checks["workers"] = {"ok": False, "error": "unknown: Redis is unreachable"}
    failing = [name for name, check in checks.items() if not check["ok"]]
    body = {"status": "ok" if not failing else "unavailable", "failing": failing, "checks": checks}
    return JsonResponse(body, status=200 if not failing else 503)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. With METRICS_TOKEN set, scrapers send it as a bearer token."""
    if settings.METRICS_TOKEN:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent, settings.METRICS_TOKEN):
            return JsonResponse(
                error_body("not_authenticated", "Send the metrics token as a bearer token."), status=401
            )
    try:
        output = generate_latest(_registry)
    except Exception as exc:
        logger.exception("metrics could not be collected")
        return JsonResponse(
            error_body("unavailable", f"metrics unavailable: {type(exc).__name__}"),
            status=503,
            headers={"Retry-After": "5"},
        )
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)
