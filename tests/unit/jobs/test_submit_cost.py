"""What a submit's mark ("published") costs, and what it must not cost: the mark's commit does
not wait for the WAL flush (apps.jobs.publish._mark_published), and nothing else loses its
durability for it."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from apps.jobs.models import Job
from apps.jobs.publish import JobMessage, publish_jobs_rollback_unsafe
from tests.factories import UserFactory
from tests.helpers.jobs import broker_messages


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def _unpublished_job(user) -> Job:
    from apps.jobs.lifecycle import new_job
    from apps.jobs.lifecycle.store import jobs_insert

    job = new_job(user, kind="diagnostics.noop", payload={}, queue="default", max_attempts=1)
    jobs_insert([job])
    return job


@pytest.mark.django_db(transaction=True)
def test_a_submit_is_marked_published_and_the_next_submit_still_commits_durably():
    """A 202 means committed to disk: the mark's relaxed commit is its own transaction's, and
    the connection's next INSERT (the next request's job) commits with synchronous_commit on."""
    user = UserFactory()
    job = _unpublished_job(user)

    assert publish_jobs_rollback_unsafe([JobMessage.of(job)]) == [str(job.id)]

    job.refresh_from_db()
    assert job.published_at is not None
    assert str(job.id) in {m["args"][0] for m in broker_messages("default")}
    assert _synchronous_commit() == "on"


@pytest.mark.django_db(transaction=True)
def test_a_mark_inside_a_callers_transaction_leaves_that_transactions_commit_durable():
    """The reconciler republishes inside its own transaction: the mark there must not turn that
    transaction's commit (its other writes) asynchronous."""
    user = UserFactory()
    job = _unpublished_job(user)

    with transaction.atomic():
        assert publish_jobs_rollback_unsafe([JobMessage.of(job)]) == [str(job.id)]
        assert _synchronous_commit() == "on"

    job.refresh_from_db()
    assert job.published_at is not None


def test_a_batchs_messages_from_one_template_are_each_jobs_own_message():
    """A batch's messages are built from one text per (kind, request id, queue): each must be
    the message built for its job alone (held equal to Celery's own in test_batch.py), with a
    delivery tag of its own."""
    import json
    import uuid

    from apps.jobs.publish import _Messages, _redis_envelope

    messages = _Messages()
    jobs = [
        (str(uuid.uuid4()), kind, request_id, queue)
        for kind in ("diagnostics.noop", "diagnostics.sleep")
        for request_id in ("", "req-1")
        for queue in ("default", "low")
        for _ in range(2)
    ]
    tags = set()
    for job_id, kind, request_id, queue in jobs:
        templated = json.loads(messages.redis_envelope(kind, job_id, request_id, queue))
        headers, properties, body, _ = messages.build(kind, job_id, request_id)
        alone = json.loads(_redis_envelope(body, headers, {**properties, "delivery_mode": 2}, "", queue))
        tags.add(templated["properties"].pop("delivery_tag"))
        alone["properties"].pop("delivery_tag")
        assert templated == alone
    assert len(tags) == len(jobs)
