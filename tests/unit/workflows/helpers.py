"""Workflows driven through the real services: start one, end its jobs as a worker would."""

from __future__ import annotations

from typing import Any

from apps.jobs import lifecycle
from apps.jobs.models import Job
from apps.workflows import services
from apps.workflows.models import Workflow


def node(ref: str, *deps: str, kind: str = "diagnostics.noop", payload: dict | None = None) -> dict[str, Any]:
    return {"ref": ref, "kind": kind, "payload": payload or {}, "depends_on": list(deps)}


def start(user: Any, *jobs: dict[str, Any], **options: Any) -> Workflow:
    return services.workflow_submit(owner=user, jobs=list(jobs), **options)


def jobs_of(workflow: Workflow) -> dict[str, Job]:
    return {job.workflow_ref: job for job in Job.objects.filter(workflow_id=workflow.id)}


def statuses(workflow: Workflow) -> dict[str, str]:
    return {ref: str(job.status) for ref, job in jobs_of(workflow).items()}


def claimed(workflow: Workflow, ref: str) -> lifecycle.Claim:
    claim = lifecycle.job_claim(job_id=str(jobs_of(workflow)[ref].id), worker="w1")
    assert claim is not None, f"{ref} could not be claimed ({statuses(workflow)[ref]})"
    return claim


def succeed(workflow: Workflow, ref: str, result: Any = None) -> None:
    assert lifecycle.job_succeed(claim=claimed(workflow, ref), result=result if result is not None else {"ref": ref})


def fail(workflow: Workflow, ref: str, *, permanent: bool = True) -> str:
    return lifecycle.job_fail_attempt(
        claim=claimed(workflow, ref), failure=lifecycle.AttemptFailure("Boom", "it broke", permanent=permanent)
    )


def refreshed(workflow: Workflow) -> Workflow:
    return Workflow.objects.get(pk=workflow.pk)
