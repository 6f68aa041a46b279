"""What operators see, against real workers: /metrics agreeing with the database, /readyz
naming the failing part, request ids carried into worker logs."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.core.redis import redis_client
from apps.deadletters.models import DeadLetter
from apps.jobs.models import Job, JobAttempt
from apps.ops.metrics import PREFIX
from tests.integration.helpers import wait_terminal
from tests.processes import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def client(transactional_db) -> APIClient:
    user = get_user_model().objects.create(username=f"ops-{uuid.uuid4().hex[:6]}")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


def reset_metrics() -> None:
    r = redis_client()
    for key in r.scan_iter(f"{PREFIX}*"):
        r.delete(key)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text output (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        got = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if got == want:
            return float(match.group(3))
    return 0.0


def test_metrics_agree_with_the_database_after_mixed_jobs_on_two_workers(platform, client):
    reset_metrics()
    platform.worker(concurrency=1)
    platform.worker(concurrency=1)
    platform.beat()
    ids = []
    ids += [
        client.post("/api/v1/jobs", {"kind": "diagnostics.noop", "payload": {}}, format="json").json()["id"]
        for _ in range(6)
    ]
    ids += [
        client.post("/api/v1/jobs", {"kind": "diagnostics.flaky", "payload": {"fail_times": 1}}, format="json").json()[
            "id"
        ]
        for _ in range(3)
    ]
    ids += [
        client.post(
            "/api/v1/jobs",
            {"kind": "diagnostics.flaky", "payload": {"fail_times": 9, "permanent": True}},
            format="json",
        ).json()["id"]
        for _ in range(2)
    ]
    wait_terminal(ids, timeout=60)
    # A worker's counters travel a few milliseconds behind the job's commit (they leave from
    # its write-behind thread), so read /metrics once the last of them has arrived: every
    # finish and every attempt the database holds (the last retries' successes come last).
    finished = {
        (kind, event): Job.objects.filter(id__in=ids, kind=kind, status=event).count()
        for kind in ("diagnostics.noop", "diagnostics.flaky")
        for event in ("succeeded", "failed")
    }
    started = JobAttempt.objects.filter(job_id__in=ids).count()

    def arrived(t: str) -> bool:
        counted = sum(
            sample(t, "jobs_total", event="started", kind=kind) for kind in ("diagnostics.noop", "diagnostics.flaky")
        )
        return counted == started and all(
            sample(t, "jobs_total", event=event, kind=kind) == n for (kind, event), n in finished.items()
        )

    def metrics_once_arrived() -> str | None:
        t = client.get("/metrics").content.decode()
        return t if arrived(t) else None

    text = wait_for(
        metrics_once_arrived,
        timeout=10,
        what="the workers' counters to reach /metrics",
    )

    for kind in ("diagnostics.noop", "diagnostics.flaky"):
        jobs = Job.objects.filter(id__in=ids, kind=kind)
        assert sample(text, "jobs_total", event="submitted", kind=kind) == jobs.count()
        assert sample(text, "jobs_total", event="succeeded", kind=kind) == jobs.filter(status="succeeded").count()
        assert sample(text, "jobs_total", event="failed", kind=kind) == jobs.filter(status="failed").count()
        attempts = JobAttempt.objects.filter(job__in=jobs)
        assert sample(text, "jobs_total", event="started", kind=kind) == attempts.count()
        assert sample(text, "jobs_total", event="retried", kind=kind) == attempts.filter(outcome="failed").count()
        assert (
            sample(text, "jobs_total", event="dead_lettered", kind=kind)
            == DeadLetter.objects.filter(job__in=jobs).count()
        )
        assert sample(text, "job_wait_seconds_count", kind=kind) == attempts.count()
    assert sample(text, "job_duration_seconds_count", kind="diagnostics.noop", outcome="succeeded") == 6
    assert sample(text, "dead_letters") == DeadLetter.objects.filter(state="open").count() == 2
    assert sample(text, "workers_alive") == 2
    assert sample(text, "queue_depth", queue="default") == 0
    assert sample(text, "http_request_duration_seconds_count", method="POST", route="api/v1/jobs", status="202") == 11


def test_readyz_names_the_part_that_fails(platform, client):
    reset_metrics()
    redis_client().delete(*list(redis_client().scan_iter("jobplatform:worker:*")) or ["none"])
    no_beat = client.get("/readyz")
    assert "control_loop" in no_beat.json()["failing"]
    platform.beat()
    wait_for(
        lambda: client.get("/readyz").json()["checks"]["control_loop"]["ok"], timeout=30, what="beat's first sweep"
    )
    no_worker = client.get("/readyz")
    assert no_worker.status_code == 503
    assert no_worker.json()["failing"] == ["workers"]

    platform.worker()
    ready = wait_for(
        lambda: (r := client.get("/readyz")).status_code == 200 and r, timeout=20, what="/readyz to see the worker"
    )
    assert ready.json()["checks"]["workers"]["alive"]


def test_readyz_answers_503_naming_redis_when_redis_is_stopped(platform, client, own_redis):
    own_redis.stop()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "redis" in response.json()["failing"]
    assert response.json()["checks"]["database"]["ok"] is True


def test_a_request_id_sent_with_a_submission_appears_in_the_worker_log_lines_for_that_job(platform, client):
    worker = platform.worker(env={"LOG_FORMAT": "json"})
    request_id = f"req-{uuid.uuid4().hex}"

    response = client.post(
        "/api/v1/jobs",
        {"kind": "diagnostics.sleep", "payload": {"seconds": 0.1}},
        format="json",
        HTTP_X_REQUEST_ID=request_id,
    )

    assert response["X-Request-ID"] == request_id
    job_id = response.json()["id"]
    wait_terminal([job_id], timeout=30)
    wait_for(lambda: request_id in worker.log(), timeout=10, what="the request id in the worker log")
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{") and job_id in line]
    ours = [line for line in lines if line.get("job_id") == job_id]
    assert ours, "no JSON log line of the worker carries the job id"
    assert all(line["request_id"] == request_id and line["kind"] == "diagnostics.sleep" for line in ours)


def test_a_bulk_operation_runs_in_beat_while_every_worker_is_busy(platform, client):
    from apps.jobs.models import BulkOperation
    from apps.jobs.operations import bulk_operation_start

    platform.worker(concurrency=2)
    platform.beat()
    payload = {"kind": "diagnostics.sleep", "payload": {"seconds": 30}, "priority": "low"}
    ids = [client.post("/api/v1/jobs", payload, format="json").json()["id"] for _ in range(3)]
    wait_for(
        lambda: Job.objects.filter(id__in=ids, status="running").count() == 2,
        timeout=20,
        what="both worker processes busy",
    )

    operation = bulk_operation_start(action="cancel", target="jobs", filters="kind=diagnostics.sleep", actor="")

    done = wait_for(
        lambda: (op := BulkOperation.objects.get(pk=operation.pk)).state in ("done", "failed") and op,
        timeout=30,
        what="the bulk operation to finish",
    )
    assert done.state == "done", done.message
    assert (done.total, done.processed, done.changed) == (3, 3, 3)
    jobs = wait_terminal(ids, timeout=30)
    assert {j.status for j in jobs.values()} == {"cancelled"}
