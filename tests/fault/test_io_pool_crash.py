"""Fault test for the I/O pool: the worker-io process killed with SIGKILL while its threads
run jobs. The reconciler sees their leases expire and the jobs run again, each to exactly one
success, on the next worker-io."""

from __future__ import annotations

import os
import signal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.jobs.lifecycle import job_submit
from apps.jobs.models import Job, JobAttempt
from tests.integration.helpers import wait_terminal
from tests.integration.io_kinds import WAIT_KIND
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.fault]

MODULES = {"JOB_KIND_MODULES": f"{os.environ['JOB_KIND_MODULES']},tests.integration.io_kinds"}


@pytest.fixture
def owner(transactional_db):
    return get_user_model().objects.create(username="io-fault-client")


def test_jobs_of_a_worker_io_killed_with_sigkill_run_again_each_exactly_once(platform, owner):
    first = platform.worker_io(concurrency=8, name="io-first", env=MODULES)
    platform.beat(**MODULES)
    ids = [str(job_submit(owner=owner, kind=WAIT_KIND, payload={"seconds": 3}).id) for _ in range(6)]
    wait_for(
        lambda: Job.objects.filter(id__in=ids, status="running").count() == 6,
        timeout=20,
        what="six jobs running on the first worker-io's threads",
    )

    first.kill(signal.SIGKILL)  # the one process, and with it every thread, mid-job
    first.proc.wait(timeout=10)
    killed_at = timezone.now()
    platform.worker_io(concurrency=8, name="io-second", env=MODULES)

    jobs = wait_terminal(ids, timeout=60)
    assert {j.status for j in jobs.values()} == {"succeeded"}, {i: j.status for i, j in jobs.items()}
    for job_id in ids:
        outcomes = list(JobAttempt.objects.filter(job_id=job_id).values_list("outcome", flat=True))
        assert outcomes.count("succeeded") == 1, f"job {job_id} completed {outcomes.count('succeeded')} times"
        assert outcomes.count("lost") == 1, f"job {job_id}: attempts {outcomes}"
    assert {j.worker for j in jobs.values()} == {next(iter(jobs.values())).worker}
    assert next(iter(jobs.values())).worker.startswith("io-second@")
    recovered_after = max((j.finished_at - killed_at).total_seconds() for j in jobs.values())
    assert recovered_after < 30
