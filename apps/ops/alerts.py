"""Queue alerts, run by beat with the dead-letter monitor: a queue whose oldest job has
waited past QUEUE_AGE_ALERT_SECONDS raises an ERROR log line and a notification, once per
ALERT_REPEAT_SECONDS while it stays backed up."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from apps.core.alerts import notify
from apps.core.redis import key, redis_client
from apps.ops.metrics import QUEUES
from apps.ops.selectors import oldest_waiting_seconds

logger = logging.getLogger("apps.ops.alerts")


def queues_monitor(*, now: datetime | None = None) -> dict[str, int]:
    threshold = settings.QUEUE_AGE_ALERT_SECONDS
    if threshold <= 0:
        return {"alerts": 0}
    now = now or timezone.now()
    alerts = 0
    for queue, age in oldest_waiting_seconds(QUEUES).items():
        if age <= threshold:
            continue
        if not redis_client().set(
            key(f"queue-age-alerted:{queue}"), now.isoformat(), nx=True, ex=settings.ALERT_REPEAT_SECONDS
        ):
            continue  # already alerted in this period
        alerts += 1
        depth = redis_client().llen(queue)
        logger.error(
            "ALERT queue %s is backed up: its oldest job has waited %.0f s (threshold %.0f s); %s messages waiting",
            queue,
            age,
            threshold,
            depth,
        )
        notify(
            f"[jobs] queue {queue} backed up",
            {"queue": queue, "oldest_age_seconds": round(age), "threshold_seconds": threshold, "depth": depth},
        )
    return {"alerts": alerts}
