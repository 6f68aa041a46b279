"""The worker's claim and finish paths run for every job: their query counts are pinned, so
a change that adds a query to them is a decision, not an accident. (Inside a test each
transaction is a savepoint, so SAVEPOINT and RELEASE appear in the counts.)"""

from __future__ import annotations

import pytest

from apps.jobs import services
from apps.jobs.models import JobAttempt
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


def test_finishing_a_job_costs_two_updates(job, django_assert_num_queries):
    claim = services.job_claim(job_id=str(job.id), worker="w1")
    with django_assert_num_queries(4):  # SAVEPOINT, UPDATE job (fenced), INSERT attempt, RELEASE
        assert services.job_succeed(claim=claim, result={"ok": True})
    assert JobAttempt.objects.get(job_id=job.id).outcome == "succeeded"


def test_a_heartbeat_costs_one_update(job, django_assert_num_queries):
    claim = services.job_claim(job_id=str(job.id), worker="w1")
    with django_assert_num_queries(1):
        assert services.job_heartbeat(claim=claim)
