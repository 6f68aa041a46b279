"""The layers above jobs follow it through signals sent inside the transaction that writes a
job's change: a failed job is parked, a requeued one's letter closed, a finished one's webhook
delivery created, each committing (or rolling back) with the change itself."""

from __future__ import annotations

import pytest
from django.db import transaction

from apps.deadletters.models import DeadLetter
from apps.jobs import lifecycle, operations, signals
from apps.jobs.lifecycle import AttemptFailure
from apps.jobs.models import Job, JobStatus
from apps.webhooks import services as webhooks
from tests.factories import UserFactory

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def allow_private(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    return settings


def claimed(user, **options) -> lifecycle.Claim:
    job = lifecycle.job_submit(owner=user, kind="diagnostics.flaky", payload={"fail_times": 9}, **options)
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    assert claim is not None
    return claim


def fail(claim: lifecycle.Claim) -> None:
    failure = AttemptFailure("Boom", "it broke", permanent=True)
    assert lifecycle.job_fail_attempt(claim=claim, failure=failure) == "failed"


def test_a_job_is_parked_before_its_failure_commits(user, django_capture_on_commit_callbacks):
    claim = claimed(user)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        fail(claim)
        letter = DeadLetter.objects.get(job_id=claim.job_id)

    assert letter.state == DeadLetter.State.OPEN
    assert callbacks  # the dead_letter queue's message and the followers wait for the commit


def test_a_failure_rolled_back_leaves_no_letter(user):
    claim = claimed(user)

    def fail_then_roll_back() -> None:
        with transaction.atomic():
            fail(claim)
            raise RuntimeError("the failing transaction rolls back")

    with pytest.raises(RuntimeError):
        fail_then_roll_back()

    assert not DeadLetter.objects.filter(job_id=claim.job_id).exists()
    assert Job.objects.get(id=claim.job_id).status == JobStatus.RUNNING


def test_retrying_a_failed_job_closes_its_letter_as_redriven(user):
    claim = claimed(user)
    fail(claim)

    assert operations.job_retry(job_id=claim.job_id, actor="admin-1")

    letter = DeadLetter.objects.get(job_id=claim.job_id)
    assert (letter.state, letter.resolved_by) == (DeadLetter.State.REDRIVEN, "admin-1")
    assert letter.resolved_at is not None
    assert Job.objects.get(id=claim.job_id).status == JobStatus.QUEUED


def test_requeueing_sends_job_requeued_inside_the_transaction(user):
    claim = claimed(user)
    fail(claim)
    seen = []

    def receiver(sender, *, job, actor, now, **kwargs):
        seen.append((str(job.id), actor, transaction.get_connection().in_atomic_block))

    signals.job_requeued.connect(receiver)
    try:
        assert operations.job_retry(job_id=claim.job_id, actor="a")
    finally:
        signals.job_requeued.disconnect(receiver)

    assert seen == [(claim.job_id, "a", True)]


def test_a_webhook_delivery_is_created_before_the_finish_commits(
    user, allow_private, django_capture_on_commit_callbacks
):
    job = lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={}, callback_url=HOOK)
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    assert claim is not None

    with django_capture_on_commit_callbacks(execute=False):
        assert lifecycle.job_succeed(claim=claim, result={})
        delivery = Job.objects.get(kind=webhooks.DELIVER_KIND)

    assert delivery.payload == {"job_id": str(job.id), "url": HOOK, "event": "job.finished"}


def test_a_finish_rolled_back_takes_its_webhook_delivery_along(user, allow_private):
    job = lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={}, callback_url=HOOK)

    def cancel_then_roll_back() -> None:
        with transaction.atomic():
            lifecycle.job_cancel(job=job)
            raise RuntimeError("the finishing transaction rolls back")

    with pytest.raises(RuntimeError):
        cancel_then_roll_back()

    assert not Job.objects.filter(kind=webhooks.DELIVER_KIND).exists()
    assert Job.objects.get(id=job.id).status == JobStatus.QUEUED
