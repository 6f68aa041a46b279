"""JobOutput builds its answer directly, not through DRF's field machinery (it is on every
submit, poll and list page, 1,000 times in a batch answer). Here it is held equal to DRF's
own output, key for key and in the same order, for jobs in every state a client can see."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIRequestFactory

from apps.jobs import lifecycle
from apps.jobs.models import Job, JobAttempt
from apps.jobs.serializers import AttemptOutput, JobDetailOutput, JobOutput
from tests.factories import UserFactory


def _jobs_in_every_state() -> list[Job]:
    owner = UserFactory()
    submit = lifecycle.job_submit

    queued = submit(owner=owner, kind="diagnostics.noop", payload={})
    scheduled = submit(
        owner=owner,
        kind="diagnostics.sleep",
        payload={"seconds": 1},
        priority="high",
        run_at=timezone.now() + timedelta(hours=1),
    )
    running = submit(owner=owner, kind="diagnostics.sleep", payload={"seconds": 0.5})
    lifecycle.job_claim(job_id=str(running.id), worker="w1")
    Job.objects.filter(id=running.id).update(progress_percent=42.5, progress_message="half way")

    succeeded = submit(owner=owner, kind="diagnostics.noop", payload={})
    claim = lifecycle.job_claim(job_id=str(succeeded.id), worker="w1")
    lifecycle.job_succeed(claim=claim, result={"answer": 42, "list": ["é", 1.5, True]})

    retrying = submit(owner=owner, kind="diagnostics.noop", payload={}, max_attempts=3)
    claim = lifecycle.job_claim(job_id=str(retrying.id), worker="w1")
    lifecycle.job_fail_attempt(claim=claim, failure=lifecycle.AttemptFailure("ValueError", "bad luck"))

    failed = submit(owner=owner, kind="diagnostics.noop", payload={}, max_attempts=1)
    claim = lifecycle.job_claim(job_id=str(failed.id), worker="w1")
    lifecycle.job_fail_attempt(claim=claim, failure=lifecycle.AttemptFailure("KeyError", "gone", permanent=True))

    cancelled = submit(owner=owner, kind="diagnostics.noop", payload={}, priority="low")
    lifecycle.job_cancel(job=cancelled)

    ids = [job.id for job in (queued, scheduled, running, succeeded, retrying, failed, cancelled)]
    from_db = {job.id: job for job in Job.objects.filter(id__in=ids)}
    # Both as the database returns them and as a submit returns them (values set in Python).
    return [from_db[i] for i in ids] + [queued, scheduled]


@pytest.mark.django_db
@pytest.mark.parametrize("serializer", [JobOutput, JobDetailOutput])
def test_the_fast_representation_equals_drfs(serializer):
    request = APIRequestFactory().get("/api/v1/jobs", HTTP_HOST="api.example.com")
    jobs = _jobs_in_every_state()
    statuses = {str(job.status) for job in jobs}
    assert statuses == {"queued", "running", "succeeded", "retrying", "failed", "cancelled"}

    for job in jobs:
        fast = serializer(job, context={"request": request}).data
        drf = serializer(job, context={"request": request}).drf_representation(job)
        assert list(fast) == list(drf)
        assert json.dumps(fast) == json.dumps(drf), job.status
    assert fast["links"]["self"].startswith("http://api.example.com/api/v1/jobs/")


@pytest.mark.django_db
def test_the_fast_attempt_representation_equals_drfs():
    _jobs_in_every_state()
    attempts = list(JobAttempt.objects.all())
    assert {a.outcome for a in attempts} >= {"succeeded", "failed", "permanent"}
    assert any(a.retry_at is not None for a in attempts)
    for attempt in attempts:
        fast = AttemptOutput(attempt).data
        drf = AttemptOutput().drf_representation(attempt)
        assert list(fast) == list(drf)
        assert json.dumps(fast) == json.dumps(drf)


@pytest.mark.django_db
def test_a_list_of_jobs_is_represented_like_one_job_at_a_time():
    jobs = _jobs_in_every_state()
    many = JobOutput(jobs, many=True).data
    assert [dict(item) for item in many] == [JobOutput(job).drf_representation(job) for job in jobs]
