"""Celery's own tools agree with PostgreSQL (guarantee 11): a revoke through Celery's control API
cancels the job it names, queued or running (with terminate), and a purge or a revoke that
cancelled nothing never strands a queued job. Real workers and beat, real Redis and
PostgreSQL; the revokes go out as Flower's and `celery control revoke` send them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
import redis
from django.contrib.auth import get_user_model

from apps.jobs.lifecycle import job_submit
from apps.jobs.models import Job, JobAttempt
from apps.jobs.reconciler import BROKER_SENTINEL_KEY
from config.celery import app as celery_app
from tests.integration.helpers import wait_terminal
from tests.processes import ROOT, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def owner(transactional_db):
    return get_user_model().objects.create(username="operator-tools-client")


def task_id_on_queue(redis_url: str, queue: str, job_id: str) -> str | None:
    """The Celery task id of the job's message waiting on a queue, read as Flower's broker view
    or an operator with redis-cli would."""
    client = redis.Redis.from_url(redis_url)
    try:
        for raw in client.lrange(queue, 0, -1):
            message = json.loads(raw)
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            if args == [job_id]:
                return message["headers"]["id"]
        return None
    finally:
        client.close()


def task_id_running(destination: str, job_id: str) -> str | None:
    """The task id of the job's running task, as the worker reports it (Flower's task page,
    `celery inspect active`)."""
    active = celery_app.control.inspect(destination=[destination], timeout=2).active() or {}
    for tasks in active.values():
        for task in tasks:
            if list(task.get("args") or []) == [job_id]:
                return task["id"]
    return None


def revoke(task_id: str, destination: str, **options: object) -> None:
    """Revoke, and wait until the worker has it (Celery's broadcast reaches live workers only)."""
    replies = celery_app.control.revoke(task_id, destination=[destination], reply=True, timeout=5, **options)
    assert replies, f"worker {destination} never acknowledged the revoke of {task_id}"


def test_a_queued_job_revoked_through_celery_is_cancelled_and_says_so(platform, owner):
    name = "revoker"
    platform.worker(concurrency=1, name=name)
    destination = f"{name}@{os.uname().nodename}"
    # The one pool process is busy, so the next job's message waits on its queue.
    busy = job_submit(owner=owner, kind="diagnostics.sleep", payload={"seconds": 3})
    wait_for(lambda: Job.objects.get(id=busy.id).status == "running", timeout=20, what="the busy job to start")
    job = job_submit(owner=owner, kind="diagnostics.noop", payload={})
    task_id = wait_for(
        lambda: task_id_on_queue(platform.redis.url, "default", str(job.id)), timeout=10, what="the job's message"
    )

    revoke(str(task_id), destination)

    jobs = wait_terminal([busy.id, job.id], timeout=30)
    revoked = jobs[str(job.id)]
    assert revoked.status == "cancelled", f"the revoked job ended {revoked.status}"
    assert revoked.attempts == 0
    assert revoked.error_type == "Revoked"
    assert f"revoked through Celery (task {task_id})" in revoked.error_message
    assert jobs[str(busy.id)].status == "succeeded"


def test_a_running_job_revoked_with_terminate_is_cancelled_with_its_attempt_revoked(platform, owner):
    name = "terminator"
    worker = platform.worker(concurrency=1, name=name)
    destination = f"{name}@{os.uname().nodename}"
    job = job_submit(owner=owner, kind="diagnostics.sleep", payload={"seconds": 60})
    wait_for(lambda: Job.objects.get(id=job.id).status == "running", timeout=20, what="the job to start")
    task_id = wait_for(lambda: task_id_running(destination, str(job.id)), timeout=20, what="the worker's active task")

    revoke(str(task_id), destination, terminate=True)

    done = wait_terminal([job.id], timeout=20)[str(job.id)]
    assert done.status == "cancelled", f"the terminated job ended {done.status}"
    assert done.attempts == 1
    assert done.cancel_requested_at is not None
    attempts = list(JobAttempt.objects.filter(job_id=job.id).values_list("number", "outcome", "error_type"))
    assert attempts == [(1, "revoked", "Revoked")], f"the attempt was recorded as {attempts}"
    # The worker lost one pool process, not its service.
    after = job_submit(owner=owner, kind="diagnostics.noop", payload={})
    assert wait_terminal([after.id], timeout=30)[str(after.id)].status == "succeeded"
    assert worker.proc.poll() is None


@pytest.mark.fault
def test_a_purged_backlog_runs_once_each_when_a_worker_comes(platform, owner, own_redis):
    """Beat runs from the start, so Redis keeps the broker sentinel: the purge is not a broker
    loss, and only the stranded-job sweep can bring the jobs back. The queue's window is wider
    than the backlog, so every job's message is on the queue when it is purged."""
    platform.beat(DISPATCH_WINDOW_MIN="100")
    wait_for(
        lambda: redis.Redis.from_url(own_redis.url).exists(BROKER_SENTINEL_KEY),
        timeout=15,
        what="the reconciler's first sweep",
    )
    ids = [str(job_submit(owner=owner, kind="diagnostics.noop", payload={}).id) for _ in range(40)]
    llen = redis.Redis.from_url(own_redis.url).llen
    wait_for(lambda: llen("default") == 40, timeout=10, what="40 messages on the queue")

    purge = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "purge", "-f"],
        cwd=ROOT,
        env=platform.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert purge.returncode == 0, purge.stderr[-2000:]
    # What the purge removed, in its own words: by the time it has exited, the sweep may
    # already have published the jobs again, so the queue's length says nothing here.
    assert "Purged 40 messages" in purge.stdout, purge.stdout
    assert redis.Redis.from_url(own_redis.url).exists(BROKER_SENTINEL_KEY)

    platform.worker(concurrency=2)

    jobs = wait_terminal(ids, timeout=60)
    assert {j.status for j in jobs.values()} == {"succeeded"}, "a purged job did not run"
    assert {j.attempts for j in jobs.values()} == {1}, "a purged job ran more than once"
    assert JobAttempt.objects.filter(job_id__in=ids).count() == 40
