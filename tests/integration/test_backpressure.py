"""Backpressure end to end: workers hold no more than they run, the API refuses what it
cannot absorb, priorities, per-kind limits, time limits, scheduled jobs."""

from __future__ import annotations

import itertools
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.core.redis import redis_client
from apps.deadletters.models import DeadLetter
from config.celery import app as celery_app
from tests.integration.helpers import wait_terminal
from tests.processes import wait_for

pytestmark = pytest.mark.integration


def client_for(username: str) -> APIClient:
    user = get_user_model().objects.create(username=username)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def submit(client: APIClient, kind: str = "diagnostics.noop", payload: dict | None = None, **extra):
    return client.post("/api/v1/jobs", {"kind": kind, "payload": payload or {}, **extra}, format="json")


def worker_rss_kb(pid: int) -> int:
    """Resident memory of a worker: its main process and every process in its group."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if os.getpgid(int(status.parent.name)) != pid:
                continue
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


def test_a_running_worker_prefetches_no_more_than_it_runs_and_acknowledges_late(platform):
    worker = platform.worker(concurrency=2, name="stats")
    destination = [f"stats@{os.uname().nodename}"]
    inspect = celery_app.control.inspect(destination=destination, timeout=5)

    stats = wait_for(lambda: inspect.stats(), timeout=20, what="the worker's stats")
    conf = wait_for(lambda: inspect.conf(), timeout=20, what="the worker's configuration")

    figures = next(iter(stats.values()))
    assert figures["pool"]["max-concurrency"] == 2
    assert figures["prefetch_count"] <= figures["pool"]["max-concurrency"]
    # The worker reports its configuration under the Django settings' CELERY_ names.
    settings = next(iter(conf.values()))
    assert settings["CELERY_WORKER_PREFETCH_MULTIPLIER"] == 1
    assert settings["CELERY_TASK_ACKS_LATE"] is True
    assert settings["CELERY_TASK_REJECT_ON_WORKER_LOST"] is True
    assert settings["CELERY_WORKER_MAX_TASKS_PER_CHILD"] >= 1
    assert settings["CELERY_WORKER_MAX_MEMORY_PER_CHILD"] >= 1
    # Its broker connections keep one Redis client per channel (workers.transport).
    assert figures["broker"]["transport"] == "workers.transport:Transport"
    assert worker.proc.poll() is None


def test_a_full_queue_answers_429_with_retry_after_and_never_passes_its_limit(platform, settings):
    settings.QUEUE_MAX_DEPTH = 50
    redis_client().delete("default")
    client = client_for("burst-client")

    codes: dict[int, int] = {}
    retry_after = []
    for _ in range(90):
        response = submit(client)
        codes[response.status_code] = codes.get(response.status_code, 0) + 1
        if response.status_code == 429:
            retry_after.append(int(response["Retry-After"]))
            assert response.json()["error"]["code"] == "queue_full"

    assert codes == {202: 50, 429: 40}
    assert redis_client().llen("default") == 50
    assert all(1 <= seconds <= settings.RETRY_AFTER_MAX_SECONDS for seconds in retry_after)


def test_retry_after_follows_the_measured_drain_rate(platform, settings):
    settings.QUEUE_MAX_DEPTH = 1
    r = redis_client()
    r.delete("low")
    client = client_for("drain-client")
    assert submit(client, priority="low").status_code == 202

    # No worker has taken anything from `low` this minute: the longest wait.
    slow = submit(client, priority="low")
    assert slow.status_code == 429
    assert int(slow["Retry-After"]) == settings.RETRY_AFTER_MAX_SECONDS

    # Workers took 30 jobs in the last minute: 0.5 a second, so 2 s for one job's room.
    now = int(time.time())
    for second in range(now - 30, now):
        r.set(f"jobplatform:drain:low:{second}", 1, ex=120)
    fast = submit(client, priority="low")
    assert fast.status_code == 429
    assert int(fast["Retry-After"]) == 2


def test_a_client_over_its_in_flight_limit_gets_429_while_another_is_served(platform, settings):
    settings.CLIENT_MAX_IN_FLIGHT = 3
    greedy, polite = client_for("greedy"), client_for("polite")

    assert [submit(greedy).status_code for _ in range(3)] == [202, 202, 202]
    refused = submit(greedy)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_in_flight"
    assert int(refused["Retry-After"]) >= 1
    assert submit(polite).status_code == 202


def test_a_request_throttle_answers_429_with_retry_after(platform, settings):
    settings.API_THROTTLE_RATE = "3/min"
    client = client_for("chatty")

    answers = [client.get("/api/v1/kinds") for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["error"]["code"] == "throttled"
    assert int(answers[-1]["Retry-After"]) >= 1
    assert client_for("quiet").get("/api/v1/kinds").status_code == 200


def test_a_high_job_starts_before_a_backlog_of_low_ones_drains(platform):
    client = client_for("priority-client")
    lows = [submit(client, "diagnostics.sleep", {"seconds": 0.1}, priority="low").json()["id"] for _ in range(30)]
    high = submit(client, "diagnostics.sleep", {"seconds": 0.1}, priority="high").json()["id"]

    platform.worker(concurrency=1)

    jobs = wait_terminal([*lows, high], timeout=60)
    started_high = jobs[high].started_at
    before = sum(1 for i in lows if jobs[i].started_at < started_high)
    assert before <= 5, f"{before} low jobs started before the high one"


def test_a_handler_that_hangs_past_its_hard_limit_ends_that_attempt_and_the_worker_goes_on(platform):
    worker = platform.worker(concurrency=1)
    client = client_for("hang-client")
    hung = submit(client, "testing.hang", {"seconds": 30}).json()["id"]
    after = submit(client).json()["id"]

    jobs = wait_terminal([hung, after], timeout=30)

    assert jobs[hung].status == "failed"
    assert jobs[hung].error_type == "TimeLimitExceeded"
    assert "hard time limit" in jobs[hung].error_message
    assert DeadLetter.objects.filter(job_id=hung).exists()
    assert jobs[after].status == "succeeded"
    assert worker.proc.poll() is None
    assert "Hard time limit" in worker.log()


def test_a_kind_with_a_concurrency_limit_never_runs_two_at_once_across_workers(platform):
    platform.worker(concurrency=2)
    platform.worker(concurrency=2)
    platform.beat()
    client = client_for("serial-client")
    ids = [submit(client, "testing.serial", {"seconds": 0.5}).json()["id"] for _ in range(4)]

    jobs = sorted(wait_terminal(ids, timeout=60).values(), key=lambda j: j.started_at)

    assert {j.status for j in jobs} == {"succeeded"}
    assert {j.attempts for j in jobs} == {1}  # waiting for the slot spends no attempt
    for earlier, later in itertools.pairwise(jobs):
        assert later.started_at >= earlier.finished_at, "two serial jobs overlapped"


def test_a_kind_with_a_rate_limit_starts_no_faster_than_its_rate(platform):
    platform.worker(concurrency=2)
    platform.beat()
    client = client_for("rate-client")
    redis_client().delete("jobplatform:rate:testing.limited")
    ids = [submit(client, "testing.limited").json()["id"] for _ in range(6)]

    jobs = wait_terminal(ids, timeout=60)

    starts = sorted(j.started_at for j in jobs.values())
    # 2 a second with a burst of 2: the last of 6 starts at least 2 s after the first.
    assert (starts[-1] - starts[0]).total_seconds() >= 1.8
    assert {j.attempts for j in jobs.values()} == {1}


def test_a_scheduled_job_waits_in_the_database_and_runs_when_due(platform):
    platform.worker()
    platform.beat()
    client = client_for("schedule-client")
    run_at = timezone.now() + timedelta(seconds=3)
    job_id = submit(client, run_at=run_at.isoformat()).json()["id"]

    assert redis_client().llen("default") == 0 or job_id not in str(redis_client().lrange("default", 0, -1))
    job = wait_terminal([job_id], timeout=30)[job_id]
    assert job.status == "succeeded"
    assert job.started_at >= run_at


def test_a_leaking_handler_cannot_grow_a_worker_process_forever(platform):
    platform.worker(concurrency=1, env={"WORKER_MAX_TASKS_PER_CHILD": "2"})
    client = client_for("leak-client")
    ids = [submit(client, "testing.leak", {"mb": 5}).json()["id"] for _ in range(6)]

    jobs = wait_terminal(ids, timeout=60)

    pids = [j.result["pid"] for j in sorted(jobs.values(), key=lambda j: j.started_at)]
    assert len(set(pids)) == 3, f"child processes were not replaced every 2 jobs: {pids}"


def test_a_burst_ten_times_what_workers_drain_is_absorbed_without_5xx_and_with_flat_memory(platform, settings):
    settings.QUEUE_MAX_DEPTH = 30
    worker = platform.worker(concurrency=2)
    platform.beat()
    client = client_for("burst")
    warmup = [submit(client).json()["id"] for _ in range(20)]
    wait_terminal(warmup, timeout=60)
    rss_before = worker_rss_kb(worker.pid)

    # Two processes sleeping 0.2 s drain 10 jobs a second; the client submits ~100 a second.
    accepted, codes = [], {}
    deadline = time.monotonic() + 60
    while len(accepted) < 200 and time.monotonic() < deadline:
        response = submit(client, "diagnostics.sleep", {"seconds": 0.2})
        codes[response.status_code] = codes.get(response.status_code, 0) + 1
        if response.status_code == 202:
            accepted.append(response.json()["id"])
        else:
            time.sleep(0.01)

    assert all(code < 500 for code in codes), codes
    assert codes.get(429, 0) > 0, "the burst never met the queue limit"
    jobs = wait_terminal(accepted, timeout=120)
    assert {j.status for j in jobs.values()} == {"succeeded"}
    assert len(jobs) == len(accepted)
    rss_after = worker_rss_kb(worker.pid)
    assert rss_after < rss_before * 1.5 + 20_000, f"worker memory grew from {rss_before} kB to {rss_after} kB"
    worker.kill(signal.SIGTERM)
