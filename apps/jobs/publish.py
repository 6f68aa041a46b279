"""Publishing jobs to the broker. Enqueueing goes through `job_publish_on_commit`, which defers
to `transaction.on_commit`; anything that publishes outside a commit says so in its name
(as Zulip's `queue_json_publish_rollback_unsafe` does)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from config.celery import app as celery_app

logger = logging.getLogger(__name__)

DEAD_LETTER_QUEUE = "dead_letter"
DEAD_LETTER_TASK = "platform.dead_letter"

# Fail fast when Redis is away: the job is already committed, and the relay publishes it
# once Redis answers again. Blocking the request for Celery's default retries helps no one.
_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def _send(kind: str, job_id: str, queue: str, request_id: str = "") -> None:
    celery_app.send_task(
        kind,
        args=[job_id],
        queue=queue,
        headers={"request_id": request_id} if request_id else None,
        retry=True,
        retry_policy=_PUBLISH_RETRY_POLICY,
    )


def publish_jobs_rollback_unsafe(jobs: Iterable[tuple[str, str, str, str]]) -> list[str]:
    """Publish (id, kind, queue, request_id) now and mark them published; returns the ids
    that reached the broker. Unsafe inside a transaction that may still roll back: a worker
    could receive a job that never existed. Use `job_publish_on_commit` there."""
    from apps.jobs.models import Job

    sent: list[str] = []
    for job_id, kind, queue, request_id in jobs:
        try:
            _send(kind, str(job_id), queue, request_id)
        except Exception as exc:  # the broker is unreachable; the relay will retry
            logger.warning("could not publish job %s (%s): %s; the relay will publish it", job_id, kind, exc)
            break
        sent.append(str(job_id))
    if sent:
        Job.objects.filter(id__in=sent, published_at__isnull=True).update(published_at=timezone.now())
    return sent


def job_publish_on_commit(jobs: Iterable[tuple[str, str, str, str]]) -> None:
    """Publish after the surrounding transaction commits (immediately when there is none)."""
    batch = list(jobs)
    if batch:
        transaction.on_commit(lambda: publish_jobs_rollback_unsafe(batch))


def dead_letter_publish_rollback_unsafe(letters: Iterable[tuple[int, str, str]]) -> int:
    """Put (letter id, job id, kind) messages on the `dead_letter` queue now; returns how
    many were sent."""
    sent = 0
    for letter_id, job_id, kind in letters:
        try:
            celery_app.send_task(
                DEAD_LETTER_TASK,
                args=[letter_id, job_id, kind],
                queue=DEAD_LETTER_QUEUE,
                retry=True,
                retry_policy=_PUBLISH_RETRY_POLICY,
            )
        except Exception as exc:
            logger.warning("could not mirror dead letter %s to the %s queue: %s", letter_id, DEAD_LETTER_QUEUE, exc)
            break
        sent += 1
    return sent


def dead_letter_publish_on_commit(*, dead_letter_id: int, job_id: str, kind: str) -> None:
    """Mirror a new dead letter onto the `dead_letter` queue, for Flower and Redis-side tools.
    The database row is the record; this message is its visible shadow."""
    transaction.on_commit(lambda: dead_letter_publish_rollback_unsafe([(dead_letter_id, job_id, kind)]))
