"""Telling the layers above what happened to a job: inside the transaction that writes the
outcome (for what must commit with it: a dead letter, a webhook delivery) and after the
commit (for what follows it: metrics, long-poll doorbells)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from apps.jobs import signals
from apps.jobs.models import Job


def duration_ms(started: datetime, ended: datetime) -> int:
    """Milliseconds from `started` to `ended`, never negative (clocks of two machines)."""
    return max(0, int((ended - started).total_seconds() * 1000))


def announce_finished(
    *,
    job_id: str,
    kind: str,
    status: str,
    callback_url: str = "",
    duration_ms: int | None = None,
    workflow_id: object = None,
) -> None:
    """A job reached succeeded, failed or cancelled: job_finishing now, inside the finishing
    transaction, and job_finished once it commits. `workflow_id` comes along so a follower
    (apps.workflows) learns a job belongs to a workflow without reading its row again."""
    workflow = None if workflow_id is None else str(workflow_id)
    signals.job_finishing.send(
        sender=Job, job_id=job_id, kind=kind, status=status, callback_url=callback_url, workflow_id=workflow
    )
    transaction.on_commit(
        lambda: signals.job_finished.send(
            sender=Job, job_id=job_id, kind=kind, status=status, callback_url=callback_url, duration_ms=duration_ms
        )
    )


def announce_failing(*, job: Job, now: datetime) -> None:
    """A job reached failed: sent inside the transaction that writes it (the dead letters
    park it there, so a failed job always has its letter)."""
    signals.job_failing.send(sender=Job, job=job, now=now)


def announce_requeued(*, job: Job, actor: str, now: datetime) -> None:
    """A failed or cancelled job was queued again: sent inside that transaction (an open dead
    letter is closed there, so a retry and a redrive are one path)."""
    signals.job_requeued.send(sender=Job, job=job, actor=actor, now=now)
