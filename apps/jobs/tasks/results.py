"""A job read back as a django.tasks TaskResult (selectors: reads only)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.jobs.tasks.compat import TASK_RESULT_EXTRA, Task, TaskError, TaskResult, TaskResultDoesNotExist
from apps.jobs.tasks.kinds import task_for_kind
from apps.jobs.tasks.mapping import STATUS_OF, exception_class_path, task_priority

# The attempts that ended in an error, each one of TaskResult.errors.
FAILED_OUTCOMES = frozenset(
    {
        JobAttempt.Outcome.FAILED,
        JobAttempt.Outcome.PERMANENT,
        JobAttempt.Outcome.LOST,
        JobAttempt.Outcome.CANCELLED,
        JobAttempt.Outcome.REVOKED,
    }
)
_JOB_FIELDS = (
    "id",
    "kind",
    "status",
    "priority",
    "payload",
    "result",
    "attempts",
    "worker",
    "error_type",
    "error_message",
    "error_traceback",
    "created_at",
    "run_at",
    "started_at",
    "finished_at",
)
_ATTEMPT_FIELDS = ("number", "worker", "started_at", "outcome", "error_type", "error_message", "traceback")


def task_result_get(*, result_id: str, backend: str) -> TaskResult:
    """The TaskResult of the job `result_id` (a job id): two reads, the job and its attempts.
    TaskResultDoesNotExist when there is no such job, or it is not a task's."""
    try:
        job_id = uuid.UUID(str(result_id))
    except ValueError:
        raise TaskResultDoesNotExist(result_id) from None
    job = Job.objects.only(*_JOB_FIELDS).filter(id=job_id).first()
    task = task_for_kind(job.kind) if job is not None else None
    if job is None or task is None:
        raise TaskResultDoesNotExist(result_id)
    attempts = list(JobAttempt.objects.filter(job_id=job_id).only(*_ATTEMPT_FIELDS).order_by("number"))
    return task_result_of(task=task, job=job, attempts=attempts, backend=backend)


def task_result_of(*, task: Task, job: Job, attempts: Sequence[JobAttempt], backend: str) -> TaskResult:
    """The TaskResult a job and its attempts (in order) stand for."""
    priority = task_priority(job.priority, task.priority)
    changes: dict[str, Any] = {}
    if priority != task.priority:
        changes["priority"] = priority
    if job.run_at is not None and job.run_at != task.run_after:
        changes["run_after"] = job.run_at
    workers = [attempt.worker for attempt in attempts]
    if job.status == JobStatus.RUNNING and job.attempts > len(workers):
        workers.append(job.worker)  # the attempt under way: its row is written when it ends
    # TaskResult.attempts counts worker_ids; an attempt with no row yet still counts.
    workers += [""] * (job.attempts - len(workers))
    result = TaskResult(
        task=task.using(**changes) if changes else task,
        id=str(job.id),
        status=STATUS_OF[job.status],
        enqueued_at=job.created_at,
        started_at=attempts[0].started_at if attempts else job.started_at,
        finished_at=job.finished_at,
        last_attempted_at=job.started_at,
        args=job.payload.get("args", []),
        kwargs=job.payload.get("kwargs", {}),
        backend=backend,
        errors=task_errors(job, attempts),
        worker_ids=workers,
        **TASK_RESULT_EXTRA,
    )
    if job.status == JobStatus.SUCCEEDED:
        object.__setattr__(result, "_return_value", job.result)
    return result


def task_errors(job: Job, attempts: Sequence[JobAttempt]) -> list[TaskError]:
    """One TaskError per attempt that ended in an error, oldest first; a job that failed or
    was cancelled without an attempt's error (cancelled while queued) gets one for that."""
    errors = [
        TaskError(
            exception_class_path=exception_class_path(a.error_type, a.traceback),
            traceback=a.traceback or f"{a.error_type}: {a.error_message}",
        )
        for a in attempts
        if a.outcome in FAILED_OUTCOMES
    ]
    if not errors and job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        error_type = job.error_type or ("JobCancelled" if job.status == JobStatus.CANCELLED else "")
        message = job.error_message or f"job {job.id} was {job.status}"
        errors.append(
            TaskError(
                exception_class_path=exception_class_path(error_type, job.error_traceback),
                traceback=job.error_traceback or f"{error_type}: {message}",
            )
        )
    return errors
