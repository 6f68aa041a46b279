"""The worker's side of a job (apps.jobs.lifecycle.attempt), called as plain functions against the
real database and the private Redis: the claim and its lease, success, failure and retry, a
dead letter after the last attempt, recorded steps, and the fence against a stale attempt."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.deadletters.models import DeadLetter
from apps.jobs import lifecycle, reconciler
from apps.jobs.lifecycle import AttemptFailure
from apps.jobs.models import Job, JobAttempt, JobStatus, JobStep
from tests.factories import JobFactory, UserFactory
from tests.helpers.jobs import attempts_of, broker_messages, claim, submitted


def requeue(job: Job) -> None:
    """Let the backoff elapse (moved into the past, not waited for), then run the
    reconciler's promotion."""
    job.refresh_from_db()
    assert job.status == JobStatus.RETRYING
    Job.objects.filter(id=job.id).update(run_at=timezone.now() - timedelta(milliseconds=1))
    assert reconciler.jobs_promote_due(now=timezone.now()) == 1


def test_claiming_a_queued_job_makes_it_running_with_an_attempt_and_a_lease(user):
    job = submitted(user, "diagnostics.sleep", {"seconds": 1})
    before = timezone.now()

    c = claim(job, worker="celery@host-a")

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert job.attempts == 1
    assert str(job.lease_token) == c.lease_token
    assert job.lease_expires_at >= before + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    assert job.worker == "celery@host-a"
    assert job.started_at >= before
    assert (c.job_id, c.kind, c.payload, c.attempt, c.max_attempts) == (
        str(job.id),
        "diagnostics.sleep",
        {"seconds": 1},
        1,
        3,
    )
    assert attempts_of(job) == []  # an attempt's row is written when it ends


def test_a_duplicate_message_finds_nothing_to_claim(user):
    job = submitted(user)
    claim(job)

    assert lifecycle.job_claim(job_id=str(job.id), worker="worker-2") is None
    job.refresh_from_db()
    assert job.attempts == 1
    assert job.worker == "worker-1"
    assert attempts_of(job) == []


@pytest.mark.parametrize("status", [JobStatus.CANCELLED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RETRYING])
def test_a_job_that_is_not_queued_cannot_be_claimed(user, status):
    job = JobFactory(owner=user, status=status)

    assert lifecycle.job_claim(job_id=str(job.id), worker="w") is None
    job.refresh_from_db()
    assert job.status == status
    assert job.attempts == 0
    assert not JobAttempt.objects.filter(job=job).exists()


def test_a_job_that_does_not_exist_cannot_be_claimed(db):
    assert lifecycle.job_claim(job_id=str(uuid.uuid4()), worker="w") is None


def test_a_job_whose_run_at_is_still_ahead_cannot_be_claimed_yet(user):
    later = submitted(user, run_at=timezone.now() + timedelta(minutes=5))
    due = JobFactory(owner=user, run_at=timezone.now() - timedelta(seconds=1))

    assert lifecycle.job_claim(job_id=str(later.id), worker="w") is None
    assert lifecycle.job_claim(job_id=str(due.id), worker="w") is not None


def test_succeeding_records_the_result_and_closes_the_attempt(user):
    job = submitted(user)
    c = claim(job)

    assert lifecycle.job_succeed(claim=c, result={"made": 3}) is True

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"made": 3}
    assert job.finished_at is not None
    assert job.lease_token is None
    assert job.progress_percent == 100.0
    attempt = JobAttempt.objects.get(job=job)
    assert attempt.outcome == JobAttempt.Outcome.SUCCEEDED
    assert attempt.finished_at == job.finished_at
    assert attempt.duration_ms is not None
    assert lifecycle.job_claim(job_id=str(job.id), worker="w") is None  # a succeeded job never runs again


def test_a_stale_attempt_cannot_write_over_the_attempt_that_replaced_it(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 0})
    old = claim(job, worker="zombie")
    Job.objects.filter(id=job.id).update(status=JobStatus.QUEUED)  # its lease was handed on
    new = claim(job, worker="worker-2")
    assert lifecycle.job_report_progress(claim=new, percent=40, message="halfway")

    assert lifecycle.job_succeed(claim=old, result={"from": "zombie"}) is False
    assert lifecycle.job_fail_attempt(claim=old, failure=AttemptFailure("Boom", "late")) == "stale"
    assert lifecycle.job_heartbeat(claim=old) is False
    assert lifecycle.job_report_progress(claim=old, percent=99) is False

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert str(job.lease_token) == new.lease_token
    assert job.worker == "worker-2"
    assert job.result is None
    assert job.error_type == ""
    assert (job.progress_percent, job.progress_message) == (40.0, "halfway")
    assert attempts_of(job) == []  # the zombie wrote nothing, not even its attempt
    assert lifecycle.job_heartbeat(claim=new) is True
    assert lifecycle.job_succeed(claim=new, result={"from": "worker-2"}) is True
    assert attempts_of(job) == [(2, "succeeded")]


def test_a_retryable_failure_waits_out_a_backoff_then_retries(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 1})
    c = claim(job)
    before = timezone.now()

    status = lifecycle.job_fail_attempt(
        claim=c, failure=AttemptFailure("RetryableError", "try later", "Traceback: ...")
    )

    assert status == "retrying"
    job.refresh_from_db()
    assert job.status == JobStatus.RETRYING
    assert job.attempts == 1
    base = settings.JOB_RETRY_BASE_SECONDS
    assert before + timedelta(seconds=base / 2) <= job.run_at <= timezone.now() + timedelta(seconds=base)
    assert job.published_at is None
    assert job.lease_token is None
    assert (job.error_type, job.error_message, job.error_traceback) == ("RetryableError", "try later", "Traceback: ...")
    attempt = JobAttempt.objects.get(job=job)
    assert (attempt.outcome, attempt.error_type, attempt.error_message) == ("failed", "RetryableError", "try later")
    assert not DeadLetter.objects.exists()
    assert lifecycle.job_claim(job_id=str(job.id), worker="w") is None  # not before its backoff


def test_a_job_is_parked_as_a_dead_letter_after_its_last_attempt(user, django_capture_on_commit_callbacks):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 9}, max_attempts=3)
    statuses = []
    for attempt in range(1, 4):
        c = claim(job)
        assert c.attempt == attempt
        with django_capture_on_commit_callbacks(execute=True):
            statuses.append(
                lifecycle.job_fail_attempt(claim=c, failure=AttemptFailure("RetryableError", f"failure {attempt}"))
            )
        if attempt < 3:
            requeue(job)

    assert statuses == ["retrying", "retrying", "failed"]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.attempts == 3
    assert job.finished_at is not None
    letter = DeadLetter.objects.get(job=job)
    assert letter.state == DeadLetter.State.OPEN
    assert (letter.kind, letter.payload, letter.attempts) == ("diagnostics.flaky", {"fail_times": 9}, 3)
    assert letter.error_message == "failure 3"
    assert [(e["attempt"], e["outcome"], e["error_message"]) for e in letter.errors] == [
        (1, "failed", "failure 1"),
        (2, "failed", "failure 2"),
        (3, "failed", "failure 3"),
    ]
    mirrored = [m for m in broker_messages("dead_letter") if m["args"][1] == str(job.id)]
    assert mirrored == [
        {"task": "platform.dead_letter", "args": [letter.pk, str(job.id), "diagnostics.flaky"], "kwargs": {}}
    ]


def test_a_permanent_error_fails_the_job_at_once_with_a_dead_letter(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 1, "permanent": True})
    c = claim(job)

    status = lifecycle.job_fail_attempt(claim=c, failure=AttemptFailure("PermanentError", "bad", permanent=True))

    assert status == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    assert job.max_attempts == 5
    assert attempts_of(job) == [(1, "permanent")]
    letter = DeadLetter.objects.get(job=job)
    assert (letter.error_type, letter.attempts, len(letter.errors)) == ("PermanentError", 1, 1)


def test_a_recorded_step_runs_once_and_a_retry_gets_its_result_back(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 1})
    calls = []

    def charge() -> dict[str, Any]:
        calls.append(1)
        return {"charge_id": f"ch_{len(calls)}"}

    first = claim(job)
    assert lifecycle.job_step_once(claim=first, name="charge", effect=charge) == {"charge_id": "ch_1"}
    lifecycle.job_fail_attempt(claim=first, failure=AttemptFailure("RetryableError", "after the charge"))
    requeue(job)
    second = claim(job)

    assert lifecycle.job_step_once(claim=second, name="charge", effect=charge) == {"charge_id": "ch_1"}
    assert lifecycle.job_step_once(claim=second, name="refund-check", effect=lambda: None) is None
    assert len(calls) == 1
    step = JobStep.objects.get(job=job, name="charge")
    assert (step.attempt, step.result) == (1, {"charge_id": "ch_1"})


@pytest.mark.django_db(transaction=True)
def test_a_steps_record_survives_its_connection_dying_after_the_effect():
    """PostgreSQL drops the worker's connection between the effect and its record (a restart,
    a failover): the record is written on a new connection, so a retry does not repeat it."""
    job = submitted(UserFactory(), "diagnostics.flaky", {"fail_times": 1})
    first = claim(job)
    calls = []

    def charge_then_lose_the_connection() -> dict[str, Any]:
        calls.append(1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        with psycopg.connect(tests_database_dsn(), autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        return {"charge_id": "ch_1"}

    assert lifecycle.job_step_once(claim=first, name="charge", effect=charge_then_lose_the_connection) == {
        "charge_id": "ch_1"
    }
    lifecycle.job_fail_attempt(claim=first, failure=AttemptFailure("RetryableError", "after the charge"))
    requeue(job)
    second = claim(job)

    assert lifecycle.job_step_once(claim=second, name="charge", effect=charge_then_lose_the_connection) == {
        "charge_id": "ch_1"
    }
    assert len(calls) == 1


def tests_database_dsn() -> str:
    s = connection.settings_dict
    return f"host={s['HOST'] or '127.0.0.1'} port={s['PORT'] or 5432} user={s['USER']} dbname={s['NAME']}"


def test_a_step_with_a_long_name_still_runs_only_once(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 1})
    name = "send-invoice-" + "x" * 250
    calls = []
    first = claim(job)
    lifecycle.job_step_once(claim=first, name=name, effect=lambda: calls.append(1) or len(calls))
    lifecycle.job_fail_attempt(claim=first, failure=AttemptFailure("RetryableError", "after the step"))
    requeue(job)
    second = claim(job)

    lifecycle.job_step_once(claim=second, name=name, effect=lambda: calls.append(1) or len(calls))

    assert len(calls) == 1
