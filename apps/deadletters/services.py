"""Acting on dead letters: redrive (the job runs again with fresh attempts) and discard.
Both are idempotent: acting twice on one letter changes nothing the second time."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict
from apps.deadletters.models import DeadLetter
from apps.jobs.models import Job, JobStatus
from apps.jobs.services import job_requeue_fresh

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolution:
    letter: DeadLetter
    changed: bool  # False when the letter was already resolved: nothing more was done


def dead_letter_redrive(*, letter_id: int, actor: str = "") -> Resolution:
    """Queue the parked job again with a fresh allowance of attempts. Its attempt history is
    kept: a job that had 3 of 3 attempts now has attempts 3 of 6."""
    now = timezone.now()
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().get(pk=letter_id)
        if letter.state != DeadLetter.State.OPEN:
            return Resolution(letter, changed=False)
        job = Job.objects.select_for_update().get(pk=letter.job_id)
        if job.status != JobStatus.FAILED:
            raise Conflict(f"The letter's job is {job.status}, not failed; nothing to redrive.", code="job_not_failed")
        job_requeue_fresh(job=job)
        letter.state = DeadLetter.State.REDRIVEN
        letter.resolved_at = now
        letter.resolved_by = actor[:150]
        letter.save(update_fields=["state", "resolved_at", "resolved_by"])
    logger.info("dead letter %s redriven by %s: job %s (%s) queued again", letter.pk, actor or "?", job.id, job.kind)
    return Resolution(letter, changed=True)


def dead_letter_discard(*, letter_id: int, actor: str = "") -> Resolution:
    """Close the letter without running the job again; the job stays failed."""
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().get(pk=letter_id)
        if letter.state != DeadLetter.State.OPEN:
            return Resolution(letter, changed=False)
        letter.state = DeadLetter.State.DISCARDED
        letter.resolved_at = timezone.now()
        letter.resolved_by = actor[:150]
        letter.save(update_fields=["state", "resolved_at", "resolved_by"])
    logger.info("dead letter %s discarded by %s (job %s, %s)", letter.pk, actor or "?", letter.job_id, letter.kind)
    return Resolution(letter, changed=True)


def dead_letters_redrive_many(*, letter_ids: list[int], actor: str = "") -> int:
    """Redrive each letter in its own transaction; returns how many were redriven now."""
    redriven = 0
    for letter_id in letter_ids:
        try:
            redriven += dead_letter_redrive(letter_id=letter_id, actor=actor).changed
        except Conflict as exc:
            logger.warning("dead letter %s not redriven: %s", letter_id, exc.message)
    return redriven


def dead_letters_discard_many(*, letter_ids: list[int], actor: str = "") -> int:
    return sum(dead_letter_discard(letter_id=i, actor=actor).changed for i in letter_ids)
