"""Logs kept with each attempt (issue 20, item 3), on real Celery workers with Redis and
PostgreSQL: what a handler logs through ctx.log and the logging module is kept under the
attempt that logged it, on the prefork pool and on worker-io's thread pool (where attempts
run at once in threads of one process), written on the way for a long attempt, and read by
its owner at GET /api/v1/jobs/{id}/logs."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.jobs.lifecycle import job_cancel, job_submit
from apps.jobs.models import Job, JobAttempt
from tests.integration.helpers import wait_terminal
from tests.integration.log_kinds import IO_LOG_KIND, LOG_KIND
from tests.processes import wait_for

pytestmark = pytest.mark.integration

MODULES = {"JOB_KIND_MODULES": f"{os.environ['JOB_KIND_MODULES']},tests.integration.log_kinds"}
HANDLER_LOGGER = "tests.integration.log_kinds"


@pytest.fixture
def owner(transactional_db):
    return get_user_model().objects.create(username="log-client")


@pytest.fixture
def api(owner) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=owner)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def logs(api: APIClient, job: Job, **params: Any) -> list[tuple[int, str, str, str]]:
    """Every line of the job, through every page of the API."""
    page = api.get(f"/api/v1/jobs/{job.id}/logs", {"page_size": 10, **params})
    assert page.status_code == 200, page.content
    rows: list[dict[str, Any]] = []
    while True:
        body = page.json()
        rows += body["results"]
        if not body["next"]:
            return [(r["attempt"], r["level"], r["logger"], r["message"]) for r in rows]
        page = api.get(body["next"])


def test_a_job_that_fails_once_keeps_each_attempts_lines_under_its_number(platform, owner, api):
    platform.worker(concurrency=1, queues="high,default,low", env=MODULES)
    platform.beat(**MODULES)  # the control loop queues the retry
    job = job_submit(owner=owner, kind=LOG_KIND, payload={"tag": "flaky", "fail_times": 1, "lines": 2})

    done = wait_terminal([job.id], timeout=60)[str(job.id)]

    assert (done.status, done.attempts) == ("succeeded", 2)
    assert logs(api, job) == [
        (1, "INFO", LOG_KIND, "flaky: attempt 1 starts"),
        (1, "INFO", HANDLER_LOGGER, "flaky: from the logging module on attempt 1"),
        (1, "INFO", HANDLER_LOGGER, "flaky: line 0"),
        (1, "INFO", HANDLER_LOGGER, "flaky: line 1"),
        (1, "ERROR", LOG_KIND, "flaky: giving up on attempt 1"),
        (2, "INFO", LOG_KIND, "flaky: attempt 2 starts"),
        (2, "INFO", HANDLER_LOGGER, "flaky: from the logging module on attempt 2"),
        (2, "INFO", HANDLER_LOGGER, "flaky: line 0"),
        (2, "INFO", HANDLER_LOGGER, "flaky: line 1"),
    ]
    assert next(line[3] for line in logs(api, job, attempt=2)) == "flaky: attempt 2 starts"
    # The platform's own lines about the attempt are the worker's, not the job's.
    assert not any("succeeded on attempt" in line[3] for line in logs(api, job))


def test_two_io_jobs_logging_at_once_on_one_thread_pool_keep_only_their_own_lines(platform, owner, api):
    platform.worker_io(concurrency=4, env=MODULES)
    platform.beat(**MODULES)
    payload = {"lines": 20, "pause": 0.05, "fail_times": 1}
    first = job_submit(owner=owner, kind=IO_LOG_KIND, payload={"tag": "red", **payload})
    second = job_submit(owner=owner, kind=IO_LOG_KIND, payload={"tag": "blue", **payload})

    jobs = wait_terminal([first.id, second.id], timeout=60)

    assert {j.status for j in jobs.values()} == {"succeeded"}
    assert len({j.worker for j in jobs.values()}) == 1, "both ran in one worker-io process"
    for job, tag in ((first, "red"), (second, "blue")):
        lines = logs(api, job)
        assert all(message.startswith(f"{tag}: ") for *_, message in lines), lines
        for attempt in (1, 2):
            mine = [message for number, _, _, message in lines if number == attempt]
            assert mine[0] == f"{tag}: attempt {attempt} starts"
            assert [m for m in mine if ": line " in m] == [f"{tag}: line {i}" for i in range(20)]
    # They did run at once: their first attempts overlapped.
    red, blue = (JobAttempt.objects.get(job_id=j.id, number=1) for j in (first, second))
    assert red.started_at < blue.finished_at
    assert blue.started_at < red.finished_at


def test_a_long_attempts_lines_are_written_while_it_runs(platform, owner, api):
    """With each lease renewal, so a worker that dies mid-attempt keeps what was logged."""
    platform.worker(concurrency=1, queues="high,default,low", env={**MODULES, "JOB_LEASE_SECONDS": "1.5"})
    job = job_submit(owner=owner, kind=LOG_KIND, payload={"tag": "long", "hold": 30})

    wait_for(lambda: len(logs(api, job)) == 2, timeout=20, what="the running attempt's lines")
    assert Job.objects.get(id=job.id).status == "running"
    job_cancel(job=Job.objects.get(id=job.id))
    wait_terminal([job.id], timeout=20)
    assert [message for *_, message in logs(api, job)] == [
        "long: attempt 1 starts",
        "long: from the logging module on attempt 1",
    ]
