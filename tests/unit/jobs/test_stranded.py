"""The stranded-job sweep (apps.jobs.stranded): its decision rules as a plain function (an empty
queue, FIFO order behind the message at a queue's tail, messages workers hold, the grace), then
the sweep against the private Redis: a queue's messages deleted, every job published again
once, and nothing published again while its message waits."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from apps.jobs import stranded
from apps.jobs.models import Job, JobStatus
from apps.jobs.publish import JobMessage, publish_jobs_rollback_unsafe
from apps.jobs.stranded import BrokerView, Candidate, QueueView, stranded_decide
from tests.factories import JobFactory

GRACE = timedelta(seconds=30)
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def candidate(published_seconds_ago: float, queue: str = "default") -> Candidate:
    return Candidate(str(uuid.uuid4()), "diagnostics.noop", queue, "", NOW - timedelta(seconds=published_seconds_ago))


def view(queues: dict[str, QueueView], held: dict[str, float] | None = None) -> BrokerView:
    return BrokerView(taken_at=NOW, queues=queues, held=held or {})


def decide(candidates: list[Candidate], broker: BrokerView, oldest: dict[str, datetime] | None = None) -> list:
    return stranded_decide(candidates=candidates, view=broker, oldest_published=oldest or {}, grace=GRACE)


def test_a_job_of_an_empty_queue_past_the_grace_is_stranded():
    old, recent = candidate(60), candidate(10)
    assert decide([old, recent], view({"default": QueueView(depth=0)})) == [old]


def test_a_job_held_by_a_worker_is_not_stranded_until_the_worker_held_it_past_the_grace():
    running, abandoned = candidate(120), candidate(120)
    held = {
        running.id: (NOW - timedelta(seconds=5)).timestamp(),
        abandoned.id: (NOW - timedelta(minutes=5)).timestamp(),
    }
    assert decide([running, abandoned], view({"default": QueueView(depth=0)}, held)) == [abandoned]


def test_a_job_published_well_before_the_message_at_its_queues_tail_is_stranded():
    tail_published = NOW - timedelta(seconds=60)
    lost = candidate(200)  # 140 s before the tail's publish: FIFO says its turn came and went
    waiting = candidate(70)  # within the grace of the tail's publish: it may be in the list
    broker = view({"default": QueueView(depth=500, oldest_job_id=str(uuid.uuid4()))})
    assert decide([lost, waiting], broker, {"default": tail_published}) == [lost]


def test_a_nonempty_queue_whose_tail_is_unknown_strands_nothing():
    lost = candidate(200)
    # The tail is a message kombu put back (or not a job's), so its publish time says nothing.
    assert decide([lost], view({"default": QueueView(depth=3)})) == []
    # Messages wait in another priority's list: FIFO holds only within one list.
    broker = view({"default": QueueView(depth=3, oldest_job_id="x", other_lists=True)})
    assert decide([lost], broker, {"default": NOW - timedelta(seconds=60)}) == []


def test_queues_are_judged_each_on_its_own():
    high, low = candidate(60, "high"), candidate(60, "low")
    broker = view({"high": QueueView(depth=0), "low": QueueView(depth=10, oldest_job_id="x")})
    assert decide([high, low], broker, {"low": NOW - timedelta(seconds=40)}) == [high]


# --- against the private Redis ------------------------------------------------------------------

QUEUE = "stranded-unit"


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(QUEUE)
    yield client
    client.delete(QUEUE)
    client.close()


def published_jobs(n: int, *, seconds_ago: float) -> list[Job]:
    jobs = [JobFactory(queue=QUEUE) for _ in range(n)]
    assert publish_jobs_rollback_unsafe([JobMessage.of(job) for job in jobs]) == [str(job.id) for job in jobs]
    Job.objects.filter(id__in=[job.id for job in jobs]).update(
        published_at=timezone.now() - timedelta(seconds=seconds_ago)
    )
    return jobs


def messages_for(client: redis.Redis) -> list[str]:
    return [stranded.job_id_of(json.loads(raw)) for raw in client.lrange(QUEUE, 0, -1)]


@pytest.mark.django_db
def test_the_sweep_publishes_again_once_every_job_whose_message_was_deleted(broker):
    jobs = published_jobs(5, seconds_ago=120)
    assert sorted(messages_for(broker)) == sorted(str(job.id) for job in jobs)
    broker.delete(QUEUE)  # an operator's DEL, or `celery purge`

    assert stranded.jobs_republish_stranded(queues=[QUEUE]) == 5
    assert sorted(messages_for(broker)) == sorted(str(job.id) for job in jobs)
    for job in Job.objects.filter(id__in=[job.id for job in jobs]):
        assert job.status == JobStatus.QUEUED
        assert timezone.now() - job.published_at < timedelta(seconds=5)  # stamped again

    # Their messages wait again: the next check publishes nothing.
    assert stranded.jobs_republish_stranded(queues=[QUEUE]) == 0
    assert len(messages_for(broker)) == 5


@pytest.mark.django_db
def test_the_sweep_leaves_jobs_whose_messages_wait_and_finds_one_taken_out_by_hand(broker):
    lost = published_jobs(1, seconds_ago=300)[0]
    waiting = published_jobs(3, seconds_ago=120)
    assert stranded.jobs_republish_stranded(queues=[QUEUE]) == 0

    removed = [raw for raw in broker.lrange(QUEUE, 0, -1) if str(lost.id) in raw.decode()]
    broker.lrem(QUEUE, 0, removed[0])  # LREM by hand: the oldest message is gone, the rest wait
    assert stranded.jobs_republish_stranded(queues=[QUEUE]) == 1
    assert sorted(messages_for(broker)) == sorted([str(lost.id), *(str(job.id) for job in waiting)])


@pytest.mark.django_db
def test_the_sweep_waits_out_the_grace(broker):
    jobs = published_jobs(2, seconds_ago=0)
    broker.delete(QUEUE)
    assert stranded.jobs_republish_stranded(queues=[QUEUE]) == 0
    Job.objects.filter(id__in=[job.id for job in jobs]).update(
        published_at=timezone.now() - timedelta(seconds=settings.STRANDED_GRACE_SECONDS + 1)
    )
    assert stranded.jobs_republish_stranded(queues=[QUEUE]) == 2


@pytest.mark.django_db
def test_a_job_a_worker_holds_unacknowledged_is_not_published_again(broker):
    job = published_jobs(1, seconds_ago=120)[0]
    raw = broker.rpop(QUEUE)  # what a worker's BRPOP does, then kombu's QoS.append
    tag = f"unit-{uuid.uuid4()}"
    broker.hset("unacked", tag, json.dumps([json.loads(raw), "", QUEUE]))
    broker.zadd("unacked_index", {tag: timezone.now().timestamp()})
    try:
        assert stranded.jobs_republish_stranded(queues=[QUEUE]) == 0
        # Held for longer than the grace and never claimed: that worker died with it.
        broker.zadd("unacked_index", {tag: timezone.now().timestamp() - settings.STRANDED_GRACE_SECONDS - 5})
        assert stranded.jobs_republish_stranded(queues=[QUEUE]) == 1
        assert messages_for(broker) == [str(job.id)]
    finally:
        broker.hdel("unacked", tag)
        broker.zrem("unacked_index", tag)


def test_a_job_is_read_from_a_message_as_the_publisher_writes_it():
    job_id = str(uuid.uuid4())
    body = json.dumps([[job_id], {}, {}]).encode()
    message = {
        "body": base64.b64encode(body).decode(),
        "headers": {"argsrepr": repr([job_id])},
        "properties": {"body_encoding": "base64"},
    }
    assert stranded.job_id_of(message) == job_id
    assert stranded.job_id_of({"body": "not base64", "headers": {"argsrepr": repr([job_id])}}) == job_id
    assert stranded.job_id_of({"body": "", "headers": {"argsrepr": "[1, 2]"}}) is None
