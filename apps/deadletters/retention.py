"""The dead letters' part of pruning (registered with apps.jobs.retention in
DeadLettersConfig.ready): resolved letters go after their retention, and a job whose letter
is still open is never pruned (it waits for staff)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet

from apps.deadletters.models import DeadLetter
from apps.jobs.retention import delete_where


def job_has_open_letter() -> Exists:
    """On a Job row: it has an open dead letter."""
    return Exists(DeadLetter.objects.filter(job_id=OuterRef("pk"), state=DeadLetter.State.OPEN))


def _prunable_letters(cutoff: datetime) -> QuerySet[DeadLetter]:
    """Redriven or discarded before `cutoff`."""
    return DeadLetter.objects.exclude(state=DeadLetter.State.OPEN).filter(resolved_at__lt=cutoff)


def _letter_ids_to_prune(cutoff: datetime, batch: int) -> list[Any]:
    return list(_prunable_letters(cutoff).values_list("pk", flat=True)[:batch])


def dead_letters_prune_resolved(*, now: datetime, batch: int) -> int:
    """Redriven or discarded letters older than DEAD_LETTER_RETENTION_DAYS."""
    cutoff = now - timedelta(days=settings.DEAD_LETTER_RETENTION_DAYS)
    ids = _letter_ids_to_prune(cutoff, batch)
    return delete_where(_prunable_letters(cutoff).filter(pk__in=ids)) if ids else 0
