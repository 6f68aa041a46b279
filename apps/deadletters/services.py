"""Dead letters: parking a failed job (on the jobs app's job_failing, inside the failing
transaction), redrive (the job runs again with fresh attempts) and discard. Redrive and
discard are idempotent: acting twice on one letter changes nothing the second time. A retry
of a failed job and a redrive of its letter are one path: the job is queued again with
lifecycle.job_requeue_fresh, whose job_requeued closes the open letter (dead_letter_close)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict
from apps.deadletters.models import DeadLetter
from apps.jobs import lifecycle, signals
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.jobs.publish import dead_letter_publish_on_commit
from apps.jobs.registry import CLIENT_ERROR_TYPE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolution:
    letter: DeadLetter
    changed: bool  # False when the letter was already resolved: nothing more was done


def dead_letter_park(*, job: Job, now: datetime) -> DeadLetter:
    """Give a failed job its dead letter: a row, and a message on the dead_letter queue.
    Runs inside the transaction that writes the failure (job_failing), so a failed job
    always has its letter."""
    history = [
        {
            "attempt": a.number,
            "worker": a.worker,
            "outcome": a.outcome,
            "error_type": a.error_type,
            "error_message": a.error_message,
            "at": (a.finished_at or a.started_at).isoformat(),
        }
        for a in JobAttempt.objects.filter(job_id=job.id).order_by("number")
    ]
    letter = DeadLetter.objects.create(
        job=job,
        kind=job.kind,
        payload=job.payload,
        error_type=job.error_type,
        error_message=job.error_message,
        traceback=job.error_traceback,
        errors=history,
        attempts=job.attempts,
        created_at=now,
    )
    # A client's bad input is the client's to fix, not an operator's: parked, never paged.
    logger.log(
        logging.WARNING if job.error_type == CLIENT_ERROR_TYPE else logging.ERROR,
        "job %s (%s) failed after %s attempt(s) and was parked as dead letter %s: %s: %s",
        job.id,
        job.kind,
        job.attempts,
        letter.pk,
        job.error_type,
        job.error_message[:200],
    )
    dead_letter_publish_on_commit(dead_letter_id=letter.pk, job_id=str(job.id), kind=job.kind)
    transaction.on_commit(lambda: signals.job_dead_lettered.send(sender=Job, job_id=str(job.id), kind=job.kind))
    return letter


def dead_letter_close(*, job: Job, actor: str, now: datetime) -> int:
    """The job was queued again (job_requeued): its open letter, if any, is redriven."""
    return DeadLetter.objects.filter(job_id=job.pk, state=DeadLetter.State.OPEN).update(
        state=DeadLetter.State.REDRIVEN, resolved_at=now, resolved_by=actor[:150]
    )


def dead_letter_redrive(*, letter_id: int, actor: str = "") -> Resolution:
    """Queue the parked job again with a fresh allowance of attempts. Its attempt history is
    kept: a job that had 3 of 3 attempts now has attempts 3 of 6."""
    job_id = DeadLetter.objects.values_list("job_id", flat=True).get(pk=letter_id)
    with transaction.atomic():
        # The job's row first, then the letter's, in the order a retry of the job takes them.
        job = Job.objects.select_for_update().get(pk=job_id)
        letter = DeadLetter.objects.select_for_update().get(pk=letter_id)
        if letter.state != DeadLetter.State.OPEN:
            return Resolution(letter, changed=False)
        if job.status != JobStatus.FAILED:
            raise Conflict(f"The letter's job is {job.status}, not failed; nothing to redrive.", code="job_not_failed")
        lifecycle.job_requeue_fresh(job=job, actor=actor)  # closes the letter (job_requeued)
        letter.refresh_from_db(fields=["state", "resolved_at", "resolved_by"])
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


def job_retry(*, job: Job, actor: str) -> Job:
    """The owner's retry of a failed job: the redrive of its open dead letter, so it runs again
    with a fresh allowance of attempts as a staff redrive would. Raises Conflict
    job_not_failed for a job that is not failed, dead_letter_closed when staff discarded its
    letter (the job stays failed on purpose). Returns the job as it is now."""
    _ensure_failed(job.status)
    letter_id = (
        DeadLetter.objects.filter(job_id=job.pk, state=DeadLetter.State.OPEN)
        .order_by("-created_at")
        .values_list("pk", flat=True)
        .first()
    )
    if letter_id is None:
        # Every failed job is parked; a letter no longer open was discarded by staff or
        # redriven by a request that got here first.
        job.refresh_from_db(fields=["status"])
        _ensure_failed(job.status)
        raise Conflict(
            "An operator closed this job's dead letter without running it again; it cannot be retried.",
            code="dead_letter_closed",
        )
    # Re-checks the job under its row lock: job_not_failed if it changed meanwhile.
    resolution = dead_letter_redrive(letter_id=letter_id, actor=actor)
    job.refresh_from_db()
    if not resolution.changed:
        _ensure_failed(job.status)  # a concurrent retry queued it first
    return job


def _ensure_failed(job_status: str) -> None:
    if job_status != JobStatus.FAILED:
        raise Conflict(
            f"The job is {job_status}; only a failed job can be retried.",
            code="job_not_failed",
            details={"status": job_status},
        )
