"""Admission control: refuse work the platform cannot absorb before anything is written."""

from __future__ import annotations

import redis
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from apps.core.errors import TooManyRequests, Unavailable
from apps.jobs import flow
from apps.jobs.lifecycle.validation import CheckedJob
from apps.jobs.models import ACTIVE_STATUSES, Job, JobStatus


def job_admission_check(*, owner: AbstractBaseUser, queue: str, count: int = 1) -> None:
    """Refuse work the platform cannot absorb, with 429 and a Retry-After computed from the
    queue's measured drain rate: past QUEUE_MAX_DEPTH waiting on the queue, or past the
    client's CLIENT_MAX_IN_FLIGHT. With Redis unreachable the depth is read from PostgreSQL
    instead, and an accepted job waits there for the relay. The client's in-flight count is
    counted in PostgreSQL at most once a second and reserved on atomically in Redis
    (flow.admission_reserve): concurrent submissions cannot together pass the quota."""
    limit = settings.QUEUE_MAX_DEPTH
    in_flight_limit = settings.CLIENT_MAX_IN_FLIGHT
    broker_up = True
    in_flight: int | None = None
    reserved = False

    def count_in_flight() -> int:
        return (
            Job.objects.filter(owner=owner, status__in=ACTIVE_STATUSES).values("id")[: in_flight_limit + count].count()
        )

    try:
        figures = flow.admission_reserve(
            queue=queue, owner_id=owner.pk, count=count, depth_limit=limit, in_flight_limit=in_flight_limit
        )
        if figures.in_flight is None and figures.depth + count <= limit:
            # Not cached this second: count in PostgreSQL, seed the cache (unless a concurrent
            # submission seeded it first) and reserve on it, in one more atomic step.
            figures = flow.admission_reserve(
                queue=queue,
                owner_id=owner.pk,
                count=count,
                depth_limit=limit,
                in_flight_limit=in_flight_limit,
                seed=count_in_flight(),
            )
        depth, in_flight, reserved = figures.depth, figures.in_flight, figures.reserved
    except redis.RedisError as broker_error:
        broker_up = False
        # The broker is away: count the backlog in PostgreSQL. Under the limit the job is
        # accepted and waits for the relay; over it, say the service is unavailable.
        depth = Job.objects.filter(queue=queue, status=JobStatus.QUEUED)[: limit + count].count()
        if depth + count > limit:
            wait = settings.RETRY_AFTER_MAX_SECONDS
            raise Unavailable(
                f"The broker is unreachable and the {queue} queue's backlog is at its limit; retry in {wait} s.",
                code="broker_unavailable",
                headers={"Retry-After": str(wait)},
                details={"queue": queue, "depth": depth, "limit": limit},
            ) from broker_error

    def drain_rate() -> float:
        # Read only when refusing: the common, admitted submission skips this round trip.
        if not broker_up:
            return 0.0
        try:
            return flow.drain_rate(queue)
        except redis.RedisError:
            return 0.0

    if depth + count > limit:
        rate = drain_rate()
        wait = flow.retry_after_seconds(excess=depth + count - limit, rate=rate)
        raise TooManyRequests(
            f"The {queue} queue is full ({depth} waiting, limit {limit}); retry in {wait} s.",
            code="queue_full",
            headers={"Retry-After": str(wait)},
            details={"queue": queue, "depth": depth, "limit": limit, "drain_per_second": round(rate, 2)},
        )
    if in_flight is None:
        # Only with the broker away: the count alone decides (nothing to reserve on).
        in_flight = count_in_flight()
        reserved = in_flight + count <= in_flight_limit
    if not reserved:
        wait = flow.retry_after_seconds(excess=max(1, in_flight + count - in_flight_limit), rate=drain_rate())
        raise TooManyRequests(
            f"You have {in_flight} jobs in flight (limit {in_flight_limit}); retry in {wait} s.",
            code="too_many_in_flight",
            headers={"Retry-After": str(wait)},
            details={"in_flight": in_flight, "limit": in_flight_limit},
        )


def jobs_admit(*, owner: AbstractBaseUser, checked: list[CheckedJob]) -> None:
    """Admission-check submissions per queue: the depth and the client's in-flight count,
    each with that queue's share of them."""
    per_queue: dict[str, int] = {}
    for job in checked:
        per_queue[job.queue] = per_queue.get(job.queue, 0) + 1
    for queue, count in per_queue.items():
        job_admission_check(owner=owner, queue=queue, count=count)
