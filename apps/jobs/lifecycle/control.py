"""What a client or an admin does to a job from outside its run: cancel it, queue it again."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict
from apps.jobs.lifecycle.events import announce_finished, announce_requeued
from apps.jobs.models import TERMINAL_STATUSES, Job, JobStatus
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
            announce_finished(job_id=str(job.id), kind=job.kind, status=job.status, callback_url=job.callback_url)
    return job


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
