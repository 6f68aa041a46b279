"""A revoke through Celery reaching its job (workers.revocation, lifecycle.job_revoked and
job_attempt_revoked), driven as Celery's task_revoked signal drives it, with the request
Context the worker's main process passes. The real broadcast, against real workers, is in
tests/integration/test_revoke_and_purge.py."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from celery.app.task import Context
from celery.signals import task_revoked
from celery.worker import state as worker_state
from django.db import transaction

from apps.jobs import lifecycle, signals
from apps.jobs.models import Job, JobAttempt, JobStatus
from tests.factories import UserFactory
from workers import revocation
from workers.runtime import delivery_of

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "celery@host-a"


class Sender:
    name = "diagnostics.sleep"


def request_for(job: Job, *, pid: int | None = None, task_id: str | None = None) -> Context:
    fields: dict[str, Any] = {
        "id": task_id or str(uuid.uuid4()),
        "args": [str(job.id)],
        "hostname": WORKER,
        "properties": {"delivery_tag": str(uuid.uuid4())},
    }
    if pid is not None:
        fields["worker_pid"] = pid
    return Context(fields)


def revoke(request: Context, *, terminated: bool = False) -> None:
    worker_state.revoked.add(request.id)
    task_revoked.send(sender=Sender(), request=request, terminated=terminated, signum=15 if terminated else None)


@pytest.fixture
def finished() -> Any:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    signals.job_finished.connect(receiver, dispatch_uid="test_revocation")
    yield seen
    signals.job_finished.disconnect(dispatch_uid="test_revocation")


def sleeping_job() -> Job:
    return lifecycle.job_submit(owner=UserFactory(), kind="diagnostics.sleep", payload={"seconds": 5})


def test_a_revoked_message_of_a_queued_job_cancels_the_job_and_says_why(finished):
    job = sleeping_job()
    request = request_for(job)
    revoke(request)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.error_type == "Revoked"
    assert f"revoked through Celery (task {request.id})" in job.error_message
    assert job.finished_at is not None
    assert [e["status"] for e in finished] == ["cancelled"]  # as any cancel: webhooks, metrics, workflows
    assert request.id not in worker_state.revoked  # recorded in PostgreSQL; the worker may forget it


def test_a_terminated_attempt_is_recorded_as_revoked_and_its_job_cancelled(finished):
    job = sleeping_job()
    request = request_for(job, pid=4242)
    seed = lifecycle.lease_seed(task_id=request.id, delivery=delivery_of(request.properties), worker=WORKER, pid=4242)
    assert lifecycle.job_claim(job_id=str(job.id), worker=WORKER, seed=seed) is not None

    revoke(request, terminated=True)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.cancel_requested_at is not None
    assert job.lease_token is None
    attempt = JobAttempt.objects.get(job=job)
    assert (attempt.number, attempt.outcome, attempt.error_type) == (1, "revoked", "Revoked")
    assert "with terminate" in attempt.error_message
    assert "SIGTERM" in attempt.error_message
    assert [e["status"] for e in finished] == ["cancelled"]


def test_terminating_another_process_leaves_the_running_attempt_alone():
    job = sleeping_job()
    running = request_for(job, pid=1000)
    seed = lifecycle.lease_seed(task_id=running.id, delivery=delivery_of(running.properties), worker=WORKER, pid=1000)
    assert lifecycle.job_claim(job_id=str(job.id), worker=WORKER, seed=seed) is not None

    # A duplicate message of the job, in another pool process, terminated.
    revoke(request_for(job, pid=2000), terminated=True)

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert not JobAttempt.objects.filter(job=job).exists()


def test_a_revoke_without_terminate_lets_a_running_job_run():
    job = sleeping_job()
    assert lifecycle.job_claim(job_id=str(job.id), worker=WORKER) is not None
    revoke(request_for(job))
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert job.cancel_requested_at is None


def test_a_message_published_after_the_revoke_is_not_the_one_it_meant():
    """A retry or a redrive reuses the job's task id, which workers that heard the revoke still
    remember: the job stays queued, for the stranded-job sweep to publish again."""
    job = sleeping_job()
    request = request_for(job)
    worker_state.revoked.add(request.id, now=time.monotonic() - 60)
    task_revoked.send(sender=Sender(), request=request, terminated=False, signum=None)

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert request.id not in worker_state.revoked


def test_a_revoked_message_of_a_finished_job_changes_nothing():
    job = sleeping_job()
    lifecycle.job_cancel(job=job)
    with transaction.atomic():
        before = Job.objects.get(id=job.id)
    revoke(request_for(job))
    after = Job.objects.get(id=job.id)
    assert (after.status, after.error_type, after.finished_at) == (before.status, "", before.finished_at)


def test_revokes_of_tasks_that_are_not_jobs_are_ignored():
    class Other:
        name = "platform.reconcile"

    task_revoked.send(sender=Other(), request=Context({"id": "x", "args": [str(uuid.uuid4())]}), terminated=False)
    assert revocation.revoked_at("never-revoked") is None
