"""Fault test for logs kept with each attempt (issue 20, item 3): a worker killed with SIGKILL
mid-attempt. What the attempt logged before its last lease renewal stays, under its number;
the retry's lines come under the next. Real processes, each stopped by the test."""

from __future__ import annotations

import os
import signal

import pytest
from django.contrib.auth import get_user_model

from apps.jobs.lifecycle import job_submit
from apps.jobs.models import JobAttempt, JobLogLine
from tests.integration.helpers import wait_terminal
from tests.integration.log_kinds import LOG_KIND
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.fault]

ENV = {
    "JOB_KIND_MODULES": f"{os.environ['JOB_KIND_MODULES']},tests.integration.log_kinds",
    "JOB_LEASE_SECONDS": "1.5",  # renewals (and so log writes) every half second; a quick recovery
}


@pytest.fixture
def owner(transactional_db):
    return get_user_model().objects.create(username="log-fault-client")


def test_an_attempt_whose_worker_dies_keeps_what_it_logged_before_its_last_renewal(platform, owner):
    first = platform.worker(concurrency=1, queues="high,default,low", env=ENV)
    platform.beat(**ENV)
    job = job_submit(owner=owner, kind=LOG_KIND, payload={"tag": "doomed", "hold": 30, "hold_attempts": 1})
    wait_for(
        lambda: JobLogLine.objects.filter(job_id=job.id, attempt=1).count() == 2,
        timeout=20,
        what="the first attempt's lines, written at a lease renewal",
    )

    first.kill(signal.SIGKILL)  # the main process and its pool child, no goodbye
    first.proc.wait(timeout=10)
    platform.worker(concurrency=1, queues="high,default,low", env=ENV)
    done = wait_terminal([job.id], timeout=60)[str(job.id)]

    assert done.status == "succeeded"
    outcomes = dict(JobAttempt.objects.filter(job_id=job.id).values_list("number", "outcome"))
    assert outcomes == {1: "lost", 2: "succeeded"}
    kept = list(JobLogLine.objects.filter(job_id=job.id).order_by("attempt", "seq").values_list("attempt", "message"))
    assert kept == [
        (1, "doomed: attempt 1 starts"),
        (1, "doomed: from the logging module on attempt 1"),
        (2, "doomed: attempt 2 starts"),
        (2, "doomed: from the logging module on attempt 2"),
    ]
