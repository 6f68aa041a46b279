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
    return qs.order_by("-created_at")


def job_get(*, owner: AbstractBaseUser, job_id: object) -> Job:
    """One of the owner's jobs. Someone else's job is as absent as one that never existed."""
    try:
        return Job.objects.get(id=job_id, owner=owner)
    except (Job.DoesNotExist, ValueError):
        raise NotFound("No such job.", code="job_not_found") from None
