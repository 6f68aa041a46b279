from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import TruncMinute
from django.utils import timezone
from redis.exceptions import RedisError

from apps.core.redis import key, redis_client
from apps.jobs.flow import held_key, window_key
from apps.jobs.models import Job, JobAttempt, JobStatus, Pause
from apps.jobs.registry import registry
from apps.jobs.stranded import queue_lists

WORKER_KEY_PREFIX = key("worker:")


def oldest_waiting_seconds(queues: Iterable[str]) -> dict[str, float]:
    """Per queue, how long its oldest queued job (due now) has waited; 0 when none waits.
    One indexed look-up per queue (job_queued_by_queue)."""
    now = timezone.now()
    figures = {}
    for queue in queues:
        oldest = Job.objects.filter(status=JobStatus.QUEUED, queue=queue, run_at__isnull=True).aggregate(
            oldest=Min("created_at")
        )["oldest"]
        figures[queue] = (now - oldest).total_seconds() if oldest else 0.0
    return figures


def live_workers() -> list[str]:
    """Worker host names whose heartbeat key has not expired (workers.heartbeat)."""
    r = redis_client()
    return sorted(k.decode().removeprefix(WORKER_KEY_PREFIX) for k in r.scan_iter(f"{WORKER_KEY_PREFIX}*", count=100))


# --- the admin's operations dashboard (apps/ops/admin.py) ------------------------------------


@dataclass(frozen=True)
class QueueFigures:
    name: str
    depth: int | None  # messages on the Redis list; None when Redis did not answer
    oldest_age_seconds: float  # the oldest queued job due now, from PostgreSQL; 0 when none
    paused: bool = False
    paused_by: str = ""
    paused_at: datetime | None = None
    # Fair dispatch (apps.jobs.dispatch): jobs held in PostgreSQL for their turn, and the
    # window's size (None: no dispatcher keeps one now, or Redis did not answer).
    held: int | None = None
    window: int | None = None


def queue_figures(queues: Sequence[str], *, paused: dict[tuple[str, str], Pause] | None = None) -> list[QueueFigures]:
    """Each queue's depth (LLEN of its Redis lists, one per priority step, in one pipelined
    round trip), the age of its oldest queued job (one probe of job_queued_by_queue each)
    and whether it is paused (one query for all)."""
    try:
        pipe = redis_client().pipeline(transaction=False)
        for queue in queues:
            for name in queue_lists(queue):
                pipe.llen(name)
            pipe.mget(held_key(queue), window_key(queue))
        replies = pipe.execute()
        steps = len(replies) // len(queues) if queues else 0
        depths: list[int | None] = [
            sum(int(n) for n in replies[i * steps : (i + 1) * steps - 1]) for i in range(len(queues))
        ]
        dispatch = [replies[(i + 1) * steps - 1] for i in range(len(queues))]
    except RedisError:
        depths = [None] * len(queues)
        dispatch = [[None, None]] * len(queues)
    ages = oldest_waiting_seconds(queues)
    paused = pauses_by_target() if paused is None else paused
    return [
        QueueFigures(
            q,
            d,
            ages[q],
            *_pause_fields(paused.get((Pause.Target.QUEUE, q))),
            held=None if window is None else int(held or 0),
            window=None if window is None else int(window),
        )
        for q, d, (held, window) in zip(queues, depths, dispatch, strict=True)
    ]


@dataclass(frozen=True)
class KindPause:
    name: str
    queue: str
    paused: bool
    paused_by: str = ""
    paused_at: datetime | None = None


def kind_pauses(*, paused: dict[tuple[str, str], Pause] | None = None) -> list[KindPause]:
    """Every kind, its queue and whether it is paused (one query, unless `paused` is given)."""
    paused = pauses_by_target() if paused is None else paused
    return [
        KindPause(k.name, k.queue_for(k.priority), *_pause_fields(paused.get((Pause.Target.KIND, k.name))))
        for k in registry
    ]


def pauses_by_target() -> dict[tuple[str, str], Pause]:
    """Every pause, by (target type, name)."""
    return {(p.target_type, p.name): p for p in Pause.objects.all()}


def _pause_fields(pause: Pause | None) -> tuple[bool, str, datetime | None]:
    return (False, "", None) if pause is None else (True, pause.paused_by, pause.paused_at)


@dataclass(frozen=True)
class MinuteFigures:
    minute: datetime  # the minute's start (UTC)
    started: int  # attempts started in it
    succeeded: int  # attempts that ended in success in it
    failed: int  # attempts that ended in an error (retryable or permanent) or were lost in it


FAILED_OUTCOMES = (JobAttempt.Outcome.FAILED, JobAttempt.Outcome.PERMANENT, JobAttempt.Outcome.LOST)


def attempts_per_minute(*, minutes: int = 60, now: datetime | None = None) -> list[MinuteFigures]:
    """Attempts started, succeeded and failed per minute over the last `minutes`, oldest
    first, every minute present. Both queries read attempt_finished: an attempt started in
    the window has either finished in it (finished_at >= its start) or not yet (NULL), so
    the index finds every row either query needs and no other."""
    now = now or timezone.now()
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    started, ended = attempts_per_minute_queries(first=first)
    counts: dict[datetime, list[int]] = {}
    for row in started:
        counts.setdefault(_utc_minute(row["minute"]), [0, 0, 0])[0] = row["n"]
    for row in ended:
        figures = counts.setdefault(_utc_minute(row["minute"]), [0, 0, 0])
        figures[1], figures[2] = row["succeeded"], row["failed"]
    start = first.astimezone(UTC)
    return [
        MinuteFigures(minute, *counts.get(minute, (0, 0, 0)))
        for minute in (start + timedelta(minutes=i) for i in range(minutes))
    ]


def attempts_per_minute_queries(*, first: datetime) -> tuple[QuerySet, QuerySet]:
    """The two queries of attempts_per_minute (bench/admin_dashboard.py explains them)."""
    started = (
        JobAttempt.objects.filter(Q(finished_at__gte=first) | Q(finished_at__isnull=True), started_at__gte=first)
        .annotate(minute=TruncMinute("started_at", tzinfo=UTC))
        .order_by()
        .values("minute")
        .annotate(n=Count("id"))
    )
    ended = (
        JobAttempt.objects.filter(finished_at__gte=first)
        .annotate(minute=TruncMinute("finished_at", tzinfo=UTC))
        .order_by()
        .values("minute")
        .annotate(
            succeeded=Count("id", filter=Q(outcome=JobAttempt.Outcome.SUCCEEDED)),
            failed=Count("id", filter=Q(outcome__in=FAILED_OUTCOMES)),
        )
    )
    return started, ended


def _utc_minute(value: datetime) -> datetime:
    if timezone.is_naive(value):  # SQLite hands truncated values back without a zone
        value = timezone.make_aware(value, UTC)
    return value.astimezone(UTC).replace(second=0, microsecond=0)
