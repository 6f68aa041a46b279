"""Time limits where the pool cannot enforce them (worker-io's threads): the context reports
the soft limit at each check, and the lease keeper abandons the attempt at the hard one,
fenced by its lease token. The keeper's thread has its own database connection, so these
tests commit (transactional_db)."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from apps.jobs import lifecycle
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.jobs.registry import JobCancelled, registry
from tests.factories import UserFactory
from tests.processes import wait_for
from workers.leases import Lease, LeaseKeeper
from workers.runtime import Context

WORKER = "io@host"


def claimed(kind: str = "diagnostics.flaky", seed: str | None = None) -> lifecycle.Claim:
    job = lifecycle.job_submit(owner=UserFactory(), kind=kind, payload={"fail_times": 0})
    claim = lifecycle.job_claim(job_id=str(job.id), worker=WORKER, seed=seed)
    assert claim is not None
    return claim


def limited(soft: float, hard: float):
    return dataclasses.replace(registry.get("diagnostics.flaky"), soft_time_limit=soft, time_limit=hard)


def test_past_its_soft_limit_the_context_says_stop_and_check_raises_a_time_limit(transactional_db):
    claim = claimed()
    ctx = Context(claim, Lease(claim, limited(0.2, 60), None, due=time.monotonic() + 60))

    assert not ctx.is_cancelled()
    time.sleep(0.25)

    assert ctx.is_cancelled()
    assert ctx.timed_out
    with pytest.raises(SoftTimeLimitExceeded):
        ctx.check_cancelled()


def test_a_cancel_before_the_soft_limit_is_still_a_cancel(transactional_db):
    claim = claimed()
    ctx = Context(claim, Lease(claim, limited(60, 90), None, due=time.monotonic() + 60))
    lifecycle.job_cancel(job=Job.objects.get(id=claim.job_id))

    with pytest.raises(JobCancelled):
        ctx.check_cancelled()
    assert not ctx.timed_out


def test_at_its_hard_limit_the_keeper_ends_the_attempt_and_fences_the_abandoned_thread(transactional_db):
    seed = lifecycle.lease_seed(task_id=str(uuid.uuid4()), worker=WORKER, pid=1)
    claim = claimed(seed=seed)
    keeper = LeaseKeeper()

    lease = keeper.hold(claim, kind=limited(0.1, 0.3), seed=seed)

    wait_for(
        lambda: Job.objects.filter(id=claim.job_id, status=JobStatus.RETRYING).exists(),
        timeout=5,
        what="the keeper to end the attempt",
    )
    job = Job.objects.get(id=claim.job_id)
    assert lease.timed_out
    assert lease.lost
    attempt = JobAttempt.objects.get(job=job, number=1)
    assert attempt.error_type == "TimeLimitExceeded"
    assert "abandoned" in attempt.error_message
    # What the abandoned thread writes when its call finally returns is refused.
    assert not lifecycle.job_succeed(claim=claim, result={"late": True})
    assert not lifecycle.job_heartbeat(claim=claim)


def test_the_keeper_takes_the_leases_of_many_threads_at_once(transactional_db):
    claims = [claimed() for _ in range(16)]
    keeper = LeaseKeeper()
    kind = limited(60, 90)
    leases: list[Lease] = []
    start = threading.Barrier(len(claims))

    def hold(claim: lifecycle.Claim) -> None:
        start.wait()
        leases.append(keeper.hold(claim, kind=kind))

    threads = [threading.Thread(target=hold, args=(c,)) for c in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)

    assert sorted(keeper._leases) == sorted(c.job_id for c in claims)
    for lease in leases:
        keeper.release(lease)
    assert not keeper._leases
