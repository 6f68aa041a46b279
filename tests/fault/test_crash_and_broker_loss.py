"""Fault tests: workers killed with SIGKILL, a handler that kills its own worker, Redis
losing its data, a publish that never happened. Each runs real processes and stops them."""

from __future__ import annotations

import signal

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from apps.deadletters.models import DeadLetter
from apps.jobs.lifecycle import job_submit
from apps.jobs.models import Job, JobAttempt
from apps.jobs.reconciler import BROKER_SENTINEL_KEY
from tests.integration.helpers import wait_terminal
from tests.processes import RedisServer, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.fault]


@pytest.fixture
def owner(transactional_db):
    return get_user_model().objects.create(username="fault-client")


def test_jobs_of_a_worker_killed_with_sigkill_finish_on_another_worker_each_exactly_once(platform, owner):
    first = platform.worker(concurrency=2)
    platform.beat()
    ids = [str(job_submit(owner=owner, kind="diagnostics.sleep", payload={"seconds": 2}).id) for _ in range(4)]
    wait_for(
        lambda: Job.objects.filter(id__in=ids, status="running").count() == 2,
        timeout=20,
        what="two jobs running on the first worker",
    )

    first.kill(signal.SIGKILL)  # the main process and its pool children, no goodbye
    first.proc.wait(timeout=10)
    killed_at = timezone.now()
    platform.worker(concurrency=2)

    jobs = wait_terminal(ids, timeout=60)
    assert {j.status for j in jobs.values()} == {"succeeded"}
    for job_id in ids:
        outcomes = list(JobAttempt.objects.filter(job_id=job_id).values_list("outcome", flat=True))
        assert outcomes.count("succeeded") == 1, f"job {job_id} completed {outcomes.count('succeeded')} times"
    lost = JobAttempt.objects.filter(job_id__in=ids, outcome="lost")
    assert lost.count() == 2  # the two that were running when the worker died
    recovered_after = max((j.finished_at - killed_at).total_seconds() for j in jobs.values())
    assert recovered_after < 60


def test_a_job_that_kills_its_worker_every_time_is_parked_and_the_worker_keeps_serving(platform, owner):
    worker = platform.worker(concurrency=1)
    platform.beat()
    crash = job_submit(owner=owner, kind="diagnostics.crash", payload={})

    job = wait_terminal([crash.id], timeout=60)[str(crash.id)]
    assert job.status == "failed"
    assert job.attempts == job.max_attempts == 2
    assert job.error_type == "WorkerLost"
    assert DeadLetter.objects.filter(job_id=crash.id, state="open").exists()
    assert set(JobAttempt.objects.filter(job_id=crash.id).values_list("outcome", flat=True)) == {"lost"}

    assert worker.proc.poll() is None, "the worker's main process died with its child"
    after = job_submit(owner=owner, kind="diagnostics.noop", payload={})
    assert wait_terminal([after.id], timeout=30)[str(after.id)].status == "succeeded"


def test_every_queued_job_runs_once_after_redis_loses_its_data(platform, owner, own_redis):
    # The reconciler notices the loss; no worker runs yet. The queue's window is wider than the
    # backlog, so every job is on the broker when Redis loses it.
    platform.beat(DISPATCH_WINDOW_MIN="200")
    wait_for(
        lambda: own_redis_command(own_redis, "EXISTS", BROKER_SENTINEL_KEY),
        timeout=15,
        what="the reconciler's first sweep",
    )
    ids = [str(job.id) for job in (job_submit(owner=owner, kind="diagnostics.noop", payload={}) for _ in range(100))]
    wait_for(
        lambda: Job.objects.filter(id__in=ids, published_at__isnull=False).count() == 100,
        timeout=10,
        what="all 100 jobs published",
    )
    wait_for(lambda: own_redis_llen(own_redis, "default") == 100, timeout=10, what="100 messages on the queue")

    own_redis_command(own_redis, "FLUSHALL")
    assert own_redis_llen(own_redis, "default") == 0
    platform.worker(concurrency=2)

    jobs = wait_terminal(ids, timeout=120)
    assert {j.status for j in jobs.values()} == {"succeeded"}
    assert {j.attempts for j in jobs.values()} == {1}, "a job ran more than once after the broker loss"
    assert JobAttempt.objects.filter(job_id__in=ids).count() == 100


def test_queued_jobs_run_after_their_queues_messages_are_lost_while_the_broker_sentinel_survives(
    platform, owner, own_redis
):
    """Redis keeps its other keys (the sentinel among them) but one queue's list is gone: an
    operator's DEL, an eviction, a failover to a replica that lagged. The repair step sees its
    sentinel and republishes nothing; the stranded-job sweep (apps.jobs.stranded) publishes
    these jobs again."""
    platform.beat()
    wait_for(
        lambda: own_redis_command(own_redis, "EXISTS", BROKER_SENTINEL_KEY),
        timeout=15,
        what="the reconciler's first sweep",
    )
    ids = [str(job.id) for job in (job_submit(owner=owner, kind="diagnostics.noop", payload={}) for _ in range(5))]
    wait_for(lambda: own_redis_llen(own_redis, "default") == 5, timeout=10, what="5 messages on the queue")

    own_redis_command(own_redis, "DEL", "default")
    assert own_redis_command(own_redis, "EXISTS", BROKER_SENTINEL_KEY) == 1
    platform.worker()

    jobs = wait_terminal(ids, timeout=20)
    assert {j.status for j in jobs.values()} == {"succeeded"}
    assert {j.attempts for j in jobs.values()} == {1}


def test_a_job_committed_but_never_published_is_published_by_the_reconciler(platform, owner):
    platform.worker()
    # The web process "dies" between commit and publish: the on_commit hook never runs.
    with transaction.atomic():
        job = job_submit(owner=owner, kind="diagnostics.noop", payload={})
        transaction.get_connection().run_on_commit.clear()
    assert Job.objects.get(id=job.id).published_at is None

    platform.beat()

    done = wait_terminal([job.id], timeout=30)[str(job.id)]
    assert done.status == "succeeded"
    assert done.published_at is not None


def test_a_job_submitted_while_redis_is_down_is_accepted_and_runs_when_redis_is_back(platform, owner, own_redis):
    platform.beat()
    own_redis.stop()

    job = job_submit(owner=owner, kind="diagnostics.noop", payload={})
    assert Job.objects.get(id=job.id).published_at is None

    own_redis.start()
    platform.worker()
    assert wait_terminal([job.id], timeout=60)[str(job.id)].status == "succeeded"


def own_redis_command(server: RedisServer, *args: str) -> object:
    import redis

    return redis.Redis.from_url(server.url).execute_command(*args)


def own_redis_llen(server: RedisServer, key: str) -> int:
    return int(own_redis_command(server, "LLEN", key))


def test_while_redis_is_down_the_api_accepts_durably_to_its_limit_then_answers_503_never_500(
    platform, owner, own_redis, settings
):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    settings.QUEUE_MAX_DEPTH = 3  # measured from PostgreSQL while Redis is away
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    platform.beat()
    own_redis.stop()

    answers = [
        client.post("/api/v1/jobs", {"kind": "diagnostics.noop", "payload": {}}, format="json") for _ in range(5)
    ]

    assert [a.status_code for a in answers] == [202, 202, 202, 503, 503]
    assert answers[3].json()["error"]["code"] == "broker_unavailable"
    assert all(int(a["Retry-After"]) >= 1 for a in answers[3:])
    accepted = [a.json()["id"] for a in answers[:3]]
    assert Job.objects.filter(id__in=accepted, published_at__isnull=True).count() == 3

    own_redis.start()
    platform.worker()
    jobs = wait_terminal(accepted, timeout=60)
    assert {j.status for j in jobs.values()} == {"succeeded"}
