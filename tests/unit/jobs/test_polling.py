"""Cheap polling of one job: ETag and If-None-Match (304), Retry-After while it is not
finished, and the bounded long poll `?wait=N` woken by Redis pub/sub."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.jobs import lifecycle, notify
from apps.jobs.models import Job, JobStatus
from tests.factories import JobFactory

JOBS = "/api/v1/jobs"
# A conditional GET that matches: the token lookup and one narrow read of the job's version.
NOT_MODIFIED_QUERIES = 2


def detail(api: APIClient, job: Job, **headers: str) -> Any:
    return api.get(f"{JOBS}/{job.id}", **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()})


def touch(job: Job, **fields: Any) -> None:
    """Change a job as a worker would: its updated_at moves with it."""
    Job.objects.filter(id=job.id).update(updated_at=timezone.now(), **fields)


# --- ETag and If-None-Match -------------------------------------------------------------------


def test_a_job_answers_with_a_weak_etag(api, user):
    job = JobFactory(owner=user)

    response = detail(api, job)

    assert response.status_code == 200
    assert response["ETag"].startswith('W/"')
    assert response["Cache-Control"] == "private, no-cache"
    assert detail(api, job)["ETag"] == response["ETag"]


def test_polling_with_the_current_etag_answers_304_with_no_body(api, user, django_assert_num_queries):
    job = JobFactory(owner=user)
    etag = detail(api, job)["ETag"]

    with django_assert_num_queries(NOT_MODIFIED_QUERIES):
        response = detail(api, job, if_none_match=etag)

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag
    assert response["Retry-After"] == "1"


def test_the_etag_changes_when_the_job_does(api, user):
    job = JobFactory(owner=user)
    etag = detail(api, job)["ETag"]

    touch(job, status=JobStatus.RUNNING, started_at=timezone.now())
    response = detail(api, job, if_none_match=etag)

    assert response.status_code == 200
    assert response.json()["status"] == "running"
    assert response["ETag"] != etag


@pytest.mark.parametrize(
    "header",
    ['W/"stale", {etag}', "{etag}", "{strong}", "*"],
    ids=["one-of-a-list", "weak", "strong-form-compared-weakly", "star"],
)
def test_if_none_match_compares_weakly_and_accepts_lists(api, user, header):
    job = JobFactory(owner=user)
    etag = detail(api, job)["ETag"]

    response = detail(api, job, if_none_match=header.format(etag=etag, strong=etag.removeprefix("W/")))

    assert response.status_code == 304


def test_a_stale_etag_gets_the_job(api, user):
    job = JobFactory(owner=user)

    response = detail(api, job, if_none_match='W/"not-this-one"')

    assert response.status_code == 200
    assert response.json()["id"] == str(job.id)


# --- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
def test_a_queued_or_running_job_says_to_ask_again_in_a_second(api, user, status):
    job = JobFactory(owner=user, status=status)

    assert detail(api, job)["Retry-After"] == "1"


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_finished_job_has_no_retry_after(api, user, status):
    job = JobFactory(owner=user, status=status)

    response = detail(api, job)

    assert response.status_code == 200
    assert "Retry-After" not in response


def test_a_retrying_job_says_to_ask_again_when_its_backoff_ends(api, user):
    job = JobFactory(owner=user, status=JobStatus.RETRYING, run_at=timezone.now() + timedelta(seconds=7.5))

    assert detail(api, job)["Retry-After"] == "8"


def test_a_scheduled_job_says_when_it_is_due_but_never_more_than_the_ceiling(api, user):
    soon = JobFactory(owner=user, run_at=timezone.now() + timedelta(seconds=20))
    later = JobFactory(owner=user, run_at=timezone.now() + timedelta(days=2))
    overdue = JobFactory(owner=user, status=JobStatus.RETRYING, run_at=timezone.now() - timedelta(seconds=5))

    assert detail(api, soon)["Retry-After"] == "20"
    assert detail(api, later)["Retry-After"] == str(settings.RETRY_AFTER_MAX_SECONDS)
    assert detail(api, overdue)["Retry-After"] == "1"


# --- ?wait=N ----------------------------------------------------------------------------------


@pytest.mark.parametrize("wait", ["-1", "31", "abc", "nan", "inf", "1e9", "0x10"])
def test_a_wait_out_of_bounds_or_not_a_number_is_refused_with_400(api, user, wait):
    job = JobFactory(owner=user)

    response = api.get(f"{JOBS}/{job.id}", {"wait": wait})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_wait"
    assert response.json()["error"]["details"] == {"max_seconds": 30}


def test_wait_zero_answers_at_once(api, user):
    job = JobFactory(owner=user)

    started = time.monotonic()
    response = api.get(f"{JOBS}/{job.id}", {"wait": "0"})

    assert response.status_code == 200
    # "Did not wait" is bounded at a fraction of the wait a test could be caught in (the
    # shortest here is 5 s), never at a request's cost: a loaded 2-core machine can take a
    # second to answer any request.
    assert time.monotonic() - started < 4


def test_waiting_on_a_finished_job_answers_at_once(api, user):
    job = JobFactory(owner=user, status=JobStatus.SUCCEEDED)

    started = time.monotonic()
    response = api.get(f"{JOBS}/{job.id}", {"wait": "10"})

    assert response.status_code == 200
    assert time.monotonic() - started < 8  # well short of the 10 s asked: it did not wait


def test_waiting_when_the_client_already_holds_an_older_version_answers_at_once(api, user):
    job = JobFactory(owner=user, status=JobStatus.RUNNING)

    started = time.monotonic()
    response = api.get(f"{JOBS}/{job.id}", {"wait": "10"}, HTTP_IF_NONE_MATCH='W/"older"')

    assert response.status_code == 200
    assert time.monotonic() - started < 8  # well short of the 10 s asked: it did not wait


def client_for(user: Any) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def later(seconds: float, action: Any) -> threading.Thread:
    """Run `action` in another thread after `seconds` (with its own database connection)."""

    def run() -> None:
        time.sleep(seconds)
        try:
            action()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def finish(job: Job) -> None:
    touch(job, status=JobStatus.SUCCEEDED, finished_at=timezone.now(), result={"done": True})
    notify.job_changed_publish(job.id)


def test_a_long_poll_returns_as_soon_as_the_job_finishes(transactional_db, user):
    job = JobFactory(owner=user, status=JobStatus.RUNNING)
    api = client_for(user)

    thread = later(0.5, lambda: finish(job))
    started = time.monotonic()
    response = api.get(f"{JOBS}/{job.id}", {"wait": "10"})
    elapsed = time.monotonic() - started
    thread.join(5)

    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert 0.4 < elapsed < 8, elapsed  # woken by the change, well before the 10 s asked
    assert "Retry-After" not in response


def test_a_long_poll_with_the_current_etag_answers_304_when_nothing_changed(transactional_db, user):
    job = JobFactory(owner=user, status=JobStatus.RUNNING)
    api = client_for(user)
    etag = api.get(f"{JOBS}/{job.id}")["ETag"]

    started = time.monotonic()
    response = api.get(f"{JOBS}/{job.id}", {"wait": "1"}, HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 304
    assert 0.9 < time.monotonic() - started < 10  # it waited the second asked, and then answered


def test_a_long_poll_with_the_current_etag_wakes_with_the_change(transactional_db, user):
    job = JobFactory(owner=user, status=JobStatus.QUEUED)
    api = client_for(user)
    etag = api.get(f"{JOBS}/{job.id}")["ETag"]

    def start() -> None:
        touch(job, status=JobStatus.RUNNING, started_at=timezone.now())
        notify.job_changed_publish(job.id)

    thread = later(0.3, start)
    response = api.get(f"{JOBS}/{job.id}", {"wait": "10"}, HTTP_IF_NONE_MATCH=etag)
    thread.join(5)

    assert response.status_code == 200
    assert response.json()["status"] == "running"
    assert response["ETag"] != etag


def test_a_long_poll_waits_without_a_database_connection(transactional_db, user):
    job = JobFactory(owner=user, status=JobStatus.RUNNING)
    results: list[Any] = []

    def poll() -> None:
        try:
            results.append(client_for(user).get(f"{JOBS}/{job.id}", {"wait": "5"}))
        finally:
            connection.close()

    def other_backends() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]

    if connection.vendor != "postgresql":
        pytest.skip("reads pg_stat_activity")
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while notify.waiters_now() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)

    assert notify.waiters_now() == 1
    assert other_backends() == 0
    finish(job)
    thread.join(5)
    assert results[0].json()["status"] == "succeeded"


def test_past_the_waiter_bound_a_poll_answers_at_once(transactional_db, user, settings):
    settings.JOB_WAIT_MAX_WAITERS = 0
    job = JobFactory(owner=user, status=JobStatus.RUNNING)

    started = time.monotonic()
    response = client_for(user).get(f"{JOBS}/{job.id}", {"wait": "10"})

    assert response.status_code == 200
    assert time.monotonic() - started < 8  # well short of the 10 s asked: it did not wait


UNREACHABLE = "redis://127.0.0.1:1/0"


def test_with_redis_unreachable_a_poll_answers_at_once(transactional_db, user, settings):
    settings.REDIS_URL = UNREACHABLE
    job = JobFactory(owner=user, status=JobStatus.RUNNING)

    started = time.monotonic()
    response = client_for(user).get(f"{JOBS}/{job.id}", {"wait": "10"})

    assert response.status_code == 200
    assert response.json()["status"] == "running"
    assert time.monotonic() - started < 8  # well short of the 10 s asked: it did not wait


# --- who rings the doorbell -----------------------------------------------------------------


@pytest.fixture
def doorbell() -> Any:
    """Messages on job channels of the private Redis, as a waiter would get them."""
    pubsub = notify.redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("jobplatform:job:*")
    pubsub.get_message(timeout=1)

    def rung(timeout: float = 2.0) -> set[str]:
        channels = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
            if message:
                channels.add(message["channel"].decode())
            elif channels:
                break
        return channels

    yield rung
    pubsub.close()


def test_claiming_a_job_rings_its_doorbell_after_the_commit(transactional_db, user, doorbell):
    job = JobFactory(owner=user)

    claim = lifecycle.job_claim(job_id=str(job.id), worker="w1")

    assert claim is not None
    assert doorbell() == {notify.job_channel(job.id)}


def test_a_claim_succeeds_quickly_even_when_redis_is_unreachable(transactional_db, user, settings, caplog):
    settings.REDIS_URL = UNREACHABLE
    job = JobFactory(owner=user)

    started = time.monotonic()
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w1")

    assert time.monotonic() - started < 3  # no retry loop against the unreachable Redis

    assert claim is not None
    assert Job.objects.get(id=job.id).status == JobStatus.RUNNING
    assert "Redis write(s) dropped" in caplog.text


def test_finishing_retrying_and_cancelling_ring_the_doorbell(transactional_db, user, doorbell):
    finished = JobFactory(owner=user)
    claim = lifecycle.job_claim(job_id=str(finished.id), worker="w1")
    doorbell()
    lifecycle.job_succeed(claim=claim, result={})
    assert doorbell() == {notify.job_channel(finished.id)}

    retried = JobFactory(owner=user, max_attempts=3)
    claim = lifecycle.job_claim(job_id=str(retried.id), worker="w1")
    doorbell()
    lifecycle.job_fail_attempt(claim=claim, failure=lifecycle.AttemptFailure("Boom", "boom"))
    assert doorbell() == {notify.job_channel(retried.id)}

    cancelled = JobFactory(owner=user)
    lifecycle.job_cancel(job=cancelled)
    assert doorbell() == {notify.job_channel(cancelled.id)}
