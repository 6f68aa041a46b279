"""Reads of workflows: a client's list, one workflow with its jobs, its polling version, and
the results of a job's dependencies (ctx.parent_results)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Max, QuerySet

from apps.core.errors import NotFound
from apps.jobs.models import Job, JobStatus
from apps.workflows.models import Workflow, WorkflowNode, WorkflowStatus


def workflow_list(*, owner: AbstractBaseUser, status: str | None = None) -> QuerySet[Workflow]:
    """The owner's workflows, newest first (the workflow_owner_created index)."""
    qs = Workflow.objects.filter(owner=owner)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at")


def workflow_get(*, owner: AbstractBaseUser, workflow_id: object) -> Workflow:
    """One of the owner's workflows; someone else's is as absent as one that never existed."""
    try:
        return Workflow.objects.get(id=workflow_id, owner=owner)
    except (Workflow.DoesNotExist, ValueError):
        raise NotFound("No such workflow.", code="workflow_not_found") from None


@dataclass(frozen=True)
class WorkflowJob:
    ref: str
    id: str
    kind: str
    status: str
    depends_on: list[str]


def workflow_jobs(*, workflow: Workflow) -> list[WorkflowJob]:
    """The workflow's jobs in the order submitted, each with its dependencies by ref: two
    queries, whatever the size."""
    rows = list(
        Job.objects.filter(workflow_id=workflow.id)
        .order_by("created_at")
        .values_list("id", "workflow_ref", "kind", "status")
    )
    refs = {str(job_id): ref for job_id, ref, _, _ in rows}
    parents = dict(WorkflowNode.objects.filter(workflow=workflow).values_list("job_id", "parents"))
    return [
        WorkflowJob(
            ref=ref,
            id=str(job_id),
            kind=kind,
            status=str(status),
            depends_on=[refs.get(parent, parent) for parent in parents.get(job_id, [])],
        )
        for job_id, ref, kind, status in rows
    ]


def workflow_counts(jobs: list[WorkflowJob]) -> dict[str, int]:
    """Jobs per status (every status, zeros included) and `total`."""
    counts = dict.fromkeys(JobStatus.values, 0)
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    counts["total"] = len(jobs)
    return counts


@dataclass(frozen=True)
class WorkflowVersion:
    """The polling validator of a workflow: its own row, and its jobs' latest change and
    number (a job's progress, start or finish moves it). Duck-types apps.jobs.polling's
    JobVersion where polling.headers reads it."""

    workflow_id: str
    updated_at: datetime
    status: str
    jobs_changed_at: datetime | None
    jobs: int
    run_at: None = None

    @property
    def etag(self) -> str:
        raw = f"{self.workflow_id}|{self.updated_at.isoformat()}|{self.status}|{self.jobs_changed_at}|{self.jobs}"
        return f'W/"{hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()}"'

    @property
    def terminal(self) -> bool:
        return self.status != WorkflowStatus.RUNNING


def workflow_version(*, owner: AbstractBaseUser, workflow_id: object) -> WorkflowVersion:
    workflow = (
        Workflow.objects.filter(id=workflow_id, owner=owner).values_list("updated_at", "status").first()
        if _is_uuid(workflow_id)
        else None
    )
    if workflow is None:
        raise NotFound("No such workflow.", code="workflow_not_found")
    jobs = Job.objects.filter(workflow_id=workflow_id).aggregate(changed=Max("updated_at"), n=Count("id"))
    return WorkflowVersion(str(workflow_id), workflow[0], workflow[1], jobs["changed"], jobs["n"])


def _is_uuid(value: object) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def parent_results(*, job_id: str) -> dict[str, Any]:
    """The results of a job's dependencies, by ref ({} for a job outside any workflow or
    with no dependencies). A dependency that did not succeed (with on_failure=continue) is
    there with its result None."""
    parents = WorkflowNode.objects.filter(job_id=job_id).values_list("parents", flat=True).first()
    if not parents:
        return {}
    return dict(Job.objects.filter(id__in=parents).values_list("workflow_ref", "result"))


def workflows_running_count() -> int:
    """How many workflows are running now (/metrics; the workflow_status_created index)."""
    return Workflow.objects.filter(status=WorkflowStatus.RUNNING).count()
