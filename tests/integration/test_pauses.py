"""Pausing a queue or a kind with a real worker and beat: submissions are accepted and held in
PostgreSQL, a message already on the broker is handed back without spending an attempt, a
running job finishes, and resume runs every held job once, promptly."""

from __future__ import annotations

import time

import pytest

from apps.jobs import lifecycle, pauses
from apps.jobs.models import Job, JobAttempt, JobStatus
from tests.factories import UserFactory
from tests.integration.helpers import wait_terminal
from tests.processes import wait_for

pytestmark = pytest.mark.integration


def status_of(job: Job) -> str:
    job.refresh_from_db()
    return job.status


def assert_held(*jobs: Job) -> None:
    for job in jobs:
        job.refresh_from_db()
        assert (job.status, job.attempts, job.published_at) == (JobStatus.QUEUED, 0, None), job
        assert not JobAttempt.objects.filter(job=job).exists()


def test_a_paused_queue_holds_its_jobs_and_resume_runs_each_once(platform):
    platform.worker(concurrency=1)
    platform.beat()
    user = UserFactory()
    running = lifecycle.job_submit(owner=user, kind="diagnostics.sleep", payload={"seconds": 3})
    wait_for(lambda: status_of(running) == JobStatus.RUNNING, timeout=30, what="the first job to start")
    # The one worker slot is busy: this one's message waits on the broker through the pause.
    published = lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={})
    assert Job.objects.get(id=published.id).published_at is not None

    pauses.queue_pause(name="default", actor="test")
    held = lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={})
    other_queue = lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={}, priority="low")

    # The running job finishes, the worker takes the published one's message and hands it
    # back; the other queue runs on; beat's relay (every second) publishes nothing held.
    wait_terminal([running.id, other_queue.id], timeout=30)
    wait_for(lambda: Job.objects.get(id=published.id).published_at is None, timeout=10, what="the message to come back")
    time.sleep(3)
    assert status_of(running) == status_of(other_queue) == JobStatus.SUCCEEDED
    assert_held(published, held)

    resumed = time.monotonic()
    pauses.queue_resume(name="default", actor="test")
    done = wait_terminal([published.id, held.id], timeout=20)
    took = time.monotonic() - resumed

    for job in done.values():
        assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
        assert list(JobAttempt.objects.filter(job=job).values_list("outcome", flat=True)) == ["succeeded"]
    assert took < 5, f"held jobs took {took:.1f} s to finish after the resume"


def test_a_paused_kind_holds_its_jobs_while_other_kinds_of_its_queue_run(platform):
    platform.worker()
    platform.beat()
    user = UserFactory()

    pauses.kind_pause(name="diagnostics.noop", actor="test")
    held = [lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={}) for _ in range(3)]
    runs = lifecycle.job_submit(owner=user, kind="diagnostics.sleep", payload={"seconds": 0})

    wait_terminal([runs.id], timeout=30)
    time.sleep(3)
    assert_held(*held)

    pauses.kind_resume(name="diagnostics.noop", actor="test")
    done = wait_terminal([job.id for job in held], timeout=20)
    assert {(job.status, job.attempts) for job in done.values()} == {(JobStatus.SUCCEEDED, 1)}
