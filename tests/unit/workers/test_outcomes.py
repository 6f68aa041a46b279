"""What Celery hears of each attempt (workers.outcomes): the task ends as its attempt ended, and
every message of a job carries the job's id as its task id. The real worker and Flower are in
tests/integration/test_flower.py."""

from __future__ import annotations

import base64
import json
import logging
import pickle
import uuid
from typing import Any

import pytest
import redis
from celery import states
from celery.app.trace import get_log_policy, log_policy_expected
from celery.exceptions import Ignore, Retry
from django.conf import settings

from apps.jobs import lifecycle
from apps.jobs.publish import publish_jobs_rollback_unsafe
from workers.outcomes import AttemptFailed, JobDeferred, Outcome, report


@pytest.fixture
def task() -> Any:
    from config.celery import app
    from workers import tasks  # noqa: F401  (registers one task per kind)

    return app.tasks["diagnostics.flaky"]


def failure(error_type: str = "ValueError", message: str = "boom") -> lifecycle.AttemptFailure:
    return lifecycle.AttemptFailure(error_type, message, "Traceback ...")


def test_a_succeeded_attempt_returns(task):
    assert report(task, Outcome("succeeded")) == "succeeded"


def test_an_attempt_that_failed_for_good_raises_its_handlers_error_as_celery_will_show_it(task):
    with pytest.raises(AttemptFailed) as raised:
        report(task, Outcome("failed", failure("ValueError", "boom")))

    # The task-failed event's `exception` is this repr; Flower shows it as the error.
    assert repr(raised.value) == "ValueError('boom')"
    # It crosses from the pool process to the worker's main process as it is.
    assert repr(pickle.loads(pickle.dumps(raised.value))) == "ValueError('boom')"


def test_celery_logs_a_failed_attempt_at_info_without_a_second_traceback(task):
    """The runtime has logged the attempt; the tracer's 'raised unexpected' would log it again
    at ERROR with a traceback of the runtime, not of the handler."""
    exc = AttemptFailed("ValueError", "boom")

    assert isinstance(exc, task.throws)
    assert get_log_policy(task, einfo=type("Info", (), {"internal": False})(), exc=exc) is log_policy_expected
    assert log_policy_expected.severity == logging.INFO
    assert not log_policy_expected.traceback


def test_a_retrying_attempt_raises_retry_with_its_error_and_publishes_nothing(task, monkeypatch):
    monkeypatch.setattr(task, "apply_async", lambda *a, **k: pytest.fail("Retry must not republish"))

    with pytest.raises(Retry) as raised:
        report(task, Outcome("retrying", failure("RetryableError", "try later")))

    assert repr(raised.value.exc) == "RetryableError('try later')"
    assert repr(pickle.loads(pickle.dumps(raised.value)).exc) == "RetryableError('try later')"


def test_a_deferred_job_shows_as_waiting_for_its_next_delivery(task):
    with pytest.raises(Retry) as raised:
        report(task, Outcome("deferred", reason="at its rate limit; due again in 0.50 s"))

    assert isinstance(raised.value.exc, JobDeferred)
    assert "rate limit" in repr(raised.value.exc)


@pytest.mark.parametrize("status", ["dropped", "stale"])
def test_a_dropped_or_stale_message_sends_no_state_over_the_jobs_own(task, status):
    with pytest.raises(Ignore):
        report(task, Outcome(status, failure() if status == "stale" else None))


def test_a_cancelled_attempt_shows_as_revoked(task):
    job_id = str(uuid.uuid4())
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("*celeryev*")
    pubsub.get_message(timeout=1)
    task.push_request(id=job_id, hostname="celery@test")
    try:
        with pytest.raises(Ignore):  # the worker then sends nothing more for the message
            report(task, Outcome("cancelled", lifecycle.AttemptFailure("JobCancelled", "cancelled", cancelled=True)))
        events = []
        while (message := pubsub.get_message(timeout=1)) is not None:
            if message["type"] == "pmessage":
                events.append(json.loads(base64.b64decode(json.loads(message["data"])["body"])))
    finally:
        task.pop_request()
        pubsub.close()
        client.close()

    (event,) = [e for e in events if e["uuid"] == job_id]
    assert (event["type"], event["hostname"], event["terminated"]) == ("task-revoked", "celery@test", False)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("payload", "state"),
    [
        ({"fail_times": 0}, states.SUCCESS),
        ({"fail_times": 1}, states.RETRY),
        ({"fail_times": 1, "permanent": True}, states.FAILURE),
    ],
)
def test_the_task_ends_in_the_state_of_its_attempt_after_the_outcome_is_committed(user, task, payload, state):
    job = lifecycle.job_submit(owner=user, kind="diagnostics.flaky", payload=payload)

    result = task.apply(args=[str(job.id)], task_id=str(job.id), throw=False)

    assert result.state == state
    job.refresh_from_db()
    assert job.status == {states.SUCCESS: "succeeded", states.RETRY: "retrying", states.FAILURE: "failed"}[state]
    if state == states.FAILURE:
        assert repr(result.result) == "PermanentError('failing on purpose, attempt 1 of the first 1')"


def test_every_publish_of_a_job_carries_the_jobs_id_as_its_task_id(db):
    job_id = str(uuid.uuid4())
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("low")
    try:
        for _ in range(2):  # the first publish, then the relay's or a retry's
            assert publish_jobs_rollback_unsafe([(job_id, "diagnostics.noop", "low", "")]) == [job_id]
        messages = [json.loads(raw) for raw in client.lrange("low", 0, -1)]
    finally:
        client.delete("low")
        client.close()

    assert [(m["headers"]["id"], m["headers"]["root_id"]) for m in messages] == [(job_id, job_id)] * 2
    # Each publish is still its own delivery, which the hard-time-limit fence tells apart.
    tags = {m["properties"]["delivery_tag"] for m in messages}
    assert len(tags) == 2
    seeds = {lifecycle.lease_seed(task_id=job_id, delivery=tag, worker="w", pid=1) for tag in tags}
    assert len(seeds) == 2
