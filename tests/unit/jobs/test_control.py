"""Cancelling a job while it runs (apps.jobs.lifecycle.control): the attempt is asked to stop, and
ends cancelled rather than retried."""

from __future__ import annotations

from apps.deadletters.models import DeadLetter
from apps.jobs import lifecycle
from apps.jobs.lifecycle import AttemptFailure
from apps.jobs.models import JobStatus
from tests.helpers.jobs import attempts_of, claim, submitted


def test_cancelling_a_running_job_asks_and_the_attempt_ends_cancelled(user):
    job = submitted(user, "diagnostics.sleep", {"seconds": 60})
    c = claim(job)

    lifecycle.job_cancel(job=job)

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert job.cancel_requested_at is not None
    assert lifecycle.job_cancel_requested(claim=c) is True
    assert lifecycle.job_fail_attempt(claim=c, failure=AttemptFailure("JobCancelled", "stop", cancelled=True)) == (
        "cancelled"
    )
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.finished_at is not None
    assert attempts_of(job) == [(1, "cancelled")]
    assert not DeadLetter.objects.exists()


def test_a_failure_after_a_cancel_request_cancels_instead_of_retrying(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 3})
    c = claim(job)
    lifecycle.job_cancel(job=job)

    assert lifecycle.job_fail_attempt(claim=c, failure=AttemptFailure("RetryableError", "x")) == "cancelled"
    assert not DeadLetter.objects.exists()
