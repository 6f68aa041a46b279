"""Starting and cancelling workflows: the same checks, admission and creation path as a
batch of jobs (apps.jobs.lifecycle), with the graph written beside the jobs in the same
transaction. What happens when a member finishes is in apps.workflows.release."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict, InvalidInput
from apps.jobs import lifecycle
from apps.jobs.models import Job, JobStatus
from apps.workflows import release
from apps.workflows.graph import graph_check
from apps.workflows.models import OnFailure, Workflow, WorkflowNode, WorkflowStatus

EVENT_WORKFLOW_FINISHED = "workflow.finished"


def workflow_submit(
    *,
    owner: AbstractBaseUser,
    jobs: Sequence[dict[str, Any]],
    name: str = "",
    on_failure: str = OnFailure.CANCEL_DEPENDENTS,
    callback_url: str = "",
    request_id: str = "",
    from_client: bool = False,
) -> Workflow:
    """Start a workflow, all or nothing. Each item of `jobs` is {ref, kind, payload?,
    depends_on?, priority?, max_attempts?}. The graph is checked first (graph_check), then
    every job as a batch's are (errors by ref), then admission as for a batch of the same
    size; one transaction writes the workflow, its jobs and its graph. Jobs with no
    dependencies are queued and published after the commit; the others wait."""
    graph = graph_check(jobs)
    if on_failure not in OnFailure.values:
        raise InvalidInput(f"on_failure must be one of {', '.join(OnFailure.values)}.", code="invalid_on_failure")
    checked = lifecycle.jobs_check_all(
        owner=owner, jobs=jobs, label="ref", code="invalid_workflow", from_client=from_client
    )
    callback_url = lifecycle.job_validate_callback_url(callback_url)
    lifecycle.jobs_admit(owner=owner, checked=checked)

    workflow_id = uuid.uuid4()
    refs = [spec["ref"] for spec in jobs]
    columns = [
        {
            "workflow_id": workflow_id,
            "workflow_ref": ref,
            "status": JobStatus.WAITING if graph[ref] else JobStatus.QUEUED,
        }
        for ref in refs
    ]
    with transaction.atomic():
        workflow = Workflow.objects.create(
            id=workflow_id,
            owner=owner,
            name=name,
            on_failure=on_failure,
            callback_url=callback_url,
            total=len(refs),
            unfinished=len(refs),
            request_id=request_id[:64],
        )
        rows = lifecycle.jobs_create(owner=owner, checked=checked, request_id=request_id, columns=columns)
        ids = {ref: str(job.id) for ref, job in zip(refs, rows, strict=True)}
        dependents: dict[str, list[str]] = {ref: [] for ref in refs}
        for ref, deps in graph.items():
            for dep in deps:
                dependents[dep].append(ids[ref])
        WorkflowNode.objects.bulk_create(
            [
                WorkflowNode(
                    job_id=ids[ref],
                    workflow_id=workflow_id,
                    parents=[ids[dep] for dep in graph[ref]],
                    dependents=dependents[ref],
                    remaining=len(graph[ref]),
                )
                for ref in refs
            ]
        )
    return workflow


def workflow_cancel(*, workflow: Workflow) -> Workflow:
    """Cancel what has not finished: waiting, queued and retrying jobs at once, running ones
    asked to stop (each ends cancelled at its handler's next check). The workflow ends
    `cancelled` once its last job has ended. 409 when it has already finished."""
    now = timezone.now()
    with transaction.atomic():
        # The unfinished jobs' rows first, then the workflow's: the order every finish takes
        # (its job's row, then the workflow's in job_finishing), so the two never deadlock;
        # and a worker's claim of a queued job waits, then finds it cancelled.
        members = Job.objects.filter(workflow_id=workflow.pk)
        unfinished = list(
            members.select_for_update()
            .filter(status__in=(JobStatus.WAITING, JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING))
            .order_by("id")
            .values_list("id", "kind", "status")
        )
        workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
        if workflow.is_terminal:
            raise Conflict(f"The workflow has already {_ENDED[workflow.status]}.", code="workflow_terminal")
        if workflow.cancel_requested_at is None:
            workflow.cancel_requested_at = now
        running = [job_id for job_id, _, status in unfinished if status == JobStatus.RUNNING]
        members.filter(id__in=running, cancel_requested_at__isnull=True).update(cancel_requested_at=now, updated_at=now)
        stopped = [(job_id, kind) for job_id, kind, status in unfinished if status != JobStatus.RUNNING]
        release.jobs_cancel(workflow=workflow, jobs=stopped, now=now, error=("", ""))
        workflow.unfinished -= len(stopped)
        if workflow.unfinished <= 0:
            release.workflow_finish(workflow=workflow, now=now)
        workflow.save()
        release.ring_on_commit(workflow.id)
    return workflow


_ENDED = {
    WorkflowStatus.SUCCEEDED: "succeeded",
    WorkflowStatus.FAILED: "failed",
    WorkflowStatus.CANCELLED: "been cancelled",
}


def workflow_webhook_document(owner_id: int, workflow_id: str) -> dict[str, Any] | None:
    """The body of a `workflow.finished` webhook (apps.webhooks signs and sends it), or None
    when the workflow is gone or another client's."""
    from apps.workflows import selectors

    workflow = Workflow.objects.filter(id=workflow_id, owner_id=owner_id).first()
    if workflow is None:
        return None
    jobs = selectors.workflow_jobs(workflow=workflow)
    return {
        "workflow": {
            "id": str(workflow.id),
            "name": workflow.name,
            "status": workflow.status,
            "counts": selectors.workflow_counts(jobs),
            "jobs": [{"ref": j.ref, "id": j.id, "status": j.status} for j in jobs],
            "created_at": _iso(workflow.created_at),
            "finished_at": _iso(workflow.finished_at),
        }
    }


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
