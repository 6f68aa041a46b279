"""Fair dispatch (apps.jobs.dispatch) against real PostgreSQL and Redis: the window a
submission may use at once, the round-robin fill from the jobs held in PostgreSQL, the held
count admission reads, and what a pause or a future run_at keeps back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.core.errors import TooManyRequests
from apps.core.redis import redis_client
from apps.jobs import dispatch, lifecycle, pauses
from apps.jobs.flow import held_key, window_key
from apps.jobs.models import Job
from tests.factories import JobFactory, UserFactory
from tests.helpers.jobs import broker_messages


def in_consumption_order(queue: str) -> list[str]:
    """The job ids on a queue in the order workers take them (kombu pushes left, pops right)."""
    return [m["args"][0] for m in reversed(broker_messages(queue))]


def open_window(queue: str, size: int) -> None:
    redis_client().set(window_key(queue), size, ex=60)


def held_for(owner, count: int, *, queue: str = "default", start=None) -> list[Job]:
    start = start or timezone.now() - timedelta(minutes=1)
    return [
        JobFactory(owner=owner, queue=queue, created_at=start + timedelta(milliseconds=position))
        for position in range(count)
    ]


def test_a_fill_takes_every_clients_oldest_job_in_turn(db):
    big, small, third = UserFactory(), UserFactory(), UserFactory()
    big_jobs = held_for(big, 10)
    small_jobs = held_for(small, 2, start=timezone.now() - timedelta(seconds=30))
    third_jobs = held_for(third, 1, start=timezone.now() - timedelta(seconds=10))

    fill = dispatch.queue_fill("default", room=6)

    assert fill == dispatch.Fill(sent=6, exhausted=False)
    ids = [str(j.id) for j in (big_jobs[0], small_jobs[0], third_jobs[0], big_jobs[1], small_jobs[1], big_jobs[2])]
    assert in_consumption_order("default") == ids
    assert Job.objects.filter(published_at__isnull=True).count() == 7

    rest = dispatch.queue_fill("default", room=100)

    assert rest == dispatch.Fill(sent=7, exhausted=True)
    assert in_consumption_order("default")[6:] == [str(j.id) for j in big_jobs[3:]]


def test_a_fill_leaves_paused_kinds_future_jobs_and_other_queues_alone(db):
    owner = UserFactory()
    due = held_for(owner, 1)[0]
    later = JobFactory(owner=owner, run_at=timezone.now() + timedelta(hours=1))
    other_queue = JobFactory(owner=owner, queue="low")
    paused_kind = JobFactory(owner=owner, kind="diagnostics.sleep", payload={"seconds": 0})
    pauses.kind_pause(name="diagnostics.sleep")

    assert dispatch.queue_fill("default", room=10).sent == 1

    assert in_consumption_order("default") == [str(due.id)]
    for job in (later, other_queue, paused_kind):
        job.refresh_from_db()
        assert job.published_at is None


def test_a_submission_goes_to_redis_at_once_while_its_window_has_room(db, django_capture_on_commit_callbacks):
    owner = UserFactory()
    open_window("default", 2)
    with django_capture_on_commit_callbacks(execute=True):
        first = lifecycle.job_submit(owner=owner, kind="diagnostics.noop", payload={})
    first.refresh_from_db()
    assert first.published_at is not None

    # A batch larger than the room: what fits goes, the rest waits its turn in PostgreSQL and
    # the queue is marked waiting, so later submissions queue behind it.
    with django_capture_on_commit_callbacks(execute=True):
        batch = lifecycle.job_submit_batch(owner=owner, jobs=[{"kind": "diagnostics.noop", "payload": {}}] * 3)
    published = [job for job in Job.objects.filter(id__in=[j.id for j in batch]) if job.published_at]
    assert len(published) == 1
    assert redis_client().exists(dispatch.waiting_key("default"))
    assert len(broker_messages("default")) == 2

    redis_client().delete(window_key("default"))
    redis_client().lpop("default")  # a worker took one: room again, but jobs still wait
    open_window("default", 2)
    with django_capture_on_commit_callbacks(execute=True):
        behind = lifecycle.job_submit(owner=owner, kind="diagnostics.noop", payload={})
    behind.refresh_from_db()
    assert behind.published_at is None


def test_without_a_dispatcher_every_submission_is_published_at_once(db, django_capture_on_commit_callbacks):
    owner = UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        jobs = [lifecycle.job_submit(owner=owner, kind="diagnostics.noop", payload={}) for _ in range(40)]
    assert not Job.objects.filter(id__in=[j.id for j in jobs], published_at__isnull=True).exists()


def test_a_pass_sizes_the_windows_fills_them_and_counts_what_is_held(db):
    owner = UserFactory()
    held_for(owner, 50)

    with override_settings(DISPATCH_WINDOW_MIN=20):
        sent = dispatch.dispatch_pass(full=True)

    assert sent == 20
    assert int(redis_client().get(window_key("default"))) == 20
    assert int(redis_client().get(held_key("default"))) == 30
    assert redis_client().exists(dispatch.waiting_key("default"))

    # A quick pass fills only once half the window is free.
    redis_client().rpop("default", 9)
    assert dispatch.dispatch_pass(full=False) == 0
    redis_client().rpop("default", 1)
    assert dispatch.dispatch_pass(full=False) == 10
    assert int(redis_client().get(held_key("default"))) == 20


def test_a_paused_queue_is_not_filled_but_its_held_jobs_still_count(db):
    owner = UserFactory()
    held_for(owner, 5)
    pauses.queue_pause(name="default")

    assert dispatch.dispatch_pass(full=True) == 0
    assert int(redis_client().get(held_key("default"))) == 5
    assert broker_messages("default") == []


@override_settings(QUEUE_MAX_DEPTH=10)
def test_admission_counts_the_jobs_held_in_postgresql(db, django_capture_on_commit_callbacks):
    owner = UserFactory()
    open_window("default", 3)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(10):
            lifecycle.job_submit(owner=owner, kind="diagnostics.noop", payload={})
    assert len(broker_messages("default")) == 3
    assert int(redis_client().get(held_key("default"))) == 7

    with pytest.raises(TooManyRequests) as refused:
        lifecycle.job_submit(owner=owner, kind="diagnostics.noop", payload={})
    assert refused.value.details["depth"] == 10
