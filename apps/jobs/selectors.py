"""Reads of jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.jobs.models import Job


@dataclass(frozen=True)
class JobFilters:
    status: str | None = None
    kind: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def job_list(*, owner: AbstractBaseUser, filters: JobFilters | None = None) -> QuerySet[Job]:
    """The owner's jobs, newest first (served by the job_owner_* indexes)."""
    filters = filters or JobFilters()
    qs = Job.objects.filter(owner=owner)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.created_after:
        qs = qs.filter(created_at__gt=filters.created_after)
    if filters.created_before:
        qs = qs.filter(created_at__lt=filters.created_before)
    return qs.only(*LIST_COLUMNS).order_by("-created_at")


# What a list shows of each job (apps.jobs.serializers.JobOutput), and nothing else: a page
# of 50 loads a third fewer columns, and never a traceback (kilobytes per failed job; the
# detail view has it). tests/unit/test_api_jobs.py pins a page at one query, so a field the
# output starts to need and this misses shows up as a query per job there.
LIST_COLUMNS = (
    "id",
    "kind",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "progress_percent",
    "progress_message",
    "result",
    "error_type",
    "error_message",
    "payload",
    "run_at",
    "created_at",
    "started_at",
    "finished_at",
)


def job_get(*, owner: AbstractBaseUser, job_id: object) -> Job:
    """One of the owner's jobs. Someone else's job is as absent as one that never existed."""
    try:
        return Job.objects.get(id=job_id, owner=owner)
    except (Job.DoesNotExist, ValueError):
        raise NotFound("No such job.", code="job_not_found") from None
