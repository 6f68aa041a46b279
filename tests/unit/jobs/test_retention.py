"""Pruning: old finished jobs and resolved dead letters go, with their history; a job that
is queued again between the pruner's read of its ids and its DELETE stays, and so does
everything a job with an open dead letter needs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.deadletters import retention as letter_retention
from apps.deadletters.models import DeadLetter
from apps.jobs import retention
from apps.jobs.models import Job, JobAttempt, JobStatus, JobStep
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def old(settings):
    """A moment past the job retention."""
    settings.JOB_RETENTION_DAYS = 7
    settings.DEAD_LETTER_RETENTION_DAYS = 30
    return timezone.now() - timedelta(days=40)


def finished_job(when, status=JobStatus.SUCCEEDED, **fields) -> Job:
    job = JobFactory(status=status, attempts=1, started_at=when, finished_at=when, **fields)
    JobAttempt.objects.create(job=job, number=1, started_at=when, finished_at=when, outcome="succeeded")
    JobStep.objects.create(job=job, name="charge", result={"ok": True}, attempt=1)
    return job


def letter(job: Job, state: str, resolved_at=None) -> DeadLetter:
    return DeadLetter.objects.create(job=job, kind=job.kind, state=state, resolved_at=resolved_at)


def test_it_prunes_old_finished_jobs_with_their_history_and_keeps_recent_or_active_ones(old):
    gone = finished_job(old)
    recent = finished_job(timezone.now() - timedelta(days=1))
    running = JobFactory(status=JobStatus.RUNNING, finished_at=old)

    figures = retention.prune()

    assert figures["jobs"] == 1
    assert not Job.objects.filter(id=gone.id).exists()
    assert not JobAttempt.objects.filter(job_id=gone.id).exists()
    assert not JobStep.objects.filter(job_id=gone.id).exists()
    assert set(Job.objects.values_list("id", flat=True)) == {recent.id, running.id}


def test_a_failed_job_with_an_open_dead_letter_is_kept_and_one_resolved_long_ago_goes(old):
    parked = finished_job(old, status=JobStatus.FAILED)
    open_letter = letter(parked, DeadLetter.State.OPEN)
    discarded = finished_job(old, status=JobStatus.FAILED)
    old_letter = letter(discarded, DeadLetter.State.DISCARDED, resolved_at=old)

    figures = retention.prune()

    assert figures["jobs"] == 1
    assert Job.objects.filter(id=parked.id).exists()
    assert DeadLetter.objects.filter(id=open_letter.id).exists()
    assert not Job.objects.filter(id=discarded.id).exists()
    assert not DeadLetter.objects.filter(id=old_letter.id).exists()


def test_a_job_retried_after_its_id_was_read_is_not_deleted(old, monkeypatch):
    """The race: the pruner reads a batch of ids, then a redrive queues one of those jobs
    again (its dead letter resolved, attempts kept), then the pruner deletes the batch."""
    stays = finished_job(old, status=JobStatus.FAILED)
    redriven_letter = letter(stays, DeadLetter.State.REDRIVEN, resolved_at=timezone.now())
    goes = finished_job(old)
    read = retention._job_ids_to_prune

    def read_then_retry(cutoff, batch):
        ids = read(cutoff, batch)
        assert set(ids) == {stays.id, goes.id}
        Job.objects.filter(id=stays.id).update(status=JobStatus.QUEUED, finished_at=None)
        return ids

    monkeypatch.setattr(retention, "_job_ids_to_prune", read_then_retry)

    deleted = retention.jobs_prune_finished(now=timezone.now(), batch=100, max_batches=1)

    assert deleted == 1
    assert not Job.objects.filter(id=goes.id).exists()
    stays.refresh_from_db()
    assert stays.status == JobStatus.QUEUED
    assert JobAttempt.objects.filter(job_id=stays.id).count() == 1, "the retried job's history was deleted"
    assert JobStep.objects.filter(job_id=stays.id).exists(), "a retry would run a recorded step again"
    assert DeadLetter.objects.filter(id=redriven_letter.id).exists()


def test_the_delete_itself_checks_status_and_cutoff(old, monkeypatch):
    """Every condition is in the statement that deletes, not only in the read before it:
    ids that do not qualify (still running, finished recently) survive even when handed in."""
    running = JobFactory(status=JobStatus.RUNNING, finished_at=old)
    recent = finished_job(timezone.now() - timedelta(days=1))
    parked = finished_job(old, status=JobStatus.FAILED)
    letter(parked, DeadLetter.State.OPEN)
    goes = finished_job(old)
    monkeypatch.setattr(
        retention, "_job_ids_to_prune", lambda cutoff, batch: [running.id, recent.id, parked.id, goes.id]
    )

    with CaptureQueriesContext(connection) as queries:
        deleted = retention.jobs_prune_finished(now=timezone.now(), batch=100, max_batches=1)

    assert deleted == 1
    assert set(Job.objects.values_list("id", flat=True)) == {running.id, recent.id, parked.id}
    delete = next(q["sql"] for q in queries.captured_queries if q["sql"].startswith('DELETE FROM "jobs_job"'))
    assert '"status" IN' in delete
    assert '"finished_at" <' in delete
    assert "EXISTS" in delete


def test_a_dead_letter_is_pruned_only_when_resolved_before_its_cutoff(old, monkeypatch):
    job = finished_job(old, status=JobStatus.FAILED)
    still_open = letter(job, DeadLetter.State.OPEN)
    resolved_lately = letter(finished_job(old), DeadLetter.State.REDRIVEN, resolved_at=timezone.now())
    goes = letter(finished_job(old), DeadLetter.State.DISCARDED, resolved_at=old)
    monkeypatch.setattr(
        letter_retention, "_letter_ids_to_prune", lambda cutoff, batch: [still_open.id, resolved_lately.id, goes.id]
    )

    assert letter_retention.dead_letters_prune_resolved(now=timezone.now(), batch=100) == 1

    assert set(DeadLetter.objects.values_list("id", flat=True)) == {still_open.id, resolved_lately.id}
