"""The soft time limit with a real worker, for a handler that does not catch
SoftTimeLimitExceeded (testing.hang, elsewhere, swallows it and meets the hard limit): the
exception ends the attempt, which is recorded as TimeLimitExceeded and retried."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.jobs.models import JobAttempt
from tests.integration.helpers import wait_terminal
from tests.integration.soft_limit_kinds import OVERRUN_KIND

pytestmark = pytest.mark.integration


def test_a_handler_past_its_soft_time_limit_is_recorded_as_time_limit_exceeded_and_retried(platform):
    modules = f"{os.environ['JOB_KIND_MODULES']},tests.integration.soft_limit_kinds"
    platform.worker(concurrency=1, env={"JOB_KIND_MODULES": modules})
    platform.beat(JOB_KIND_MODULES=modules)
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=get_user_model().objects.create(username='slow')).key}"
    )

    response = client.post("/api/v1/jobs", {"kind": OVERRUN_KIND, "payload": {"seconds": 30}}, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    # Far less than the 30 s the first attempt would sleep: the soft limit (1 s) cut it short.
    job = wait_terminal([job_id], timeout=25)[job_id]
    history = list(JobAttempt.objects.filter(job_id=job_id).order_by("number"))
    assert [(a.number, a.outcome, a.error_type) for a in history] == [
        (1, "failed", "TimeLimitExceeded"),
        (2, "succeeded", ""),
    ], [(a.number, a.outcome, a.error_type, a.error_message) for a in history]
    assert "soft time limit of 1" in history[0].error_message
    assert (job.status, job.attempts, job.result) == ("succeeded", 2, {"attempt": 2})
    assert history[0].duration_ms < 20_000  # ended by the soft limit, not the hard one (20 s)
