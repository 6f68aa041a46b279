"""What a client or an admin does to a job from outside its run: cancel it, queue it again."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict
from apps.core.text import clean_text
from apps.jobs.lifecycle.attempt import AttemptFailure, job_after_failed_attempt, record_lost_attempt
from apps.jobs.lifecycle.events import announce_finished, announce_requeued
from apps.jobs.lifecycle.store import lease_token_for
from apps.jobs.models import TERMINAL_STATUSES, Job, JobAttempt, JobStatus
from apps.jobs.publish import JobMessage, job_publish_on_commit

# Said in full per status: "The job is already succeeded." read wrong.
_ALREADY_FINISHED = {
    JobStatus.SUCCEEDED: "The job has already succeeded.",
    JobStatus.FAILED: "The job has already failed.",
    JobStatus.CANCELLED: "The job has already been cancelled.",
}


def job_cancel(*, job: Job) -> Job:
    """Cancel a job: a waiting one never starts; a running one is asked to stop, and its
    handler sees it at its next cancellation check."""
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status in TERMINAL_STATUSES:
            raise Conflict(_ALREADY_FINISHED[job.status], code="job_terminal")
        if job.status == JobStatus.RUNNING:
            if job.cancel_requested_at is None:
                job.cancel_requested_at = now
                job.save(update_fields=["cancel_requested_at", "updated_at"])
        else:
            job.status = JobStatus.CANCELLED
            job.cancel_requested_at = now
            job.finished_at = now
            job.save(update_fields=["status", "cancel_requested_at", "finished_at", "updated_at"])
            announce_finished(
                job_id=str(job.id),
                kind=job.kind,
                status=job.status,
                callback_url=job.callback_url,
                workflow_id=job.workflow_id,
            )
    return job


# The error a job revoked through Celery carries, in the job and in its attempt's history.
REVOKED_ERROR_TYPE = "Revoked"


def job_revoked(*, job_id: str, task_id: str, revoked_at: datetime | None = None) -> str:
    """A worker discarded a message of the job because an operator revoked its Celery task
    (Flower, `celery control revoke`) before it ran. A queued job is cancelled, as a client's
    cancel would (the same signals, so webhooks and workflows follow), with the revoke as its
    error. A job published again after the revoke (`revoked_at`; a retry or a redrive of the
    job that reuses its task id) is left queued: the revoke was for an earlier message, and the
    stranded-job sweep publishes the discarded one again. Any other job is left alone: a
    running attempt goes on (a revoke without terminate never stops a started task), a
    retrying or finished job has no message the revoke could mean. Returns the job's status
    afterwards ('missing' when there is no such job)."""
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(id=job_id).first()
        if job is None:
            return "missing"
        if job.status != JobStatus.QUEUED:
            return str(job.status)
        if revoked_at is not None and job.published_at is not None and job.published_at > revoked_at:
            return str(job.status)
        job.status = JobStatus.CANCELLED
        job.cancel_requested_at = job.finished_at = now
        job.error_type = REVOKED_ERROR_TYPE
        job.error_message = clean_text(f"revoked through Celery (task {task_id}) before it started")
        job.save(
            update_fields=["status", "cancel_requested_at", "finished_at", "error_type", "error_message", "updated_at"]
        )
        announce_finished(
            job_id=str(job.id),
            kind=job.kind,
            status=job.status,
            callback_url=job.callback_url,
            workflow_id=job.workflow_id,
        )
    return str(job.status)


def job_attempt_revoked(*, job_id: str, seed: str, task_id: str, signal: str = "") -> str:
    """An operator revoked the job's Celery task with terminate, and the worker killed the
    process that ran it: the attempt is recorded as revoked and the job is cancelled, with the
    same signals as any cancel. Fenced as job_attempt_timed_out is: only the attempt whose
    lease token `seed` rebuilds (lease_seed) is touched; 'stale' when the job's lease is
    another attempt's (or none)."""
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(id=job_id, status=JobStatus.RUNNING).first()
        if job is None or job.lease_token != lease_token_for(seed, job.attempts):
            return "stale"
        how = f" with {signal}" if signal else ""
        message = f"revoked through Celery (task {task_id}) with terminate: the worker killed the handler{how}"
        record_lost_attempt(
            job=job, now=now, outcome=JobAttempt.Outcome.REVOKED, error_type=REVOKED_ERROR_TYPE, error_message=message
        )
        if job.cancel_requested_at is None:
            job.cancel_requested_at = now
            job.save(update_fields=["cancel_requested_at"])
        return job_after_failed_attempt(
            job=job, now=now, failure=AttemptFailure(REVOKED_ERROR_TYPE, message, cancelled=True)
        )


def job_requeue_fresh(*, job: Job, actor: str = "") -> None:
    """Queue a failed or cancelled job again with a fresh allowance of attempts, keeping its
    history (3 of 3 attempts becomes 3 of 6). Caller holds the row lock; publishes on commit.
    job_requeued tells the layers above in the same transaction (an open dead letter is
    closed: retrying a failed job and redriving its letter are one path)."""
    job.status = JobStatus.QUEUED
    job.max_attempts = job.attempts + job.attempt_allowance
    job.error_type = job.error_message = job.error_traceback = ""
    job.result = None
    job.finished_at = job.run_at = job.published_at = job.cancel_requested_at = None
    job.progress_percent = None
    job.progress_message = ""
    job.save()
    announce_requeued(job=job, actor=actor, now=timezone.now())
    job_publish_on_commit([JobMessage.of(job)])
