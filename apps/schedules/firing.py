"""Firing due schedules: run by the control loop's leader only (workers.beat), every
SCHEDULE_SWEEP_SECONDS, and by the admin's "Run now".

One firing is one job, whatever happens around it:
- the sweep's transaction first calls the leader's fence (apps.ops.control), so a beat that
  lost the lead writes nothing, and the lease row's lock holds off a takeover until it ends;
- it locks the due schedules (FOR UPDATE SKIP LOCKED), and in the same transaction creates
  each one's job and moves its next_run_at past now: a crash before the commit leaves the
  schedule due and no job, a crash after it leaves the job and the schedule moved on;
- the database refuses a second job for the same (schedule_id, scheduled_for) (the jobs
  table's job_schedule_firing constraint), whatever raced.

A schedule whose due time passed several ticks ago (no beat ran, or the leader changed) fires
once, for the earliest missed time, and is next due at its first time after now."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import ApplicationError
from apps.jobs import lifecycle
from apps.jobs.models import Job
from apps.schedules import timing
from apps.schedules.models import Schedule

logger = logging.getLogger(__name__)

# Schedules fired per transaction: a backlog of due ones (after an outage) goes in batches,
# each committed by itself, so one sweep never holds thousands of row locks.
BATCH = 100
Fence = Callable[[], None]


def _unfenced() -> None:
    return None


def schedules_fire_due(*, now: datetime | None = None, fence: Fence = _unfenced, batches: int = 10) -> int:
    """Fire every enabled schedule due at `now`; returns how many jobs were made. With
    nothing due it costs one indexed read (schedule_due) and opens no transaction."""
    now = now or timezone.now()
    made = 0
    for _ in range(batches):
        if not Schedule.objects.filter(enabled=True, next_run_at__lte=now).exists():
            break
        fired, jobs = _fire_batch(now=now, fence=fence)
        made += jobs
        if fired < BATCH:
            break
    return made


def _fire_batch(*, now: datetime, fence: Fence) -> tuple[int, int]:
    with transaction.atomic():
        fence()
        due = list(
            Schedule.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("owner")
            .filter(enabled=True, next_run_at__lte=now)
            .order_by("next_run_at")[:BATCH]
        )
        jobs = 0
        for schedule in due:
            scheduled_for = schedule.next_run_at
            job = schedule_fire(schedule=schedule, scheduled_for=scheduled_for, now=now)
            jobs += job is not None
            schedule.next_run_at = timing.next_run_after(
                cron=schedule.cron,
                timezone=schedule.timezone,
                every_seconds=schedule.every_seconds,
                due=scheduled_for,
                after=now,
            )
            schedule.save(
                update_fields=[
                    "next_run_at",
                    "last_fired_at",
                    "last_scheduled_for",
                    "last_job_id",
                    "last_error",
                    "updated_at",
                ]
            )
    if due:
        lag = max((now - s.last_scheduled_for).total_seconds() for s in due if s.last_scheduled_for)
        logger.info("schedules: fired %s, made %s job(s), up to %.3f s after their time", len(due), jobs, lag)
    return len(due), jobs


def schedule_fire(*, schedule: Schedule, scheduled_for: datetime, now: datetime) -> Job | None:
    """Make the firing's job, inside the caller's transaction, and record the firing on the
    schedule (unsaved). The job is checked as a submission is (the kind may have changed its
    schema since the schedule was made): a firing it refuses makes no job and says why in
    last_error. No admission check: like a webhook delivery, the job is the consequence of
    work admitted when the schedule was made, and a refusal would lose the firing."""
    schedule.last_fired_at, schedule.last_scheduled_for, schedule.last_error = now, scheduled_for, ""
    try:
        checked = lifecycle.job_check(
            owner=schedule.owner, kind=schedule.kind, payload=schedule.payload, priority=schedule.priority or None
        )
    except ApplicationError as exc:
        logger.warning("schedule %s: firing for %s made no job: %s", schedule.pk, scheduled_for, exc.message)
        schedule.last_error = exc.message
        return None
    try:
        with transaction.atomic():  # a savepoint: a refused insert leaves the sweep's transaction usable
            [job] = lifecycle.jobs_create(
                owner=schedule.owner,
                checked=[checked],
                columns=[{"schedule_id": schedule.pk, "scheduled_for": scheduled_for}],
            )
    except IntegrityError:
        # The firing already has its job (the constraint job_schedule_firing): nothing to do.
        logger.warning("schedule %s: the firing for %s already has its job", schedule.pk, scheduled_for)
        return None
    if lifecycle.job_deduplicated(job):
        # A unique kind whose key another job holds (apps.jobs.lifecycle.unique): that job
        # stands for this firing, which makes none.
        schedule.last_error = f"The kind's unique key is held by job {job.pk}: this firing made no job."
        logger.info(
            "schedule %s: the firing for %s made no job: job %s holds the key", schedule.pk, scheduled_for, job.pk
        )
        return None
    schedule.last_job_id = job.pk
    return job


def schedule_run_now(*, schedule: Schedule, now: datetime | None = None) -> Job | None:
    """Fire once now, outside the timing (the admin's "Run now"): a job whose scheduled_for
    is now. The next timed firing stays where it was."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Schedule.objects.select_for_update().select_related("owner").get(pk=schedule.pk)
        job = schedule_fire(schedule=locked, scheduled_for=now, now=now)
        locked.save(update_fields=["last_fired_at", "last_scheduled_for", "last_job_id", "last_error", "updated_at"])
    return job
