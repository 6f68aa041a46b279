"""Pruning's other half: expired idempotency keys go and live ones stay, and every step keeps
to its batch limits (a sweep deletes at most PRUNE_BATCH_SIZE keys or letters, and at most
max_batches batches of jobs), leaving the rest for the next sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.deadletters.models import DeadLetter
from apps.jobs import retention
from apps.jobs.models import IdempotencyKey, Job, JobAttempt, JobStatus
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def retention_settings(settings):
    settings.JOB_RETENTION_DAYS = 7
    settings.DEAD_LETTER_RETENTION_DAYS = 30
    return settings


def keys(count: int, age: timedelta, prefix: str) -> list[IdempotencyKey]:
    owner = UserFactory()
    return [
        IdempotencyKey.objects.create(
            owner=owner,
            key=f"{prefix}-{i}",
            fingerprint="f",
            job=JobFactory(owner=owner),
            created_at=timezone.now() - age,
        )
        for i in range(count)
    ]


def old_finished_jobs(count: int) -> list[Job]:
    when = timezone.now() - timedelta(days=40)
    jobs = [JobFactory(status=JobStatus.SUCCEEDED, attempts=1, started_at=when, finished_at=when) for _ in range(count)]
    for job in jobs:
        JobAttempt.objects.create(job=job, number=1, started_at=when, finished_at=when, outcome="succeeded")
    return jobs


def test_expired_idempotency_keys_are_pruned_and_live_ones_kept_with_their_jobs(retention_settings):
    expired = keys(3, timedelta(hours=25), "expired")
    live = keys(2, timedelta(hours=23), "live")

    figures = retention.prune()

    assert figures["idempotency_keys"] == 3
    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {k.key for k in live}
    # A key's job is the job's to keep: pruning the key leaves the (queued) job alone.
    assert Job.objects.filter(id__in=[k.job_id for k in expired]).count() == 3


def test_a_sweep_prunes_at_most_one_batch_of_idempotency_keys(retention_settings):
    retention_settings.PRUNE_BATCH_SIZE = 2
    keys(5, timedelta(hours=25), "expired")

    sweeps = [retention.prune()["idempotency_keys"] for _ in range(4)]

    assert sweeps == [2, 2, 1, 0]
    assert not IdempotencyKey.objects.exists()


def test_jobs_are_pruned_in_batches_up_to_the_sweeps_limit(retention_settings):
    jobs = old_finished_jobs(5)

    first = retention.jobs_prune_finished(now=timezone.now(), batch=2, max_batches=2)

    assert first == 4
    (left,) = Job.objects.all()  # the rest, for the next sweep
    assert left.id in {job.id for job in jobs}
    assert JobAttempt.objects.filter(job_id=left.id).count() == 1
    assert retention.jobs_prune_finished(now=timezone.now(), batch=2, max_batches=2) == 1
    assert not Job.objects.exists()
    assert not JobAttempt.objects.exists()


def test_a_sweep_prunes_at_most_one_batch_of_resolved_dead_letters(retention_settings):
    retention_settings.PRUNE_BATCH_SIZE = 2
    resolved = timezone.now() - timedelta(days=40)
    for _ in range(3):
        # Letters long resolved on jobs still within their retention: the letters' own step prunes them.
        job = JobFactory(status=JobStatus.FAILED, finished_at=timezone.now() - timedelta(days=1))
        DeadLetter.objects.create(job=job, kind=job.kind, state=DeadLetter.State.DISCARDED, resolved_at=resolved)

    sweeps = [retention.prune()["dead_letters"] for _ in range(3)]

    assert sweeps == [2, 1, 0]
    assert not DeadLetter.objects.exists()
    assert Job.objects.count() == 3
