"""Workflows on a real worker, Redis and PostgreSQL: a diamond runs in order, a chord's last
job gathers its group's results, and a worker killed while a member runs loses nothing and
releases nothing twice."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from apps.jobs.models import Job, JobAttempt
from apps.workflows import services
from apps.workflows.models import Workflow
from tests.processes import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def owner(transactional_db):
    return get_user_model().objects.create(username="workflow-client")


def node(ref: str, *deps: str, kind: str = "diagnostics.noop", **payload: Any) -> dict[str, Any]:
    return {"ref": ref, "kind": kind, "payload": payload, "depends_on": list(deps)}


def finished(workflow: Workflow, timeout: float = 60) -> Workflow:
    def done() -> Workflow | None:
        current = Workflow.objects.get(pk=workflow.pk)
        return current if current.status != "running" else None

    return wait_for(done, timeout=timeout, interval=0.2, what=f"workflow {workflow.id} to finish")  # type: ignore[return-value]


def members(workflow: Workflow) -> dict[str, Job]:
    return {job.workflow_ref: job for job in Job.objects.filter(workflow_id=workflow.id)}


def test_a_diamond_runs_each_job_after_its_dependencies_finished(platform, owner):
    platform.worker(concurrency=2)
    workflow = services.workflow_submit(
        owner=owner,
        jobs=[
            node("a", kind="diagnostics.sleep", seconds=0.5),
            node("b", "a", kind="diagnostics.sleep", seconds=0.5),
            node("c", "a"),
            node("d", "b", "c"),
        ],
    )
    assert finished(workflow).status == "succeeded"
    jobs = members(workflow)
    assert {job.status for job in jobs.values()} == {"succeeded"}
    assert jobs["b"].started_at >= jobs["a"].finished_at
    assert jobs["c"].started_at >= jobs["a"].finished_at
    assert jobs["d"].started_at >= max(jobs["b"].finished_at, jobs["c"].finished_at)


def test_a_chord_of_twenty_releases_its_last_job_once_and_it_gathers_their_results(platform, owner):
    platform.worker(concurrency=8)  # the group's members finish concurrently
    group = [node(f"n{i}", kind="testing.number", n=i, seconds=0.2) for i in range(20)]
    workflow = services.workflow_submit(
        owner=owner, jobs=[*group, node("sum", *[g["ref"] for g in group], kind="testing.gather")]
    )
    assert finished(workflow).status == "succeeded"
    last = members(workflow)["sum"]
    assert last.result == {"total": sum(range(20)), "refs": sorted(g["ref"] for g in group)}
    assert last.attempts == 1
    assert list(JobAttempt.objects.filter(job=last).values_list("outcome", flat=True)) == ["succeeded"]


def test_a_worker_killed_while_a_member_runs_leaves_nothing_stuck_and_runs_each_job_once(platform, owner):
    first = platform.worker(concurrency=1)
    platform.beat()  # the reconciler expires the dead worker's lease
    workflow = services.workflow_submit(
        owner=owner,
        jobs=[
            node("slow", kind="diagnostics.sleep", seconds=2),
            node("next", "slow"),
            node("also", "slow"),
            node("last", "next", "also"),
        ],
    )
    wait_for(
        lambda: Job.objects.filter(workflow_id=workflow.id, workflow_ref="slow", status="running").exists(),
        timeout=20,
        what="the first member running",
    )
    first.kill(signal.SIGKILL)
    first.proc.wait(timeout=10)
    platform.worker(concurrency=2)

    assert finished(workflow, timeout=90).status == "succeeded"
    jobs = members(workflow)
    for ref, job in jobs.items():
        outcomes = list(JobAttempt.objects.filter(job=job).values_list("outcome", flat=True))
        assert outcomes.count("succeeded") == 1, f"{ref} completed {outcomes.count('succeeded')} times: {outcomes}"
    assert list(JobAttempt.objects.filter(job=jobs["slow"]).values_list("outcome", flat=True)) == ["lost", "succeeded"]
    for ref in ("next", "also", "last"):  # released once: claimed once
        assert jobs[ref].attempts == 1, f"{ref} was claimed {jobs[ref].attempts} times"
    assert jobs["last"].started_at >= max(jobs["next"].finished_at, jobs["also"].finished_at)
