"""The hard-time-limit fence. The worker's main process, not the killed child, records the
timeout, and it knows the child's delivery (task id, worker name, pid) but not the lease
token the child claimed with; the token is derived from that delivery so the main process
can tell whether the job's current attempt is the one it killed. Every pool process of a
worker shares the worker's name, so the name alone cannot tell."""

from __future__ import annotations

import uuid

import pytest

from apps.jobs import lifecycle
from apps.jobs.models import Job, JobAttempt, JobStatus
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

WORKER = "celery@host-a"  # one worker; its pool processes differ by pid only


def seed(pid: int, task_id: str | None = None) -> str:
    return lifecycle.lease_seed(task_id=task_id or str(uuid.uuid4()), worker=WORKER, pid=pid)


@pytest.fixture
def job() -> Job:
    return lifecycle.job_submit(owner=UserFactory(), kind="diagnostics.flaky", payload={"fail_times": 0})


def claim(job: Job, seed: str | None) -> lifecycle.Claim:
    c = lifecycle.job_claim(job_id=str(job.id), worker=WORKER, seed=seed)
    assert c is not None
    return c


def lease_expired_and_handed_on(job: Job) -> None:
    """What the reconciler does to a stalled attempt's job, minus its bookkeeping."""
    Job.objects.filter(id=job.id).update(status=JobStatus.QUEUED, lease_token=None)


def test_the_claims_lease_token_can_be_rebuilt_from_its_seed(job):
    s = seed(pid=101)

    c = claim(job, s)

    job.refresh_from_db()
    assert job.lease_token == lifecycle.lease_token_for(s, 1)
    assert c.lease_token == str(job.lease_token)


def test_each_claim_of_one_message_gets_its_own_token(job):
    """A copy of the same message (same task id) that claims again after the first claim's
    lease expired must not hold the zombie's token: the attempt number tells them apart."""
    s = seed(pid=101)
    first = claim(job, s)
    lease_expired_and_handed_on(job)
    second = claim(job, s)

    assert first.lease_token != second.lease_token
    assert lifecycle.job_succeed(claim=first, result={"from": "zombie"}) is False
    assert lifecycle.job_succeed(claim=second, result={"from": "second"}) is True


def test_a_claim_without_a_seed_still_gets_a_fresh_token(job, django_assert_num_queries):
    with django_assert_num_queries(1):
        c = claim(job, None)
    job.refresh_from_db()
    assert str(job.lease_token) == c.lease_token


def test_a_seeded_claim_costs_one_statement(job, django_assert_num_queries):
    with django_assert_num_queries(1):
        claim(job, seed(pid=101))


def test_the_timeout_of_a_stalled_attempt_leaves_the_newer_attempt_of_the_same_worker_alone(job):
    stalled_seed = seed(pid=101)
    claim(job, stalled_seed)
    lease_expired_and_handed_on(job)
    healthy = claim(job, seed(pid=102))  # another pool process of the same worker
    job.refresh_from_db()
    before = (job.status, job.lease_token, job.lease_expires_at, job.error_type, job.attempts)

    status = lifecycle.job_attempt_timed_out(job_id=str(job.id), seed=stalled_seed, limit=2)

    assert status == "stale"
    job.refresh_from_db()
    assert (job.status, job.lease_token, job.lease_expires_at, job.error_type, job.attempts) == before
    assert not JobAttempt.objects.filter(job=job).exists()
    # and the healthy attempt finishes as if nothing happened
    assert lifecycle.job_succeed(claim=healthy, result={"ok": True}) is True
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert list(JobAttempt.objects.filter(job=job).values_list("number", "outcome")) == [(2, "succeeded")]


def test_the_timeout_of_the_current_attempt_ends_that_attempt(job):
    s = seed(pid=101)
    c = claim(job, s)

    status = lifecycle.job_attempt_timed_out(job_id=str(job.id), seed=s, limit=2)

    assert status == JobStatus.RETRYING
    job.refresh_from_db()
    assert (job.status, job.error_type, job.lease_token) == (JobStatus.RETRYING, "TimeLimitExceeded", None)
    assert "hard time limit of 2 s" in job.error_message
    attempt = JobAttempt.objects.get(job=job)
    assert (attempt.number, attempt.outcome, attempt.worker) == (1, "failed", WORKER)
    # the killed child's late finish (it cannot have one, but a thread might) is refused
    assert lifecycle.job_succeed(claim=c, result={}) is False


def test_a_timeout_seen_after_the_job_finished_changes_nothing(job):
    s = seed(pid=101)
    c = claim(job, s)
    assert lifecycle.job_succeed(claim=c, result={"ok": True})

    assert lifecycle.job_attempt_timed_out(job_id=str(job.id), seed=s, limit=2) == "stale"
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
