"""Pausing a queue or a kind (apps.jobs.pauses), driven as plain functions: the services, the
publishers that leave paused jobs off the broker, the claim that refuses them, the worker that
hands a message's job back without spending an attempt, and resume."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.errors import NotFound
from apps.core.redis import redis_client
from apps.jobs import lifecycle, pauses, reconciler, stranded
from apps.jobs.models import Job, JobAttempt, JobStatus, Pause
from tests.factories import JobFactory, UserFactory
from tests.helpers.api import queued_job_ids
from tests.helpers.jobs import submitted


def run(job: Job) -> str:
    from config.celery import app
    from workers import tasks  # noqa: F401  (registers one task per kind)
    from workers.runtime import run_attempt

    return run_attempt(app.tasks[job.kind], str(job.id)).status


# --- the services --------------------------------------------------------------------------


def test_pausing_twice_keeps_one_pause_and_resuming_twice_is_harmless(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = pauses.queue_pause(name="default", actor="ops")
        again = pauses.queue_pause(name="default", actor="someone else")

    assert first.paused
    assert again.paused
    assert again.paused_by == "ops"  # the first pause stands
    assert Pause.objects.filter(target_type="queue", name="default").count() == 1
    assert pauses.pause_set() == pauses.PauseSet(queues=frozenset({"default"}))

    with django_capture_on_commit_callbacks(execute=True):
        assert not pauses.queue_resume(name="default").paused
        assert not pauses.queue_resume(name="default").paused
    assert not Pause.objects.exists()
    assert pauses.pause_set() == pauses.PauseSet()


def test_an_unknown_queue_or_kind_cannot_be_paused(db):
    with pytest.raises(NotFound) as queue:
        pauses.queue_pause(name="nope")
    with pytest.raises(NotFound) as kind:
        pauses.kind_resume(name="no.such.kind")

    assert (queue.value.code, kind.value.code) == ("unknown_queue", "unknown_kind")
    assert not Pause.objects.exists()


def test_every_process_reads_the_pauses_from_redis_at_most_once_a_second(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        pauses.kind_pause(name="diagnostics.sleep")
    assert pauses.pause_set().kinds == {"diagnostics.sleep"}

    redis_client().delete(pauses.PAUSES_KEY)  # what another process sees at once; this one, a second later
    assert pauses.pause_set().kinds == {"diagnostics.sleep"}
    pauses.pause_cache_forget()
    assert pauses.pause_set().kinds == frozenset()
    # The reconciler's sweep writes the key back from PostgreSQL.
    assert reconciler.reconcile()["paused"] == 1
    pauses.pause_cache_forget()
    assert pauses.pause_set().kinds == {"diagnostics.sleep"}


# --- submit, relay and the broker ----------------------------------------------------------


def test_a_job_of_a_paused_queue_is_accepted_and_stays_off_the_broker(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        pauses.queue_pause(name="default")
        held = submitted(user)
        other = submitted(user, priority="low")

    held.refresh_from_db()
    other.refresh_from_db()
    assert (held.status, held.published_at, held.attempts) == (JobStatus.QUEUED, None, 0)
    assert str(held.id) not in queued_job_ids("default")
    assert other.published_at is not None  # another queue runs on


def test_a_job_of_a_paused_kind_is_accepted_and_stays_off_the_broker(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        pauses.kind_pause(name="diagnostics.noop")
        held = submitted(user)
        other = submitted(user, "diagnostics.sleep", {"seconds": 0})

    held.refresh_from_db()
    other.refresh_from_db()
    assert held.published_at is None
    assert other.published_at is not None


def test_the_relay_leaves_paused_jobs_in_postgresql_until_resume(user, django_capture_on_commit_callbacks):
    old = timezone.now() - timedelta(minutes=5)
    held = JobFactory(owner=user, queue="default", kind="diagnostics.noop", created_at=old)
    other = JobFactory(owner=user, queue="low", kind="diagnostics.noop", created_at=old)
    with django_capture_on_commit_callbacks(execute=True):
        pauses.queue_pause(name="default")

    assert reconciler.jobs_relay_unpublished(now=timezone.now()) == 1
    held.refresh_from_db()
    other.refresh_from_db()
    assert held.published_at is None
    assert other.published_at is not None

    # Resume publishes the held jobs at once, not on the relay's next sweep.
    with django_capture_on_commit_callbacks(execute=True):
        pauses.queue_resume(name="default")
    held.refresh_from_db()
    assert held.published_at is not None
    assert str(held.id) in queued_job_ids("default")


def test_resuming_a_queue_leaves_the_jobs_a_paused_kind_still_holds(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        pauses.queue_pause(name="default")
        pauses.kind_pause(name="diagnostics.noop")
        noop = submitted(user)
        sleep = submitted(user, "diagnostics.sleep", {"seconds": 0})
        pauses.queue_resume(name="default")

    noop.refresh_from_db()
    sleep.refresh_from_db()
    assert noop.published_at is None
    assert sleep.published_at is not None


def test_the_broker_loss_repair_marks_paused_jobs_unpublished_instead_of_sending_them(
    user, django_capture_on_commit_callbacks
):
    published = timezone.now() - timedelta(minutes=1)
    held = JobFactory(owner=user, queue="default", published_at=published)
    other = JobFactory(owner=user, queue="low", published_at=published)
    with django_capture_on_commit_callbacks(execute=True):
        pauses.queue_pause(name="default")
    redis_client().delete(reconciler.BROKER_SENTINEL_KEY)

    assert reconciler.jobs_repair_broker_loss() == 1
    held.refresh_from_db()
    assert held.published_at is None  # the relay sends it after the resume
    assert str(other.id) in queued_job_ids("low")


def test_the_stranded_sweep_leaves_a_paused_jobs_message_alone(user, settings, django_capture_on_commit_callbacks):
    settings.STRANDED_GRACE_SECONDS = 1
    long_ago = timezone.now() - timedelta(minutes=1)
    held = JobFactory(owner=user, queue="default", kind="diagnostics.noop", published_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):
        pauses.kind_pause(name="diagnostics.noop")

    assert stranded.jobs_republish_stranded(queues=["default"]) == 0
    held.refresh_from_db()
    assert held.published_at == long_ago


# --- the worker ----------------------------------------------------------------------------


def test_the_claim_refuses_a_job_of_a_paused_queue_in_its_one_statement(
    user, django_assert_num_queries, django_capture_on_commit_callbacks
):
    job = submitted(user)
    with django_capture_on_commit_callbacks(execute=True):
        pauses.queue_pause(name="default")

    with django_assert_num_queries(1):
        assert lifecycle.job_claim(job_id=str(job.id), worker="w1") is None
    with django_capture_on_commit_callbacks(execute=True):
        pauses.queue_resume(name="default")
    assert lifecycle.job_claim(job_id=str(job.id), worker="w1") is not None


# The runtime closes a connection left in a transaction: these run outside the test's own.
@pytest.mark.django_db(transaction=True)
def test_a_message_published_before_the_pause_is_handed_back_without_spending_an_attempt():
    job = submitted(UserFactory())  # on the broker already
    pauses.queue_pause(name="default")

    assert run(job) == "deferred"

    job.refresh_from_db()
    assert (job.status, job.attempts, job.published_at, job.run_at) == (JobStatus.QUEUED, 0, None, None)
    assert not JobAttempt.objects.filter(job=job).exists()
    assert reconciler.jobs_relay_unpublished(now=timezone.now() + timedelta(minutes=1)) == 0

    pauses.queue_resume(name="default")
    job.refresh_from_db()
    assert job.published_at is not None
    assert run(job) == "succeeded"
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_message_is_still_dropped():
    job = submitted(UserFactory())
    assert run(job) == "succeeded"

    assert run(job) == "dropped"


def test_a_message_whose_job_was_resumed_meanwhile_goes_back_to_the_relay(user):
    job = submitted(user)

    # The claim refused it under a pause lifted since: nothing holds it now.
    assert pauses.job_hand_back(job_id=str(job.id)) is False
    job.refresh_from_db()
    assert job.published_at is None
    assert reconciler.jobs_relay_unpublished(now=timezone.now() + timedelta(minutes=1)) == 1
