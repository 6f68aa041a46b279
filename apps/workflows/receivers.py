"""Followers of the jobs app's signals (connected in WorkflowsConfig.ready). Both run inside
the transaction that writes the job's change, so what the workflow does about it commits or
rolls back with it. A job outside any workflow costs them nothing: the signal carries its
workflow_id (None) or the job itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from apps.jobs.models import Job
from apps.workflows import release


def job_finishing_follow(
    sender: Any, *, job_id: str, status: str, workflow_id: str | None = None, **kwargs: Any
) -> None:
    if workflow_id is None:
        return
    # Not caught: a release that cannot be written must roll back the finish with it, so the
    # job ends again later (lease recovery) rather than leave its dependents stuck.
    release.workflow_job_finished(workflow_id=workflow_id, job_id=str(job_id), status=status, now=timezone.now())


def job_requeued_reopen(sender: Any, *, job: Job, now: datetime, **kwargs: Any) -> None:
    if job.workflow_id is None:
        return
    release.workflow_job_requeued(job=job, now=now)
