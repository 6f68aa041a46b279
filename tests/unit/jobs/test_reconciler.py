"""The reconciler (apps.jobs.reconciler), called as plain functions: retries promoted once their
backoff ends, expired leases given another attempt or parked, and the outbox relay."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from apps.deadletters.models import DeadLetter
from apps.jobs import reconciler
from apps.jobs.models import JobAttempt, JobStatus
from tests.factories import JobFactory
from tests.helpers.jobs import attempts_of, broker_messages, claim, submitted


def test_the_reconciler_promotes_retries_whose_backoff_ended(user):
    now = timezone.now()
    due = JobFactory(
        owner=user,
        status=JobStatus.RETRYING,
        run_at=now - timedelta(seconds=1),
        published_at=now - timedelta(minutes=1),
    )
    waiting = JobFactory(owner=user, status=JobStatus.RETRYING, run_at=now + timedelta(minutes=1))
    running = JobFactory(owner=user, status=JobStatus.RUNNING, run_at=now - timedelta(minutes=1))

    assert reconciler.jobs_promote_due(now=now) == 1

    for job in (due, waiting, running):
        job.refresh_from_db()
    assert due.status == JobStatus.QUEUED
    assert due.published_at is None  # the relay publishes it next
    assert waiting.status == JobStatus.RETRYING
    assert running.status == JobStatus.RUNNING


def test_the_reconciler_gives_a_job_whose_lease_expired_another_attempt(user):
    job = submitted(user, "diagnostics.flaky", {"fail_times": 0})
    claim(job, worker="celery@dead-host")
    job.refresh_from_db()

    assert reconciler.jobs_expire_leases(now=job.lease_expires_at - timedelta(seconds=1)) == 0
    assert reconciler.jobs_expire_leases(now=job.lease_expires_at + timedelta(seconds=1)) == 1

    job.refresh_from_db()
    assert job.status == JobStatus.RETRYING
    assert job.attempts == 1
    assert job.lease_token is None
    assert job.run_at is not None
    assert job.error_type == "WorkerLost"
    attempt = JobAttempt.objects.get(job=job)
    assert attempt.outcome == JobAttempt.Outcome.LOST
    assert "celery@dead-host" in attempt.error_message
    assert not DeadLetter.objects.exists()


def test_the_reconciler_parks_a_job_whose_lease_expired_on_its_last_attempt(user):
    job = submitted(user, "diagnostics.noop", max_attempts=1)
    claim(job)
    job.refresh_from_db()

    assert reconciler.jobs_expire_leases(now=job.lease_expires_at + timedelta(seconds=1)) == 1

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert attempts_of(job) == [(1, "lost")]
    letter = DeadLetter.objects.get(job=job)
    assert letter.error_type == "WorkerLost"
    assert letter.errors[0]["outcome"] == "lost"


def test_the_relay_publishes_a_committed_job_whose_publish_never_happened(user):
    # Unpublished is also how a job waits for its turn in the queue's window
    # (apps.jobs.dispatch), so the relay sends a fresh one too: a duplicate of a publish still
    # on its way is dropped by the claim.
    now = timezone.now()
    old = JobFactory(owner=user, kind="diagnostics.noop", queue="low", created_at=now - timedelta(minutes=5))
    fresh = JobFactory(owner=user, created_at=now)
    scheduled = JobFactory(owner=user, created_at=now - timedelta(hours=1), run_at=now + timedelta(hours=1))
    published = JobFactory(owner=user, created_at=now - timedelta(hours=1), published_at=now - timedelta(hours=1))

    assert reconciler.jobs_relay_unpublished(now=now) == 2

    for job in (old, fresh):
        job.refresh_from_db()
        assert job.published_at is not None
    assert [m["task"] for m in broker_messages("low") if m["args"] == [str(old.id)]] == ["diagnostics.noop"]
    assert [m["args"] for m in broker_messages(fresh.queue) if m["args"] == [str(fresh.id)]] == [[str(fresh.id)]]
    scheduled.refresh_from_db()
    assert scheduled.published_at is None
    published.refresh_from_db()
    assert published.published_at == now - timedelta(hours=1)


def test_the_relay_publishes_a_scheduled_job_once_it_is_due(user):
    now = timezone.now()
    job = submitted(user, run_at=now + timedelta(minutes=10))

    assert reconciler.jobs_relay_unpublished(now=now) == 0
    assert reconciler.jobs_relay_unpublished(now=now + timedelta(minutes=11)) == 1

    job.refresh_from_db()
    assert job.published_at is not None
    assert [m["args"] for m in broker_messages("default") if m["args"] == [str(job.id)]] == [[str(job.id)]]
