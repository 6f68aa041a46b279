from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Min
from django.utils import timezone

from apps.core.redis import key, redis_client
from apps.jobs.models import Job, JobStatus

WORKER_KEY_PREFIX = key("worker:")


def oldest_waiting_seconds(queues: Iterable[str]) -> dict[str, float]:
    """Per queue, how long its oldest queued job (due now) has waited; 0 when none waits.
    One indexed look-up per queue (job_queued_by_queue)."""
    now = timezone.now()
    figures = {}
    for queue in queues:
        oldest = Job.objects.filter(status=JobStatus.QUEUED, queue=queue, run_at__isnull=True).aggregate(
            oldest=Min("created_at")
        )["oldest"]
        figures[queue] = (now - oldest).total_seconds() if oldest else 0.0
    return figures


def live_workers() -> list[str]:
    """Worker host names whose heartbeat key has not expired (workers.heartbeat)."""
    r = redis_client()
    return sorted(k.decode().removeprefix(WORKER_KEY_PREFIX) for k in r.scan_iter(f"{WORKER_KEY_PREFIX}*", count=100))
