"""Keyed limits with a real worker and beat: a kind's concurrency and rate limit counted per
owner or per payload field, so one key at its limit never holds back another key's jobs."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from apps.jobs import lifecycle
from apps.jobs.models import Job, JobStatus
from tests.factories import UserFactory
from tests.integration.helpers import wait_terminal
from tests.integration.limit_kinds import RATED_PER_TENANT, SERIAL_PER_OWNER
from tests.processes import wait_for

pytestmark = pytest.mark.integration


def start(platform, *, concurrency: int) -> None:
    modules = f"{os.environ['JOB_KIND_MODULES']},tests.integration.limit_kinds"
    platform.worker(concurrency=concurrency, env={"JOB_KIND_MODULES": modules})
    # Two beats, as production runs them: the leader's dispatcher publishes a deferred job again.
    platform.beat(JOB_KIND_MODULES=modules)
    platform.beat(JOB_KIND_MODULES=modules)


def overlap(a: Job, b: Job) -> bool:
    return a.started_at < b.finished_at and b.started_at < a.finished_at


def test_concurrency_per_owner_runs_two_owners_at_once_and_one_owners_jobs_one_at_a_time(platform):
    start(platform, concurrency=3)
    alice, bob = UserFactory(), UserFactory()
    alices = [lifecycle.job_submit(owner=alice, kind=SERIAL_PER_OWNER, payload={"seconds": 3}).id for _ in range(2)]
    bobs = lifecycle.job_submit(owner=bob, kind=SERIAL_PER_OWNER, payload={"seconds": 3}).id

    jobs = wait_terminal([*alices, bobs], timeout=90)

    assert {j.status for j in jobs.values()} == {JobStatus.SUCCEEDED}
    assert {j.attempts for j in jobs.values()} == {1}  # waiting for a slot spends no attempt
    first, second = sorted((jobs[str(i)] for i in alices), key=lambda j: j.started_at)
    assert second.started_at >= first.finished_at, "one owner's two jobs overlapped"
    assert overlap(jobs[str(bobs)], first), "the other owner's job waited for the first owner's slot"


def test_a_rate_limit_per_payload_field_never_slows_another_value(platform):
    start(platform, concurrency=2)
    client = UserFactory()
    # The tenants are new each run: the buckets live in Redis for a minute or more.
    tenant_a, tenant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"

    def submit(tenant: str) -> str:
        return str(lifecycle.job_submit(owner=client, kind=RATED_PER_TENANT, payload={"tenant": tenant}).id)

    a_ids, b_id = [submit(tenant_a), submit(tenant_a)], submit(tenant_b)

    # One start a minute for each tenant: one of a's jobs and b's run at once, a's other waits.
    def one_of_a_and_b_done() -> dict[str, Job] | None:
        jobs = {str(j.id): j for j in Job.objects.filter(id__in=[*a_ids, b_id])}
        done = [i for i in a_ids if jobs[i].status == JobStatus.SUCCEEDED]
        return jobs if done and jobs[b_id].status == JobStatus.SUCCEEDED else None

    jobs = wait_for(one_of_a_and_b_done, timeout=60, interval=0.2, what="a job of each tenant to run")
    ran, held = sorted((jobs[i] for i in a_ids), key=lambda j: j.status != JobStatus.SUCCEEDED)
    lag = abs((jobs[b_id].started_at - ran.started_at).total_seconds())
    assert lag < 20, f"tenant b's job started {lag:.1f} s after tenant a's: slowed by a's rate limit"
    time.sleep(2)
    held.refresh_from_db()
    assert (held.status, held.attempts, held.started_at) == (JobStatus.QUEUED, 0, None)
