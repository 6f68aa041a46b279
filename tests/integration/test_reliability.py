"""Retries, dead letters and idempotency, proven against real worker processes, real Redis
and PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import itertools
import uuid

import pytest
import requests
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.deadletters.models import DeadLetter
from apps.jobs.models import Job, JobAttempt
from apps.jobs.publish import publish_jobs_rollback_unsafe
from tests.integration.helpers import wait_terminal
from tests.processes import wait_for

pytestmark = pytest.mark.integration


def client_for(username: str, *, staff: bool = False) -> APIClient:
    user = get_user_model().objects.create(username=username, is_staff=staff)
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def submit(client: APIClient, kind: str, payload: dict, **extra) -> str:
    response = client.post("/api/v1/jobs", {"kind": kind, "payload": payload, **extra}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_a_flaky_job_succeeds_on_its_third_attempt_after_growing_jittered_delays(platform):
    platform.worker()
    platform.beat()
    client = client_for("flaky-client")

    job_id = submit(client, "diagnostics.flaky", {"fail_times": 2, "permanent": False}, max_attempts=5)

    job = wait_terminal([job_id], timeout=60)[job_id]
    assert job.status == "succeeded"
    assert job.attempts == 3
    assert job.result == {"succeeded_on_attempt": 3}
    history = list(JobAttempt.objects.filter(job_id=job_id).order_by("number"))
    assert [a.outcome for a in history] == ["failed", "failed", "succeeded"]
    delays = [(a.retry_at - a.finished_at).total_seconds() for a in history[:2]]
    # Base 0.5 s (tests/environment.py), equal jitter: [0.25, 0.5] then [0.5, 1.0].
    assert 0.25 <= delays[0] <= 0.5
    assert 0.5 <= delays[1] <= 1.0
    assert delays[1] >= delays[0]
    for failed, following in itertools.pairwise(history):
        assert following.started_at >= failed.retry_at, "an attempt started before its backoff ended"
    # The client sees the same history in the job's detail.
    detail = client.get(f"/api/v1/jobs/{job_id}").json()
    assert [h["outcome"] for h in detail["history"]] == ["failed", "failed", "succeeded"]
    assert detail["history"][0]["error_type"] == "RetryableError"


def test_a_permanent_failure_is_parked_after_one_attempt_and_redrive_runs_it_once_more(platform, admin_client):
    platform.worker()
    client = client_for("permanent-client")
    staff = client_for("staff-member", staff=True)

    # Fails permanently on attempt 1 only, so the redriven run can succeed.
    job_id = submit(client, "diagnostics.flaky", {"fail_times": 1, "permanent": True}, max_attempts=5)

    job = wait_terminal([job_id], timeout=30)[job_id]
    assert job.status == "failed"
    assert job.attempts == 1
    assert job.error_type == "PermanentError"
    letter = DeadLetter.objects.get(job_id=job_id)
    assert letter.state == "open"
    assert letter.errors[0]["error_type"] == "PermanentError"
    assert "PermanentError" in letter.traceback

    listed = staff.get("/api/v1/dead-letters").json()["results"]
    assert [x["job_id"] for x in listed] == [job_id]
    assert client.get("/api/v1/dead-letters").status_code == 403
    assert client.post(f"/api/v1/dead-letters/{letter.pk}/redrive").status_code == 403
    page = admin_client.get("/admin/deadletters/deadletter/")
    assert page.status_code == 200
    assert job_id in page.content.decode()

    first = staff.post(f"/api/v1/dead-letters/{letter.pk}/redrive")
    assert first.status_code == 202
    assert first.json()["changed"] is True
    second = staff.post(f"/api/v1/dead-letters/{letter.pk}/redrive")
    assert second.status_code == 200
    assert second.json()["changed"] is False

    wait_for(lambda: Job.objects.get(id=job_id).status == "succeeded", timeout=30, what="the redriven job")
    job.refresh_from_db()
    assert job.attempts == 2  # one more run, not two
    assert job.max_attempts == 6  # a fresh allowance of 5 on top of the spent attempt
    assert JobAttempt.objects.filter(job_id=job_id).count() == 2
    assert staff.get("/api/v1/dead-letters").json()["results"] == []


def test_twenty_concurrent_submits_with_one_idempotency_key_make_one_job(transactional_db, live_server):
    user = get_user_model().objects.create(username="racer")
    token = Token.objects.create(user=user)
    key = uuid.uuid4().hex
    body = {"kind": "diagnostics.noop", "payload": {}}

    def post(_: int) -> requests.Response:
        return requests.post(
            f"{live_server.url}/api/v1/jobs",
            json=body,
            timeout=30,
            headers={"Authorization": f"Token {token.key}", "Idempotency-Key": key},
        )

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))

    assert sorted({r.status_code for r in responses}) == [202]
    assert len({r.json()["id"] for r in responses}) == 1
    assert Job.objects.filter(owner=user).count() == 1
    assert sum(r.headers["Idempotent-Replayed"] == "false" for r in responses) == 1

    different = requests.post(
        f"{live_server.url}/api/v1/jobs",
        timeout=10,
        json={"kind": "diagnostics.sleep", "payload": {"seconds": 1}},
        headers={"Authorization": f"Token {token.key}", "Idempotency-Key": key},
    )
    assert different.status_code == 422
    assert different.json()["error"]["code"] == "idempotency_key_reused"
    assert Job.objects.filter(owner=user).count() == 1


def test_the_same_job_message_published_twice_runs_the_handler_once(platform):
    client = client_for("duplicate-client")
    job_id = submit(client, "diagnostics.sleep", {"seconds": 0.2})
    job = Job.objects.get(id=job_id)
    # A second message for the same job, as a redelivery or a republish would make.
    assert publish_jobs_rollback_unsafe([(job_id, job.kind, job.queue, "")]) == [job_id]

    worker = platform.worker()

    job = wait_terminal([job_id], timeout=30)[job_id]
    assert job.status == "succeeded"
    assert job.attempts == 1
    assert JobAttempt.objects.filter(job_id=job_id).count() == 1
    wait_for(lambda: "nothing to claim" in worker.log(), timeout=15, what="the duplicate to be dropped")


def test_a_succeeded_job_never_runs_again_when_its_message_comes_back(platform):
    client = client_for("stale-client")
    worker = platform.worker()
    job_id = submit(client, "diagnostics.noop", {})
    job = wait_terminal([job_id], timeout=30)[job_id]
    assert job.status == "succeeded"
    finished_at = job.finished_at

    publish_jobs_rollback_unsafe([(job_id, job.kind, job.queue, "")])

    wait_for(
        lambda: f"job {job_id}: nothing to claim" in worker.log(), timeout=15, what="the stale message to be dropped"
    )
    job.refresh_from_db()
    assert job.attempts == 1
    assert job.finished_at == finished_at
    assert JobAttempt.objects.filter(job_id=job_id).count() == 1


def test_jobs_that_outlive_their_lease_keep_it_and_run_once(platform):
    """A pool process's one lease keeper renews every job it runs, one after another: with a
    3 s lease and the reconciler sweeping, two 6.5 s jobs through one process each finish on
    their first attempt (a missed renewal would hand the job to a second attempt). The lease
    leaves a renewal (every lease/3, each on a new connection) room on a loaded machine."""
    platform.worker(concurrency=1, env={"JOB_LEASE_SECONDS": "3"})
    platform.beat(JOB_LEASE_SECONDS="3")
    client = client_for("long-runner")

    ids = [submit(client, "diagnostics.sleep", {"seconds": 6.5}) for _ in range(2)]

    jobs = wait_terminal(ids, timeout=90)
    assert [(jobs[i].status, jobs[i].attempts) for i in ids] == [("succeeded", 1), ("succeeded", 1)]
    assert JobAttempt.objects.filter(job_id__in=ids).count() == 2
