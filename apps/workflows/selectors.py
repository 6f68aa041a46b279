"""Reads of workflows: a client's list, one workflow with its jobs, its polling version, and
the results of a job's dependencies (ctx.parent_results)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Max, OuterRef, QuerySet, Subquery, TextField
from django.db.models.functions import Cast

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
    """The workflow's jobs in the order submitted, each with its dependencies by ref: one
    query (the nodes joined with their jobs), whatever the size. Ids and edges come as text
    and no timestamp is read, because converting 1,000 rows of them in Python was most of
    the cost of GET /api/v1/workflows/{id}."""
    rows = list(
        # Both sides by their workflow index (job_workflow, the node's foreign key): without the
        # jobs' own condition the planner may read every job to join 1,000 nodes.
        WorkflowNode.objects.filter(workflow_id=workflow.id, job__workflow_id=workflow.id)
        .order_by("job__created_at")
        .values_list(
            Cast("job_id", TextField()), "job__workflow_ref", "job__kind", "job__status", Cast("parents", TextField())
        )
    )
    refs = {job_id: ref for job_id, ref, _, _, _ in rows}
    return [
        WorkflowJob(
            ref=ref,
            id=job_id,
            kind=kind,
            status=status,
            depends_on=[refs.get(parent, parent) for parent in json.loads(parents)] if parents != "[]" else [],
        )
        for job_id, ref, kind, status, parents in rows
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


def _versioned(*, owner: AbstractBaseUser, workflow_id: object) -> QuerySet[Workflow]:
    """The owner's workflow with what its polling version needs of its jobs (their latest
    change and number), read in the same query."""
    jobs = Job.objects.filter(workflow_id=OuterRef("id")).order_by().values("workflow_id")
    return Workflow.objects.filter(id=workflow_id, owner=owner).annotate(
        jobs_changed_at=Subquery(jobs.annotate(m=Max("updated_at")).values("m")),
        jobs_count=Subquery(jobs.annotate(n=Count("id")).values("n")),
    )


def _version_of(
    workflow_id: object, updated_at: datetime, status: str, changed: datetime | None, n: int | None
) -> WorkflowVersion:
    return WorkflowVersion(str(workflow_id), updated_at, status, changed, n or 0)


def workflow_version(*, owner: AbstractBaseUser, workflow_id: object) -> WorkflowVersion:
    row = (
        _versioned(owner=owner, workflow_id=workflow_id)
        .values_list("id", "updated_at", "status", "jobs_changed_at", "jobs_count")
        .first()
        if _is_uuid(workflow_id)
        else None
    )
    if row is None:
        raise NotFound("No such workflow.", code="workflow_not_found")
    return _version_of(*row)


@dataclass(frozen=True)
class WorkflowDetail:
    workflow: Workflow
    jobs: list[WorkflowJob]
    version: WorkflowVersion


def workflow_detail(*, owner: AbstractBaseUser, workflow_id: object) -> WorkflowDetail:
    """One of the owner's workflows, its jobs and its polling version: two queries, whatever
    its size (tests/unit/workflows/test_detail_queries.py pins them)."""
    workflow = _versioned(owner=owner, workflow_id=workflow_id).first() if _is_uuid(workflow_id) else None
    if workflow is None:
        raise NotFound("No such workflow.", code="workflow_not_found")
    version = _version_of(
        workflow.id, workflow.updated_at, workflow.status, workflow.jobs_changed_at, workflow.jobs_count
    )
    return WorkflowDetail(workflow=workflow, jobs=workflow_jobs(workflow=workflow), version=version)


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
