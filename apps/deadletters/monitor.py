"""The dead-letter monitor, run by beat. New letters and a depth over the threshold raise an
alert: an ERROR log line, plus email to ALERT_EMAILS and/or a JSON POST to
ALERT_WEBHOOK_URL, sent off the loop's thread (apps.core.alerts). It also keeps the
`dead_letter` Redis queue mirroring the open letters."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.core.alerts import notify
from apps.core.redis import key, redis_client
from apps.deadletters.models import DeadLetter
from apps.deadletters.selectors import dead_letter_stats
from apps.jobs.publish import DEAD_LETTER_QUEUE, dead_letter_publish_rollback_unsafe
from apps.jobs.registry import CLIENT_ERROR_TYPE

logger = logging.getLogger("apps.deadletters.monitor")

DEPTH_ALERT_KEY = key("dead-letter-depth-alerted")
MIRROR_LIMIT = 10_000


def dead_letters_monitor(*, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    # Letters already redriven or discarded before this sweep are marked without an alert, and
    # so are client-input failures (ClientError): they count in the depth, and its alert, but
    # one client's bad files page nobody one letter at a time.
    DeadLetter.objects.filter(
        Q(alerted_at__isnull=True), ~Q(state=DeadLetter.State.OPEN) | Q(error_type=CLIENT_ERROR_TYPE)
    ).update(alerted_at=now)
    fresh = list(
        DeadLetter.objects.filter(alerted_at__isnull=True, state=DeadLetter.State.OPEN).order_by("created_at")[:1000]
    )
    stats = dead_letter_stats()
    if fresh:
        kinds = Counter(letter.kind for letter in fresh)
        summary = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
        logger.error("ALERT %s new dead letter(s): %s; %s open in all", len(fresh), summary, stats.depth)
        notify(
            f"[jobs] {len(fresh)} new dead letter(s)",
            {
                "new": [
                    {
                        "id": x.pk,
                        "job_id": str(x.job_id),
                        "kind": x.kind,
                        "error_type": x.error_type,
                        "error_message": x.error_message[:500],
                    }
                    for x in fresh[:50]
                ],
                "depth": stats.depth,
                "oldest_age_seconds": round(stats.oldest_age_seconds),
            },
        )
        DeadLetter.objects.filter(pk__in=[x.pk for x in fresh]).update(alerted_at=now)

    depth_alert = 0
    # Once per repeat period while the depth stays high, not on every sweep.
    if stats.depth > settings.DEAD_LETTER_ALERT_DEPTH and redis_client().set(
        DEPTH_ALERT_KEY, now.isoformat(), nx=True, ex=settings.ALERT_REPEAT_SECONDS
    ):
        depth_alert = 1
        logger.error(
            "ALERT dead-letter depth %s is over the threshold of %s (oldest %.0f s old)",
            stats.depth,
            settings.DEAD_LETTER_ALERT_DEPTH,
            stats.oldest_age_seconds,
        )
        notify(
            "[jobs] dead-letter depth over threshold",
            {
                "depth": stats.depth,
                "threshold": settings.DEAD_LETTER_ALERT_DEPTH,
                "oldest_age_seconds": round(stats.oldest_age_seconds),
            },
        )
    mirrored = dead_letters_sync_mirror(depth=stats.depth)
    return {"new": len(fresh), "depth": stats.depth, "depth_alert": depth_alert, "mirrored": mirrored}


def dead_letters_sync_mirror(*, depth: int) -> int:
    """Keep the `dead_letter` queue holding one message per open letter, so Flower and Redis
    tools show the same depth as the database. Rebuilt only when the two disagree (a redrive
    or discard closed letters, or Redis lost its data)."""
    r = redis_client()
    want = min(depth, MIRROR_LIMIT)
    if r.llen(DEAD_LETTER_QUEUE) == want:
        return 0
    r.delete(DEAD_LETTER_QUEUE)
    letters = (
        DeadLetter.objects.filter(state=DeadLetter.State.OPEN)
        .order_by("created_at")
        .values_list("pk", "job_id", "kind")[:MIRROR_LIMIT]
    )
    return dead_letter_publish_rollback_unsafe([(pk, str(job_id), kind) for pk, job_id, kind in letters])
