"""The I/O pool (issue 18, item 1): kinds declared io_bound run on the Procfile's worker-io,
a thread pool of many slots, with every guarantee of the prefork pool: claim, cancellation,
retries, dead letters, and time limits the runtime enforces because a thread cannot be
interrupted (workers.leases). Real worker processes, Redis and PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
from django.contrib.auth import get_user_model

from apps.deadletters.models import DeadLetter
from apps.jobs.lifecycle import job_cancel, job_submit
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.webhooks.services import webhook_delivery_submit
from tests.factories import JobFactory
from tests.integration.helpers import wait_terminal
from tests.integration.io_kinds import FLAKY_KIND, HANG_KIND, OVERRUN_KIND, WAIT_KIND
from tests.integration.test_revoke_and_purge import revoke, task_id_running
from tests.processes import wait_for

pytestmark = pytest.mark.integration

MODULES = {"JOB_KIND_MODULES": f"{os.environ['JOB_KIND_MODULES']},tests.integration.io_kinds"}


@pytest.fixture
def owner(transactional_db):
    return get_user_model().objects.create(username="io-client")


def history(job_id: object) -> list[tuple[int, str, str]]:
    attempts = JobAttempt.objects.filter(job_id=job_id).order_by("number")
    return [(a.number, a.outcome, a.error_type) for a in attempts]


def test_an_io_job_runs_on_worker_io_and_a_cpu_job_on_the_prefork_worker(platform, owner):
    platform.worker(concurrency=1, queues="high,default,low", name="cpu", env=MODULES)
    platform.worker_io(concurrency=4, name="io", env=MODULES)

    io = job_submit(owner=owner, kind=WAIT_KIND, payload={"seconds": 0})
    cpu = job_submit(owner=owner, kind="diagnostics.noop", payload={})
    jobs = wait_terminal([io.id, cpu.id], timeout=30)

    io_job, cpu_job = jobs[str(io.id)], jobs[str(cpu.id)]
    assert (io_job.status, io_job.queue) == ("succeeded", "io_default")
    assert io_job.worker.startswith("io@")
    assert io_job.result["thread"].startswith("ThreadPoolExecutor")  # a slot of the thread pool
    assert (cpu_job.status, cpu_job.queue) == ("succeeded", "default")
    assert cpu_job.worker.startswith("cpu@")


def test_sixteen_slow_io_jobs_run_at_once_on_one_worker_io_process(platform, owner):
    platform.worker_io(concurrency=16, env=MODULES)
    ids = [job_submit(owner=owner, kind=WAIT_KIND, payload={"seconds": 2}).id for _ in range(16)]

    started = time.monotonic()
    jobs = wait_terminal(ids, timeout=60)
    elapsed = time.monotonic() - started

    assert {j.status for j in jobs.values()} == {"succeeded"}
    assert len({j.worker for j in jobs.values()}) == 1
    assert len({j.result["thread"] for j in jobs.values()}) == 16
    # All were waiting at the same moment: the last start came before the first end.
    assert max(j.result["started"] for j in jobs.values()) < min(j.result["finished"] for j in jobs.values())
    assert elapsed < 16, f"16 jobs of 2 s took {elapsed:.1f} s: not concurrent"


def test_a_running_io_job_is_cancelled_at_its_next_check(platform, owner):
    platform.worker_io(concurrency=4, env=MODULES)
    job = job_submit(owner=owner, kind=WAIT_KIND, payload={"seconds": 30})
    wait_for(lambda: Job.objects.filter(id=job.id, status="running").exists(), timeout=20, what="the job to run")

    job_cancel(job=Job.objects.get(id=job.id))

    done = wait_terminal([job.id], timeout=10)[str(job.id)]
    assert done.status == "cancelled"
    assert history(job.id) == [(1, "cancelled", "JobCancelled")]


def test_a_running_io_job_revoked_with_terminate_is_cancelled_at_its_next_check(platform, owner):
    """Flower's terminate (`revoke(id, terminate=True)`) cannot kill a thread: the job is
    cancelled as the API's cancel does it, and the worker goes on with its other slots."""
    name = "io-terminator"
    worker = platform.worker_io(concurrency=4, name=name, env=MODULES)
    destination = f"{name}@{os.uname().nodename}"
    job = job_submit(owner=owner, kind=WAIT_KIND, payload={"seconds": 60})
    wait_for(lambda: Job.objects.filter(id=job.id, status="running").exists(), timeout=20, what="the job to run")
    task_id = wait_for(lambda: task_id_running(destination, str(job.id)), timeout=20, what="the worker's active task")

    revoke(str(task_id), destination, terminate=True)

    done = wait_terminal([job.id], timeout=15)[str(job.id)]
    assert done.status == "cancelled", f"the terminated job ended {done.status}"
    assert (done.attempts, done.cancel_requested_at is not None) == (1, True)
    assert history(job.id) == [(1, "cancelled", "JobCancelled")]
    assert "cancel requested" in worker.log()
    # The worker lost nothing: its process and its slots go on.
    after = job_submit(owner=owner, kind=WAIT_KIND, payload={"seconds": 0})
    assert wait_terminal([after.id], timeout=20)[str(after.id)].status == "succeeded"
    assert worker.proc.poll() is None


def test_io_jobs_retry_and_park_their_dead_letters(platform, owner):
    platform.worker_io(concurrency=4, env=MODULES)
    platform.beat(**MODULES)
    recovers = job_submit(owner=owner, kind=FLAKY_KIND, payload={"fail_times": 1})
    exhausted = job_submit(owner=owner, kind=FLAKY_KIND, payload={"fail_times": 9})
    refused = job_submit(owner=owner, kind=FLAKY_KIND, payload={"fail_times": 9, "permanent": True})

    jobs = wait_terminal([recovers.id, exhausted.id, refused.id], timeout=60)

    assert (jobs[str(recovers.id)].status, jobs[str(recovers.id)].attempts) == ("succeeded", 2)
    assert (jobs[str(exhausted.id)].status, jobs[str(exhausted.id)].attempts) == ("failed", 3)
    assert (jobs[str(refused.id)].status, jobs[str(refused.id)].attempts) == ("failed", 1)
    assert set(DeadLetter.objects.values_list("job_id", flat=True)) == {exhausted.id, refused.id}


def test_past_its_soft_limit_an_io_job_that_checks_its_context_ends_as_a_time_limit_and_retries(platform, owner):
    platform.worker_io(concurrency=4, env=MODULES)
    platform.beat(**MODULES)
    job = job_submit(owner=owner, kind=OVERRUN_KIND, payload={"seconds": 30})

    done = wait_terminal([job.id], timeout=25)[str(job.id)]

    assert (done.status, done.result) == ("succeeded", {"attempt": 2})
    assert history(job.id) == [(1, "failed", "TimeLimitExceeded"), (2, "succeeded", "")]
    first = JobAttempt.objects.get(job_id=job.id, number=1)
    assert "soft time limit of 1 s" in first.error_message
    assert first.duration_ms < 10_000  # the soft limit (1 s), not the 30 s it would wait


def test_at_its_hard_limit_an_io_attempt_is_abandoned_retried_and_its_late_writes_fenced(platform, owner):
    worker = platform.worker_io(concurrency=4, env=MODULES)
    platform.beat(**MODULES)
    job = job_submit(owner=owner, kind=HANG_KIND, payload={"seconds": 6})

    done = wait_terminal([job.id], timeout=20)[str(job.id)]
    assert (done.status, done.result) == ("succeeded", {"attempt": 2})
    first = JobAttempt.objects.get(job_id=job.id, number=1)
    assert first.error_type == "TimeLimitExceeded"
    assert "abandoned" in first.error_message

    # The first attempt's thread wakes after 6 s and reports success: refused by the fence.
    wait_for(lambda: "finished after losing its lease" in worker.log(), timeout=15, what="the zombie to finish")
    job_now = Job.objects.get(id=job.id)
    assert (job_now.status, job_now.attempts, job_now.result) == ("succeeded", 2, {"attempt": 2})
    assert history(job.id) == [(1, "failed", "TimeLimitExceeded"), (2, "succeeded", "")]


@pytest.mark.fault
def test_deliveries_in_flight_when_worker_io_is_killed_run_again_once_each_and_none_is_lost(
    platform, owner, receiver, settings
):
    """kill -9 of the worker-io process while its threads wait on the receiver: the reconciler
    sees the leases expire (3 s here, as test_reliability shortens them) and every delivery runs
    exactly once more, on the next worker-io; none is lost, none succeeds twice."""
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on 127.0.0.1, checked at submit too
    env = {"WEBHOOK_ALLOW_PRIVATE": "1", "JOB_LEASE_SECONDS": "3"}
    first = platform.worker_io(concurrency=8, name="io-first", env=env)
    platform.beat(**env)
    receiver.delay = 30  # no answer before the kill: every POST is in flight
    finished = JobFactory(owner=owner, status=JobStatus.SUCCEEDED, attempts=1)
    ids = [str(webhook_delivery_submit(job_id=str(finished.id), url=receiver.url).id) for _ in range(6)]
    wait_for(lambda: len(receiver.requests) == 6, timeout=20, what="six POSTs in flight on the first worker-io")

    first.kill(signal.SIGKILL)  # the one process, and with it every thread, mid-delivery
    first.proc.wait(timeout=10)
    receiver.delay = 0
    platform.worker_io(concurrency=8, name="io-second", env=env)

    jobs = wait_terminal(ids, timeout=60)
    lost = {i: j.status for i, j in jobs.items() if j.status != "succeeded"}
    assert not lost, f"deliveries lost after the kill: {lost}"
    for delivery_id in ids:
        assert [o for _, o, _ in history(delivery_id)] == ["lost", "succeeded"], f"delivery {delivery_id}"
        assert jobs[delivery_id].worker.startswith("io-second@")
    # Each webhook was POSTed twice: the attempt the kill cut off, and exactly one more.
    assert Counter(r.headers["Webhook-Id"] for r in receiver.requests) == dict.fromkeys(ids, 2)
