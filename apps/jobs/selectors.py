"""Reads of jobs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import BooleanField, Case, F, JSONField, QuerySet, TextField, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Length

from apps.core.errors import NotFound
from apps.jobs.models import Job


@dataclass(frozen=True)
class JobFilters:
    # One status, or several (any of them).
    status: str | Sequence[str] | None = None
    kind: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    # A workflow's id: its jobs only (the job_workflow index, at most 1,000 rows).
    workflow: UUID | None = None
    # A schedule's id: the jobs its firings made (the job_schedule_firing index).
    schedule: UUID | None = None


def job_list(*, owner: AbstractBaseUser, filters: JobFilters | None = None) -> QuerySet[Job]:
    """The owner's jobs, newest first (served by the job_owner_* indexes)."""
    filters = filters or JobFilters()
    qs = Job.objects.filter(owner=owner)
    statuses = [filters.status] if isinstance(filters.status, str) else list(filters.status or ())
    if len(statuses) == 1:
        qs = qs.filter(status=statuses[0])
    elif statuses:
        qs = qs.filter(status__in=statuses)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.created_after:
        qs = qs.filter(created_at__gt=filters.created_after)
    if filters.created_before:
        qs = qs.filter(created_at__lt=filters.created_before)
    if filters.workflow:
        qs = qs.filter(workflow_id=filters.workflow)
    if filters.schedule:
        qs = qs.filter(schedule_id=filters.schedule)
    return qs.order_by("-created_at")


def job_limit_value(*, job_id: object, payload_field: str | None) -> object:
    """What a keyed kind counts this job's limits by (Kind.limit_per): its owner's id, or,
    with `payload_field`, the field's text (PostgreSQL's `->>`: a string as it is, any other
    value as JSON; None when missing or null). One small query: neither the payload nor the
    row is loaded. Raises Job.DoesNotExist for a job that is gone."""
    jobs = Job.objects.filter(id=job_id)
    if payload_field is None:
        return jobs.values_list("owner_id", flat=True).get()
    return jobs.values_list(KeyTextTransform(payload_field, "payload"), flat=True).get()


def with_bounded_json(qs: QuerySet[Job], *, fields: Iterable[str], max_chars: int) -> QuerySet[Job]:
    """`qs` reading each JSON column of `fields` (payload, result) as `<field>_bounded`: its
    value, or None when its JSON text is longer than `max_chars`; `<field>_over` says which.
    The database measures and keeps a large value, so it never reaches the web process: a
    page of jobs with 1 MB payloads held 100 MB per request, and the workers kept it."""
    for field in fields:
        chars = f"{field}_chars"
        qs = qs.annotate(**{chars: Length(Cast(F(field), output_field=TextField()))}).annotate(
            **{
                f"{field}_bounded": Case(
                    When(**{f"{chars}__lte": max_chars}, then=F(field)), default=Value(None), output_field=JSONField()
                ),
                f"{field}_over": Case(
                    When(**{f"{chars}__gt": max_chars}, then=Value(True)),
                    default=Value(False),
                    output_field=BooleanField(),
                ),
            }
        )
    return qs


def job_get(*, owner: AbstractBaseUser, job_id: object, max_json_chars: int | None = None) -> Job:
    """One of the owner's jobs. Someone else's job is as absent as one that never existed.
    With `max_json_chars`, its payload and result are read bounded (with_bounded_json) and
    not loaded themselves."""
    qs = Job.objects.all()
    if max_json_chars is not None:
        qs = with_bounded_json(qs.defer("payload", "result"), fields=("payload", "result"), max_chars=max_json_chars)
    try:
        return qs.get(id=job_id, owner=owner)
    except (Job.DoesNotExist, ValueError):
        raise NotFound("No such job.", code="job_not_found") from None


def result_file_names(result: Any) -> list[str]:
    """The file names a job's result offers, sorted: every `file` string in it, at any depth
    (a kind lists the files it made as entries carrying a `file` name; docs/kinds.md)."""
    names: set[str] = set()
    stack = [result]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            value = item.get("file")
            if isinstance(value, str):
                names.add(value)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return sorted(names)
