"""Unique jobs and debounce with a real worker and beat (apps.jobs.lifecycle.unique): a unique
job runs once however often it is submitted, its key is free again once it has finished, and a
debounced job starts no sooner than its delay after the last submission."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.jobs.models import Job, JobAttempt, JobStatus
from tests.integration.helpers import wait_terminal
from tests.unique_kinds import ACTIVE, DEBOUNCE_SECONDS, DEBOUNCED

pytestmark = pytest.mark.integration

JOBS = "/api/v1/jobs"


@pytest.fixture
def stack(platform):
    modules = f"{os.environ['JOB_KIND_MODULES']},tests.unique_kinds"
    platform.worker(concurrency=2, env={"JOB_KIND_MODULES": modules})
    # Two beats, as production runs them: one leads (the dispatcher publishes a debounced job
    # when due), the other stands by.
    platform.beat(JOB_KIND_MODULES=modules)
    platform.beat(JOB_KIND_MODULES=modules)
    return platform


def test_a_unique_job_runs_once_and_once_finished_its_key_makes_a_new_job(stack, api, user):
    answers = [
        api.post(JOBS, {"kind": ACTIVE, "payload": {"account": "a", "seconds": 2}}, format="json") for _ in range(5)
    ]
    assert [a.status_code for a in answers] == [202, 200, 200, 200, 200], [a.content for a in answers]
    job_id = answers[0].json()["id"]
    assert {a.json()["id"] for a in answers} == {job_id}

    first = wait_terminal([job_id], timeout=60)[job_id]
    assert (first.status, first.attempts, first.unique_key) == (JobStatus.SUCCEEDED, 1, None)
    assert JobAttempt.objects.filter(job_id=job_id).count() == 1

    again = api.post(JOBS, {"kind": ACTIVE, "payload": {"account": "a"}}, format="json")
    assert again.status_code == 202, again.content
    assert again.headers["Job-Deduplicated"] == "false"
    second_id = again.json()["id"]
    assert second_id != job_id
    assert wait_terminal([second_id], timeout=60)[second_id].status == JobStatus.SUCCEEDED
    assert Job.objects.filter(owner=user, kind=ACTIVE).count() == 2


def test_a_debounced_job_starts_its_delay_after_the_last_submission(stack, api, user):
    first = api.post(JOBS, {"kind": DEBOUNCED, "payload": {"account": "a", "note": "first"}}, format="json")
    assert first.status_code == 202, first.content
    job_id = first.json()["id"]
    # Before the first submission's delay ends, a duplicate moves the start on.
    Job.objects.filter(id=job_id).update(run_at=timezone.now() + timedelta(seconds=DEBOUNCE_SECONDS / 2))
    last = timezone.now()
    again = api.post(JOBS, {"kind": DEBOUNCED, "payload": {"account": "a", "note": "second"}}, format="json")
    assert (again.status_code, again.json()["id"]) == (200, job_id)

    job = wait_terminal([job_id], timeout=60)[job_id]

    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
    assert job.started_at >= last + timedelta(seconds=DEBOUNCE_SECONDS), job.started_at - last
    assert job.result == {"account": "a", "note": "first"}
    assert Job.objects.filter(owner=user, kind=DEBOUNCED).count() == 1
