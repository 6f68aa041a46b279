"""Followers of the jobs app's signals (connected in DeadLettersConfig.ready). Both run inside
the transaction that writes the job's change, so the letter commits or rolls back with it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.deadletters import services
from apps.jobs.models import Job


def job_failing_park(sender: Any, *, job: Job, now: datetime, **kwargs: Any) -> None:
    services.dead_letter_park(job=job, now=now)


def job_requeued_close_letter(sender: Any, *, job: Job, actor: str = "", now: datetime, **kwargs: Any) -> None:
    services.dead_letter_close(job=job, actor=actor, now=now)
