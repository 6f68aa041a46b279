"""Cheap polling of one job: the conditional GET (a weak ETag, If-None-Match, 304), Retry-After
while the job is not finished, and the bounded long poll `?wait=N` woken by Redis pub/sub.

The shape of Django's `django.views.decorators.http.condition`: the view asks `not_modified`
first and answers with it when there is one; otherwise it reads and serializes the job as any
view would, and sends `headers(JobVersion.of(job))` with it."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpResponseNotModified
from django.utils import timezone
from rest_framework.request import Request

from apps.core.errors import InvalidInput, NotFound
from apps.jobs import notify, selectors
from apps.jobs.models import TERMINAL_STATUSES, Job, JobStatus


@dataclass(frozen=True)
class JobVersion:
    """What the validator is made of: cheap to read, without the payload or the result."""

    job_id: str
    updated_at: datetime
    status: str
    run_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobVersion:
        return cls(str(job.id), job.updated_at, job.status, job.run_at)

    @property
    def etag(self) -> str:
        # Weak: the body also carries links built from the request's host, so two answers with
        # one tag are equivalent, not byte-identical. Any write that a client can see moves
        # updated_at (auto_now, or set by the services' updates), and the status is the
        # validator's reason to exist, so it is in too.
        raw = f"{self.job_id}|{self.updated_at.isoformat()}|{self.status}"
        return f'W/"{hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()}"'

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def job_version(*, owner: Any, job_id: object) -> JobVersion:
    row = (
        selectors.job_list(owner=owner)
        .filter(id=job_id)
        .order_by()
        .values_list("updated_at", "status", "run_at")
        .first()
    )
    if row is None:
        raise NotFound("No such job.", code="job_not_found")
    return JobVersion(str(job_id), *row)


def if_none_match(header: str) -> set[str]:
    """The entity tags of If-None-Match, compared weakly (RFC 9110 13.1.2): W/ is dropped."""
    tags = set()
    for part in header.split(","):
        tag = part.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag:
            tags.add(tag)
    return tags


def matches(tags: set[str], etag: str) -> bool:
    return "*" in tags or etag.removeprefix("W/") in tags


def wait_seconds(raw: str | None) -> float:
    """?wait=N: how long to hold the request, from 0 to notify.WAIT_MAX_SECONDS."""
    if raw is None or raw == "":
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or not 0 <= seconds <= notify.WAIT_MAX_SECONDS:
        raise InvalidInput(
            f"wait must be a number of seconds from 0 to {notify.WAIT_MAX_SECONDS}; got {raw[:50]!r}.",
            code="invalid_wait",
            details={"max_seconds": notify.WAIT_MAX_SECONDS},
        )
    return seconds


def retry_after(version: JobVersion) -> int | None:
    """When to poll again: soon while queued or running; when due while waiting for run_at
    (scheduled, or retrying after a backoff); bounded by RETRY_AFTER_MAX_SECONDS."""
    if version.terminal:
        return None
    if version.status in (JobStatus.QUEUED, JobStatus.RETRYING) and version.run_at is not None:
        due_in = (version.run_at - timezone.now()).total_seconds()
        return max(1, min(settings.RETRY_AFTER_MAX_SECONDS, math.ceil(due_in)))
    return 1


def _release_database_connection() -> None:
    """A long poll waits without a database connection: close it (it reopens on the next
    query). Inside a transaction (ATOMIC_REQUESTS, tests) closing would break it; keep it."""
    if not connection.in_atomic_block:
        connection.close()


def wait_for_change(*, owner: Any, job_id: object, seconds: float, tags: set[str]) -> JobVersion:
    """Hold the request until the job differs from what the client has (its If-None-Match,
    or the state when the request arrived), the job ends, or `seconds` pass."""
    deadline = time.monotonic() + seconds
    with notify.JobWaiter(job_id) as waiter:
        version = job_version(owner=owner, job_id=job_id)  # after subscribing: no ring is missed
        baseline = tags or {version.etag.removeprefix("W/")}
        while waiter.active and not version.terminal and matches(baseline, version.etag):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            _release_database_connection()
            rang = waiter.wait(remaining)
            # Read again even at the deadline: progress moves the tag without ringing.
            version = job_version(owner=owner, job_id=job_id)
            if not rang:
                break
    return version


def headers(version: JobVersion) -> dict[str, str]:
    """The polling headers of an answer about one job, 200 or 304."""
    result = {"ETag": version.etag, "Cache-Control": "private, no-cache"}
    after = retry_after(version)
    if after is not None:
        result["Retry-After"] = str(after)
    return result


def not_modified(request: Request, *, job_id: object) -> HttpResponseNotModified | None:
    """The 304 for a GET of one job that, after waiting up to ?wait=N for a change, still
    matches the request's If-None-Match; None when the view should answer with the job.
    A bad ?wait is a 400 and an unknown job a 404, as for the view itself."""
    wait = wait_seconds(request.query_params.get("wait"))
    tags = if_none_match(request.headers.get("If-None-Match", ""))
    version: JobVersion | None = None
    if wait > 0:
        version = wait_for_change(owner=request.user, job_id=job_id, seconds=wait, tags=tags)
    elif tags:
        version = job_version(owner=request.user, job_id=job_id)
    if version is None or not tags or not matches(tags, version.etag):
        return None
    response = HttpResponseNotModified()
    for name, value in headers(version).items():
        response[name] = value
    return response
