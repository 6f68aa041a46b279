"""The hard-time-limit fence with a real worker: one pool process stalls past its lease, the
reconciler hands its job on, another pool process of the same worker claims it, and then the
stalled process is killed at its hard time limit. The worker's main process must record that
timeout against the stalled attempt only, which it can tell by its lease token: the healthy
attempt, of the same worker name, runs on and its result is recorded."""

from __future__ import annotations

import os
import signal
import time

import pytest

from apps.jobs import lifecycle, reconciler
from apps.jobs.models import Job, JobAttempt, JobStatus
from tests.factories import UserFactory
from tests.integration.fence_kinds import STALL_KIND
from tests.integration.helpers import wait_terminal
from tests.processes import wait_for

pytestmark = pytest.mark.integration


def test_a_stalled_attempts_hard_time_limit_does_not_end_the_newer_attempt_on_the_same_worker(platform, tmp_path):
    modules = f"{os.environ['JOB_KIND_MODULES']},tests.integration.fence_kinds"
    worker = platform.worker(concurrency=2, name="fence", env={"JOB_KIND_MODULES": modules})
    release = tmp_path / "release"
    job = lifecycle.job_submit(owner=UserFactory(), kind=STALL_KIND, payload={"release": str(release)})

    def stalled_pid() -> int | None:
        message = Job.objects.filter(id=job.id).values_list("progress_message", flat=True).first() or ""
        return int(message.split()[1]) if message.startswith("pid ") else None

    pid = wait_for(stalled_pid, timeout=20, what="the first attempt to start")
    os.kill(pid, signal.SIGSTOP)  # its lease keeper stops with it; the pool kills it at 8 s
    started = time.monotonic()

    def second_attempt_running() -> bool:
        reconciler.reconcile()  # expire the lease, promote the retry, publish it
        row = Job.objects.filter(id=job.id).values_list("status", "attempts").first()
        return row == (JobStatus.RUNNING, 2)

    wait_for(second_attempt_running, timeout=15, interval=0.2, what="another process to claim the job")
    wait_for(
        lambda: "killed at its hard time limit" in worker.log(),
        timeout=15,
        what="the stalled process to be killed at its hard time limit",
    )
    timed_out_after = time.monotonic() - started
    running = Job.objects.get(id=job.id)
    assert (running.status, running.attempts, running.error_type) == (JobStatus.RUNNING, 2, "WorkerLost"), (
        f"the stalled attempt's timeout, {timed_out_after:.1f} s after the stall, ended the newer attempt: "
        f"{running.status}, {running.error_type}: {running.error_message}"
    )
    assert "job is now stale" in worker.log()
    release.touch()

    done = wait_terminal([job.id], timeout=20)[str(job.id)]
    history = list(JobAttempt.objects.filter(job_id=job.id).order_by("number").values_list("number", "outcome"))
    assert (done.status, done.attempts, done.result["attempt"]) == (JobStatus.SUCCEEDED, 2, 2)
    assert done.result["pid"] != pid
    assert history == [(1, "lost"), (2, "succeeded")]
