from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from apps.core.errors import error_body
from apps.core.redis import redis_client
from apps.ops.control import control_loop_stall_alert, control_loop_stall_claim, control_loop_status
from apps.ops.metrics import PlatformCollector
from apps.ops.selectors import live_workers

logger = logging.getLogger(__name__)

_registry = CollectorRegistry(auto_describe=False)
_registry.register(PlatformCollector())


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process is up and serving. Touches no dependency on purpose."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database, Redis and at least one live worker answer, and the control
    loop has swept lately. 503 names the part that failed."""
    checks: dict[str, dict[str, object]] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"ok": True}
        checks["control_loop"] = _control_loop_check()
    except Exception as exc:
        checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        checks["control_loop"] = {"ok": False, "error": "unknown: the database is unreachable"}
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


def _control_loop_check() -> dict[str, object]:
    threshold = settings.CONTROL_LOOP_STALE_SECONDS
    status = control_loop_status()
    check: dict[str, object] = {
        "ok": not status.stale(threshold),
        "leader": status.leader or None,
        "last_sweep_at": status.last_sweep_at.isoformat() if status.last_sweep_at else None,
    }
    if status.stalled_for is None:
        check["error"] = "no beat has ever led the control loop (is a beat process running?)"
    elif status.stale(threshold):
        check["error"] = (
            f"no control-loop sweep has succeeded for {status.stalled_for:.0f} s (threshold {threshold:.0f} s); "
            + ("its leader's sweeps are failing" if status.leader else "no beat leads it (is a beat process running?)")
        )
        # When every beat is down, nothing but this probe sees the stall: alert it here too,
        # once per stall, whichever process notices first.
        stalled = control_loop_stall_claim(stale_seconds=threshold)
        if stalled is not None:
            control_loop_stall_alert(stalled, noticed_by="web /readyz")
    return check


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. With METRICS_TOKEN set, scrapers send it as a bearer token."""
    if settings.METRICS_TOKEN:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        # Bytes: compare_digest refuses str holding non-ASCII characters (a TypeError, a 500)
        # and a header may hold any; UTF-8 with surrogateescape encodes whatever arrived.
        if not hmac.compare_digest(
            sent.encode("utf-8", "surrogateescape"), settings.METRICS_TOKEN.encode("utf-8", "surrogateescape")
        ):
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
