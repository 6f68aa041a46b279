"""What a workflow does when one of its jobs ends or is queued again. Everything here runs
inside the transaction that writes the job's change (the jobs app's job_finishing and
job_requeued signals), under the workflow's row lock: two siblings finishing at once take
turns, so a dependent is released exactly once, and a worker that dies before its commit
releases nothing (the reconciler's lease recovery runs the job again)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, F

from apps.jobs import notify, signals
from apps.jobs.models import Job, JobStatus
from apps.jobs.publish import JobMessage, job_publish_on_commit
from apps.workflows.models import OnFailure, Workflow, WorkflowNode, WorkflowStatus
from apps.workflows.signals import workflow_finished

logger = logging.getLogger(__name__)

DEPENDENCY_ERROR = "DependencyFailed"


def workflow_job_finished(*, workflow_id: str, job_id: str, status: str, now: datetime) -> None:
    """A member reached succeeded, failed or cancelled. Success counts its dependents down
    and queues those with nothing left to wait for; failure or cancel cancels everything
    downstream that waits (cancel_dependents) or counts down as success does (continue).
    The last member to end ends the workflow."""
    # Its dependents only: a chord's last job's own list of dependencies may be long. Read
    # before the lock (they never change after submit), so the lock, which the workflow's
    # members finishing at once queue for until each commits, is held one statement less.
    dependents = WorkflowNode.objects.filter(job_id=job_id).values_list("dependents", flat=True).first()
    if dependents is None:
        return  # pruned, or made outside workflow_submit: nothing to follow
    workflow = Workflow.objects.select_for_update().filter(id=workflow_id).first()
    if workflow is None:
        return  # pruned, or made outside workflow_submit: nothing to follow
    workflow.unfinished -= 1
    if status == JobStatus.SUCCEEDED or workflow.on_failure == OnFailure.CONTINUE:
        _count_down(dependents, now=now)
    else:
        ref = Job.objects.filter(id=job_id).values_list("workflow_ref", flat=True).first() or "?"
        word = "failed" if status == JobStatus.FAILED else "was cancelled"
        workflow.unfinished -= _cancel_downstream(
            workflow=workflow, origin=job_id, now=now, error=(DEPENDENCY_ERROR, f"dependency {ref!r} {word}")
        )
    if workflow.unfinished <= 0:
        workflow_finish(workflow=workflow, now=now)
    workflow.save(update_fields=["unfinished", "status", "finished_at", "updated_at"])
    ring_on_commit(workflow.id)


def workflow_job_requeued(*, job: Job, now: datetime) -> None:
    """A failed or cancelled member was queued again (a redrive, a retry from the admin): the
    workflow runs again, the jobs cancelled because of it wait again, and the job itself
    waits when its own dependencies are not done."""
    workflow = Workflow.objects.select_for_update().filter(id=job.workflow_id).first()
    node = WorkflowNode.objects.select_for_update().filter(job_id=job.id).first()
    if workflow is None or node is None:
        return
    workflow.unfinished += 1
    if node.parents:
        left = _not_done(node.parents, on_failure=workflow.on_failure)
        if left:
            # Published on commit all the same; the claim finds it waiting and drops it.
            Job.objects.filter(id=job.id).update(status=JobStatus.WAITING, updated_at=now)
            job.status = JobStatus.WAITING
        WorkflowNode.objects.filter(job_id=job.id).update(remaining=left, cancelled_by=None)
    if workflow.on_failure == OnFailure.CONTINUE:
        # Its waiting dependents counted its earlier end; it will end again.
        waiting = Job.objects.filter(id__in=node.dependents, status=JobStatus.WAITING).values("id")
        WorkflowNode.objects.filter(job_id__in=waiting).update(remaining=F("remaining") + 1)
    workflow.unfinished += _reopen(workflow=workflow, origin=str(job.id), now=now)
    if workflow.status != WorkflowStatus.RUNNING:
        workflow.status = WorkflowStatus.RUNNING
        workflow.finished_at = None
    workflow.save(update_fields=["unfinished", "status", "finished_at", "updated_at"])
    ring_on_commit(workflow.id)


def workflow_finish(*, workflow: Workflow, now: datetime) -> None:
    """Every job has ended: the workflow's outcome (cancelled when its client cancelled it,
    failed when any job failed, cancelled when any was cancelled, else succeeded), and its
    webhook. Caller holds the row lock and saves it. Reads the workflow once, at its end."""
    counts = dict(Job.objects.filter(workflow_id=workflow.id).values_list("status").annotate(n=Count("id")))
    if workflow.cancel_requested_at is not None:
        workflow.status = WorkflowStatus.CANCELLED
    elif counts.get(JobStatus.FAILED):
        workflow.status = WorkflowStatus.FAILED
    elif counts.get(JobStatus.CANCELLED):
        workflow.status = WorkflowStatus.CANCELLED
    else:
        workflow.status = WorkflowStatus.SUCCEEDED
    workflow.finished_at = now
    workflow.unfinished = 0
    logger.info("workflow %s (%s) %s: %s", workflow.id, workflow.name or "-", workflow.status, counts)
    workflow_id, status = str(workflow.id), str(workflow.status)
    transaction.on_commit(
        lambda: workflow_finished.send(sender=Workflow, workflow_id=workflow_id, status=status), robust=True
    )
    if workflow.callback_url:
        _webhook(workflow)


def _webhook(workflow: Workflow) -> None:
    from apps.webhooks import services as webhooks
    from apps.workflows.services import EVENT_WORKFLOW_FINISHED

    try:
        # A savepoint: a delivery that cannot be made rolls back alone, not the finish.
        with transaction.atomic():
            webhooks.webhook_event_submit(
                owner_id=workflow.owner_id,
                event=EVENT_WORKFLOW_FINISHED,
                subject_id=str(workflow.id),
                url=workflow.callback_url,
                request_id=workflow.request_id,
            )
    except Exception:
        # The workflow must end whatever becomes of its webhook: say so loudly instead.
        logger.exception("workflow %s: could not create its webhook delivery", workflow.id)


def _count_down(dependents: Sequence[str], *, now: datetime) -> None:
    """One dependency of each of `dependents` is done: queue those now left with none."""
    if not dependents:
        return
    WorkflowNode.objects.filter(job_id__in=dependents).update(remaining=F("remaining") - 1)
    ready = WorkflowNode.objects.filter(job_id__in=dependents, remaining__lte=0).values("job_id")
    rows = list(
        Job.objects.filter(id__in=ready, status=JobStatus.WAITING).values_list("id", "kind", "queue", "request_id")
    )
    if not rows:
        return
    # Fenced on `waiting`, and serialized by the workflow's lock: released once. The relay
    # publishes any whose publish after the commit is lost (queued, published_at NULL).
    Job.objects.filter(id__in=[row[0] for row in rows], status=JobStatus.WAITING).update(
        status=JobStatus.QUEUED, published_at=None, updated_at=now
    )
    job_publish_on_commit([JobMessage.row(row) for row in rows])
    _ring_jobs_on_commit(row[0] for row in rows)


def _cancel_downstream(*, workflow: Workflow, origin: str, now: datetime, error: tuple[str, str]) -> int:
    """Cancel every waiting job downstream of `origin`, transitively, remembering `origin`
    as the cause (a redrive of it re-opens them). Returns how many were cancelled."""
    frontier = list(WorkflowNode.objects.filter(job_id=origin).values_list("dependents", flat=True).first() or [])
    cancelled = 0
    seen: set[str] = set()
    while frontier:
        frontier = [job_id for job_id in frontier if job_id not in seen]
        seen.update(frontier)
        waiting = list(Job.objects.filter(id__in=frontier, status=JobStatus.WAITING).values_list("id", "kind"))
        if not waiting:
            break
        jobs_cancel(workflow=workflow, jobs=waiting, now=now, error=error, origin=origin)
        cancelled += len(waiting)
        nodes = WorkflowNode.objects.filter(job_id__in=[job_id for job_id, _ in waiting])
        frontier = [dep for deps in nodes.values_list("dependents", flat=True) for dep in deps]
    return cancelled


def jobs_cancel(
    *, workflow: Workflow, jobs: list[tuple[Any, str]], now: datetime, error: tuple[str, str], origin: str | None = None
) -> None:
    """Cancel members that have not started (waiting, queued or retrying) in one statement;
    job_finished follows the commit for each (metrics, long-poll doorbells), as for any
    cancel. Caller holds the workflow's lock and keeps its count."""
    if not jobs:
        return
    ids = [job_id for job_id, _ in jobs]
    Job.objects.filter(id__in=ids, status__in=(JobStatus.WAITING, JobStatus.QUEUED, JobStatus.RETRYING)).update(
        status=JobStatus.CANCELLED,
        finished_at=now,
        cancel_requested_at=now,
        error_type=error[0],
        error_message=error[1],
        run_at=None,
        updated_at=now,
    )
    if origin is not None:
        WorkflowNode.objects.filter(job_id__in=ids).update(cancelled_by=origin)

    def announce() -> None:
        for job_id, kind in jobs:
            signals.job_finished.send(
                sender=Job, job_id=str(job_id), kind=kind, status=JobStatus.CANCELLED, callback_url="", duration_ms=None
            )

    transaction.on_commit(announce, robust=True)


def _reopen(*, workflow: Workflow, origin: str, now: datetime) -> int:
    """Jobs cancelled because `origin` failed wait again, each for the dependencies it has
    not seen succeed. One whose other dependency has failed too is cancelled again, now
    because of that one. Returns how many jobs are unfinished again."""
    nodes = list(WorkflowNode.objects.filter(cancelled_by=origin, job__status=JobStatus.CANCELLED))
    if not nodes:
        return 0
    ids = [node.job_id for node in nodes]
    Job.objects.filter(id__in=ids).update(
        status=JobStatus.WAITING,
        finished_at=None,
        cancel_requested_at=None,
        error_type="",
        error_message="",
        updated_at=now,
    )
    parents = {parent for node in nodes for parent in node.parents}
    statuses = dict(Job.objects.filter(id__in=parents).values_list("id", "status"))
    statuses = {str(job_id): status for job_id, status in statuses.items()}
    for node in nodes:
        left = sum(1 for parent in node.parents if statuses.get(parent) != JobStatus.SUCCEEDED)
        WorkflowNode.objects.filter(job_id=node.job_id).update(remaining=left, cancelled_by=None)
    reopened = len(nodes)
    # A dependency outside what re-opened that has failed (or was cancelled) still holds.
    still_failed = {
        parent
        for parent, status in statuses.items()
        if status in (JobStatus.FAILED, JobStatus.CANCELLED) and parent not in {str(i) for i in ids}
    }
    for parent in still_failed:
        reopened -= _cancel_downstream(
            workflow=workflow, origin=parent, now=now, error=(DEPENDENCY_ERROR, "a dependency did not succeed")
        )
    _ring_jobs_on_commit(ids)
    return reopened


def _not_done(parents: Sequence[str], *, on_failure: str) -> int:
    """How many of `parents` a dependent still waits for."""
    done = (
        (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
        if on_failure == OnFailure.CONTINUE
        else (JobStatus.SUCCEEDED,)
    )
    return len(parents) - Job.objects.filter(id__in=parents, status__in=done).count()


def ring_on_commit(workflow_id: object) -> None:
    """Wake long polls of the workflow (?wait=N) once the change commits. The workflow's
    doorbell is a job doorbell named by the workflow's id (ids never collide: both UUID4)."""
    _ring_jobs_on_commit([workflow_id])


def _ring_jobs_on_commit(ids: Iterable[object]) -> None:
    keys = [str(i) for i in ids]
    transaction.on_commit(lambda: notify.jobs_changed_publish(keys), robust=True)
