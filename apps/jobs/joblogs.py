"""The lines a handler logged, kept with its attempt: written by the worker (workers.joblog
gathers them), read by the API and the admin.

The write is fenced like every other write an attempt makes: lines go in only while the
attempt still holds the job's lease, so an attempt the reconciler gave up on (its worker
stalled, its lease expired, the job retried elsewhere) cannot add lines once it has lost the
job, and each line is stored under the number of the attempt that logged it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection
from django.db.models import QuerySet

from apps.jobs.lifecycle import store
from apps.jobs.models import Job, JobLogLine, JobStatus
from apps.jobs.selectors import job_get


@dataclass(frozen=True)
class LogLine:
    """One line as gathered in the worker, before it is written."""

    seq: int
    at: datetime
    level: str
    logger: str
    message: str


def _fenced_insert_sql() -> str:
    lines, jobs = JobLogLine._meta.db_table, Job._meta.db_table
    # One statement for every line: the rows come from arrays (one parameter per column,
    # whatever the number of lines), and the EXISTS is the lease fence.
    return (
        f"INSERT INTO {lines} (job_id, attempt, seq, at, level, logger, message) "
        "SELECT %s::uuid, %s, l.seq, l.at, l.level, l.logger, l.message "
        "FROM unnest(%s::integer[], %s::timestamptz[], %s::text[], %s::text[], %s::text[]) "
        "AS l(seq, at, level, logger, message) "
        f"WHERE EXISTS (SELECT 1 FROM {jobs} WHERE id = %s::uuid AND status = %s AND lease_token = %s::uuid) "
        "ORDER BY l.seq "
        # A write that reached PostgreSQL but whose answer was lost is tried again with the
        # next batch: the lines already in are skipped, not an error that loses the rest.
        "ON CONFLICT (job_id, attempt, seq) DO NOTHING"
    )


def job_log_lines_write(*, job_id: str, attempt: int, lease_token: str, lines: list[LogLine]) -> int:
    """Write an attempt's lines while it holds the job; returns how many were written (0 when
    its lease is gone: fenced). Nothing to write costs no query."""
    if not lines:
        return 0
    if connection.vendor == "postgresql":
        params = [
            job_id,
            attempt,
            [line.seq for line in lines],
            [line.at for line in lines],
            [line.level for line in lines],
            [line.logger for line in lines],
            [line.message for line in lines],
            job_id,
            JobStatus.RUNNING,
            lease_token,
        ]
        with connection.cursor() as cursor:
            cursor.execute(_fenced_insert_sql(), params)
            return max(cursor.rowcount, 0)
    # Elsewhere (SQLite): the fence is a look, then the insert; a lease lost in between
    # still leaves the lines under this attempt's own number.
    if not store.job_held(job_id=job_id, lease_token=lease_token).exists():
        return 0
    rows = [
        JobLogLine(
            job_id=job_id,
            attempt=attempt,
            seq=line.seq,
            at=line.at,
            level=line.level,
            logger=line.logger,
            message=line.message,
        )
        for line in lines
    ]
    return len(JobLogLine.objects.bulk_create(rows))


def job_log_lines(*, owner: AbstractBaseUser, job_id: object, attempt: int | None = None) -> QuerySet[JobLogLine]:
    """The owner's job's lines, oldest first (by attempt, then as logged); NotFound
    (job_not_found) for a job that is not the owner's."""
    job = job_get(owner=owner, job_id=job_id)
    return job_log_lines_of(job_id=job.pk, attempt=attempt)


def job_log_lines_of(*, job_id: object, attempt: int | None = None) -> QuerySet[JobLogLine]:
    """Any job's lines (the admin's), oldest first."""
    lines = JobLogLine.objects.filter(job_id=job_id)
    if attempt is not None:
        lines = lines.filter(attempt=attempt)
    return lines.order_by("attempt", "seq")
