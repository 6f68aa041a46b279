"""POST /api/v1/jobs/{id}/retry: a client runs its own failed job again. It is the redrive of
the job's dead letter, so the job goes back to queued with a fresh allowance of attempts and
its letter is closed; anything but a failed job answers 409. Failed jobs are made through the
real lifecycle, against the real database and the private Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from apps.deadletters.models import DeadLetter
from apps.deadletters.services import dead_letter_discard
from apps.jobs import lifecycle
from apps.jobs.models import Job, JobStatus
from tests.factories import UserFactory
from tests.unit.deadletters.test_dead_letters import failed_job, letter_of, published


def retry_url(job: Job | str) -> str:
    return f"/api/v1/jobs/{getattr(job, 'id', job)}/retry"


def test_the_owner_retries_a_failed_job_it_is_queued_again_and_its_letter_closed(
    api, user, django_capture_on_commit_callbacks
):
    job = failed_job(user)
    letter = letter_of(job)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(retry_url(job))

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["id"], body["status"], body["error"]) == (str(job.id), "queued", None)
    assert (body["attempts"], body["max_attempts"]) == (1, 6)  # 1 of 5 used: a fresh 5 on top
    assert "cancel" in body["links"]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert published(job) == [{"task": "diagnostics.flaky", "args": [str(job.id)]}]
    letter.refresh_from_db()
    assert (letter.state, letter.resolved_by) == (DeadLetter.State.REDRIVEN, user.get_username())


def test_a_retried_job_that_is_queued_again_is_not_retried_twice(api, user, django_capture_on_commit_callbacks):
    job = failed_job(user)

    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(retry_url(job))
        second = api.post(retry_url(job))

    assert first.status_code == 202
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "job_not_failed"
    assert second.json()["error"]["details"] == {"status": "queued"}
    assert len(published(job)) == 1


@pytest.mark.parametrize("state", ["queued", "succeeded", "cancelled"])
def test_a_job_that_is_not_failed_answers_409_job_not_failed(api, user, state):
    job = lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={})
    if state == "cancelled":
        lifecycle.job_cancel(job=job)
    elif state == "succeeded":
        Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)

    response = api.post(retry_url(job))

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "job_not_failed"
    assert state in error["message"]
    job.refresh_from_db()
    assert job.status == state


def test_someone_elses_job_or_no_job_answers_404_job_not_found(api, user):
    theirs = failed_job(UserFactory(username="mallory"))

    for url in (retry_url(theirs), retry_url("00000000-0000-0000-0000-000000000000")):
        response = api.post(url)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"
    theirs.refresh_from_db()
    assert theirs.status == JobStatus.FAILED


def test_a_job_whose_letter_an_operator_discarded_stays_failed(api, user):
    job = failed_job(user)
    dead_letter_discard(letter_id=letter_of(job).pk, actor="ops")

    response = api.post(retry_url(job))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "dead_letter_closed"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_retry_needs_a_signed_in_client(db, user):
    job = failed_job(user)
    response = Client().post(retry_url(job))
    assert response.status_code == 401
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_the_openapi_schema_describes_the_retry(db, client: Any):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    operation = json.loads(response.content)["paths"]["/api/v1/jobs/{job_id}/retry"]["post"]
    assert operation["operationId"] == "jobs_retry"
    assert {"202", "404", "409"} <= set(operation["responses"])
