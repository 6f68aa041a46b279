"""Pruning, run by beat every PRUNE_INTERVAL_SECONDS: expired idempotency keys, finished
jobs (with their attempts and steps) and resolved dead letters past their retention. Each
step deletes in small batches by primary key, so no statement locks a table for long."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from apps.deadletters.models import DeadLetter
from apps.jobs.models import TERMINAL_STATUSES, Job
from apps.jobs.services import idempotency_keys_prune

logger = logging.getLogger(__name__)


def jobs_prune_finished(*, now: datetime, batch: int, max_batches: int = 20) -> int:
    """Finished jobs older than JOB_RETENTION_DAYS; never one with an open dead letter."""
    cutoff = now - timedelta(days=settings.JOB_RETENTION_DAYS)
    open_letter = DeadLetter.objects.filter(job_id=OuterRef("pk"), state=DeadLetter.State.OPEN)
    deleted = 0
    for _ in range(max_batches):
        ids = list(
            Job.objects.filter(status__in=TERMINAL_STATUSES, finished_at__lt=cutoff)
            .exclude(Exists(open_letter))
            .values_list("pk", flat=True)[:batch]
        )
        if not ids:
            break
        deleted += Job.objects.filter(pk__in=ids).delete()[1].get("jobs.Job", 0)
    return deleted


def dead_letters_prune_resolved(*, now: datetime, batch: int) -> int:
    """Redriven or discarded letters older than DEAD_LETTER_RETENTION_DAYS."""
    cutoff = now - timedelta(days=settings.DEAD_LETTER_RETENTION_DAYS)
    ids = list(
        DeadLetter.objects.exclude(state=DeadLetter.State.OPEN)
        .filter(resolved_at__lt=cutoff)
        .values_list("pk", flat=True)[:batch]
    )
    return DeadLetter.objects.filter(pk__in=ids).delete()[0] if ids else 0


def prune(*, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    batch = settings.PRUNE_BATCH_SIZE
    figures = {
        "idempotency_keys": idempotency_keys_prune(now=now, batch=batch),
        "jobs": jobs_prune_finished(now=now, batch=batch),
        "dead_letters": dead_letters_prune_resolved(now=now, batch=batch),
    }
    if any(figures.values()):
        logger.info("pruned %s", figures)
    return figures
