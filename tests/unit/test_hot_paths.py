"""The worker's claim and finish paths run for every job: their query counts are pinned, so
a change that adds a query to them is a decision, not an accident. (Inside a test each
transaction is a savepoint, so SAVEPOINT and RELEASE appear in the counts.)"""

from __future__ import annotations

import pytest

from apps.jobs import services
from apps.jobs.models import Job, JobAttempt
from tests.factories import UserFactory


@pytest.fixture
def job(db):
    return services.job_submit(owner=UserFactory(), kind="diagnostics.noop", payload={})


def test_claiming_a_job_costs_one_statement(job, django_assert_num_queries):
    with django_assert_num_queries(1):  # UPDATE ... RETURNING; the attempt's row is written at its end
        claim = services.job_claim(job_id=str(job.id), worker="w1")
    assert claim is not None
    assert (claim.kind, claim.attempt, claim.payload, claim.worker) == ("diagnostics.noop", 1, {}, "w1")
    assert claim.created_at == job.created_at


def test_a_duplicate_message_costs_one_query(job, django_assert_num_queries):
    services.job_claim(job_id=str(job.id), worker="w1")
    with django_assert_num_queries(1):  # an UPDATE that matches nothing
        assert services.job_claim(job_id=str(job.id), worker="w2") is None


def test_finishing_a_job_costs_one_statement(job, django_assert_num_queries):
    claim = services.job_claim(job_id=str(job.id), worker="w1")
    with django_assert_num_queries(1):  # WITH (fenced UPDATE of the job) INSERT the attempt
        assert services.job_succeed(claim=claim, result={"ok": True})
    assert JobAttempt.objects.get(job_id=job.id).outcome == "succeeded"


def test_a_heartbeat_costs_one_update(job, django_assert_num_queries):
    claim = services.job_claim(job_id=str(job.id), worker="w1")
    with django_assert_num_queries(1):
        assert services.job_heartbeat(claim=claim)


def test_a_zombie_finish_writes_neither_the_job_nor_an_attempt(job):
    stale = services.job_claim(job_id=str(job.id), worker="zombie")
    Job.objects.filter(id=job.id).update(status="queued")  # its lease expired and was handed on
    fresh = services.job_claim(job_id=str(job.id), worker="w2")

    assert services.job_succeed(claim=stale, result={"from": "zombie"}) is False
    assert not JobAttempt.objects.filter(job_id=job.id).exists()
    assert services.job_succeed(claim=fresh, result={"from": "w2"}) is True
    job.refresh_from_db()
    assert job.result == {"from": "w2"}
    attempt = JobAttempt.objects.get(job_id=job.id)
    assert (attempt.number, attempt.worker, attempt.outcome) == (2, "w2", "succeeded")
