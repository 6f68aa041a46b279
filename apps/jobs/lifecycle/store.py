"""The database's fast paths, each beside its portable fallback: the insert of new jobs
(a prepared INSERT for one, COPY for many; bulk_create elsewhere), the claim's
UPDATE ... RETURNING, and the succeed statement (the fenced update and the attempt's row in
one statement; a transaction of two elsewhere). Table names come from the models' _meta."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import JSONField
from django.utils import timezone

from apps.core.db import prepared_cursor
from apps.core.text import clean_text
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.jobs.pauses import paused_sql

# --- new jobs ------------------------------------------------------------------------------


def new_job(owner: AbstractBaseUser, **values: Any) -> Job:
    """Job(owner=owner, **values), built positionally: Model.__init__ with keyword arguments
    resolves every keyword and every field's default one by one, a large share of a big
    batch's time. Defaults are what Job(...) would give (a fresh one from a
    callable default, such as the id, for every job)."""
    defaults = _job_defaults()
    if not values.keys() <= defaults.keys():
        raise TypeError(f"Job has no field(s) {sorted(values.keys() - defaults.keys())}")
    args = [
        values[name] if name in values else (default() if is_callable else default)
        for name, (default, is_callable) in defaults.items()
    ]
    job = Job(*args)
    job.owner = owner  # the id and the cached object, as Job(owner=owner) sets them
    return job


@functools.cache
def _job_defaults() -> dict[str, tuple[Any, bool]]:
    """attname -> (default, whether to call it), per concrete field in Job(*args) order."""
    return {
        f.attname: (f.default, True) if f.has_default() and callable(f.default) else (f.get_default(), False)
        for f in Job._meta.concrete_fields
    }


def jobs_insert(jobs: list[Job]) -> None:
    """Insert new jobs with one statement, skipping the ORM's compile on PostgreSQL.

    One job is an INSERT prepared on the connection (its text never changes), which saves
    Model.save()'s Python on every submit. Many jobs are a COPY: bulk_create spends most of a
    big batch's time compiling its INSERT, COPY a fraction of that. Other databases get
    bulk_create."""
    if connection.vendor != "postgresql":
        Job.objects.bulk_create(jobs)
        return
    insert, copy_sql = _job_insert_sql()
    now = timezone.now()
    if len(jobs) == 1:
        with prepared_cursor() as cursor:
            cursor.execute(insert, _job_row(jobs[0], now))
    else:
        with connection.cursor() as cursor:
            # Counted and logged like any other query (DEBUG's query log, django_assert_num_queries).
            logged = cursor.debug_sql(copy_sql) if hasattr(cursor, "debug_sql") else contextlib.nullcontext()
            with logged, cursor.cursor.copy(copy_sql) as copy:
                for job in jobs:
                    copy.write_row(_job_row(job, now))
    for job in jobs:
        job._state.adding = False
        job._state.db = connection.alias


def jobs_insert_unique(jobs: list[Job]) -> set[uuid.UUID]:
    """Insert new jobs that carry a unique key, each skipped when its (owner, unique_key) is
    taken; returns the ids inserted. On PostgreSQL one INSERT ... ON CONFLICT DO NOTHING per
    chunk: a racing insert of the same key is waited for (then skipped, or inserted if the
    other rolled back), never an error, so no savepoint is needed inside a transaction.
    Elsewhere one savepoint per job."""
    if connection.vendor != "postgresql":
        inserted = set()
        for job in jobs:
            try:
                with transaction.atomic():
                    Job.objects.bulk_create([job])
            except IntegrityError:
                continue
            inserted.add(job.id)
        return inserted
    insert, _ = _job_insert_sql()
    width = len(Job._meta.concrete_fields)
    q, now, inserted = connection.ops.quote_name, timezone.now(), set()
    conflict = f" ON CONFLICT ({q('owner_id')}, {q('unique_key')}) WHERE {q('unique_key')} IS NOT NULL DO NOTHING"
    row = f"({', '.join(['%s'] * width)})"
    per_statement = 65535 // width  # PostgreSQL's limit on a statement's parameters
    for start in range(0, len(jobs), per_statement):
        chunk = jobs[start : start + per_statement]
        sql = insert.rsplit(" VALUES ", 1)[0] + " VALUES " + ", ".join([row] * len(chunk)) + conflict + " RETURNING id"
        params = [value for job in chunk for value in _job_row(job, now)]
        with prepared_cursor() if len(chunk) == 1 else connection.cursor() as cursor:
            cursor.execute(sql, params)
            inserted.update(uuid.UUID(str(found)) for (found,) in cursor.fetchall())
    for job in jobs:
        if job.id in inserted:
            job._state.adding = False
            job._state.db = connection.alias
    return inserted


@functools.cache
def _job_insert_sql() -> tuple[str, str]:
    """(INSERT of one job, COPY of many) over every concrete column, in _job_row's order."""
    q = connection.ops.quote_name
    fields = Job._meta.concrete_fields
    table, columns = q(Job._meta.db_table), ", ".join(q(f.column) for f in fields)
    insert = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
    return insert, f"COPY {table} ({columns}) FROM STDIN"


@functools.cache
def _json_columns() -> frozenset[int]:
    return frozenset(i for i, f in enumerate(Job._meta.concrete_fields) if isinstance(f, JSONField))


def _job_row(job: Job, now: datetime) -> list[Any]:
    """A new job's column values as psycopg takes them: what the ORM would write, with JSON
    columns wrapped as jsonb and auto_now's updated_at set, as save() and bulk_create do."""
    from psycopg.types.json import Jsonb

    job.updated_at = now
    values = [getattr(job, f.attname) for f in Job._meta.concrete_fields]
    for i in _json_columns():
        if values[i] is not None:
            values[i] = Jsonb(values[i])
    return values


# --- the claim -----------------------------------------------------------------------------


@functools.cache
def _job_fields() -> dict[str, Any]:
    """Job's concrete fields by column name, built once (the claim runs for every job)."""
    return {f.attname: f for f in Job._meta.concrete_fields}


CLAIM_COLUMNS = (
    "kind",
    "payload",
    "attempts",
    "max_attempts",
    "queue",
    "request_id",
    "callback_url",
    "created_at",
    "lease_token",
    "workflow_id",
)


def lease_token_for(seed: str, attempt: int) -> uuid.UUID:
    """The token job_claim gives attempt `attempt` claimed with `seed` (the same arithmetic
    as the claim's SQL)."""
    return uuid.UUID(hashlib.md5(f"{seed}:{attempt}".encode(), usedforsecurity=False).hexdigest())


@functools.cache
def _lease_token_sql(vendor: str) -> str:
    """The claim's token in SQL: SET expressions read the row before the update, so the new
    attempt's number is attempts + 1. SQLite stores a UUID as 32 hex digits (what md5 gives;
    Django registers MD5 on its connections); PostgreSQL casts them to uuid."""
    digest = "MD5(CAST(%s AS TEXT) || ':' || CAST(attempts + 1 AS TEXT))"
    return f"CAST({digest} AS uuid)" if vendor == "postgresql" else digest


def job_claim_update(*, job_id: str, worker: str, seed: str | None, now: datetime) -> dict[str, Any] | None:
    """The claim's one conditional statement (UPDATE ... RETURNING, on PostgreSQL and SQLite
    alike): queued and due becomes running, attempt + 1, a lease. Returns CLAIM_COLUMNS'
    values as Python values, or None when nothing was claimed."""
    fields = _job_fields()

    def db(name: str, value: Any) -> Any:
        return fields[name].get_db_prep_value(value, connection)

    columns = ", ".join(connection.ops.quote_name(c) for c in CLAIM_COLUMNS)
    sql = (
        f"UPDATE {connection.ops.quote_name(Job._meta.db_table)} SET status = %s, attempts = attempts + 1, "
        f"lease_token = {_lease_token_sql(connection.vendor)}, lease_expires_at = %s, started_at = %s, worker = %s, "
        "updated_at = %s "
        "WHERE id = %s AND status = %s AND (run_at IS NULL OR run_at <= %s) "
        # A paused queue or kind starts nothing, in this same statement: no process's stale
        # view of the pauses can start one, and the claim costs no query more.
        f"AND NOT {paused_sql()} "
        f"RETURNING {columns}"
    )
    params = [
        JobStatus.RUNNING,
        seed if seed is not None else uuid.uuid4().hex,
        db("lease_expires_at", now + timedelta(seconds=settings.JOB_LEASE_SECONDS)),
        db("started_at", now),
        worker[:255],
        db("updated_at", now),
        db("id", uuid.UUID(str(job_id))),
        JobStatus.QUEUED,
        db("run_at", now),
    ]
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = {
        name: fields[name].from_db_value(value, None, connection) if hasattr(fields[name], "from_db_value") else value
        for name, value in zip(CLAIM_COLUMNS, row, strict=True)
    }
    created_at = values["created_at"]
    if isinstance(created_at, str):  # SQLite hands back text
        created_at = fields["created_at"].to_python(created_at)
    if timezone.is_naive(created_at):
        created_at = timezone.make_aware(created_at, UTC)
    values["created_at"] = created_at
    # psycopg hands back a UUID, SQLite its 32 hex digits
    values["lease_token"] = str(uuid.UUID(str(values["lease_token"])))
    if values["workflow_id"] is not None:
        values["workflow_id"] = str(uuid.UUID(str(values["workflow_id"])))
    return values


# --- an attempt's end ----------------------------------------------------------------------


def job_held(*, job_id: str, lease_token: str) -> Any:
    """The job's row, only while the attempt with this lease token still holds it (the fence)."""
    return Job.objects.filter(id=job_id, status=JobStatus.RUNNING, lease_token=lease_token)


def attempt_row_create(
    *,
    job_id: str,
    number: int,
    worker: str,
    started_at: datetime,
    now: datetime,
    duration_ms: int,
    outcome: str,
    error_type: str = "",
    error_message: str = "",
    traceback: str = "",
) -> None:
    """Write an attempt's row, now that it has ended (one INSERT; nothing at claim time)."""
    JobAttempt.objects.create(
        job_id=job_id,
        number=number,
        worker=worker,
        started_at=started_at,
        finished_at=now,
        duration_ms=duration_ms,
        outcome=outcome,
        error_type=clean_text(error_type, 200),
        error_message=clean_text(error_message),
        traceback=clean_text(traceback),
    )


@functools.cache
def _succeed_sql() -> str:
    q = connection.ops.quote_name
    return f"""
WITH done AS (
    UPDATE {q(Job._meta.db_table)} SET status = 'succeeded', result = %s, finished_at = %s, lease_token = NULL,
        lease_expires_at = NULL, progress_percent = 100.0, error_type = '', error_message = '',
        error_traceback = '', updated_at = %s
    WHERE id = %s AND status = 'running' AND lease_token = %s
    RETURNING id
)
INSERT INTO {q(JobAttempt._meta.db_table)} (job_id, number, worker, started_at, finished_at, duration_ms, outcome,
                             error_type, error_message, traceback)
SELECT id, %s, %s, %s, %s, %s, 'succeeded', '', '', '' FROM done
RETURNING job_id
"""


def job_succeed_write(
    *,
    job_id: str,
    lease_token: str,
    attempt: int,
    worker: str,
    started_at: datetime,
    result: Any,
    now: datetime,
    duration_ms: int,
) -> bool:
    """The fenced update to succeeded and the attempt's row; False when the lease is no
    longer this attempt's. On PostgreSQL one statement, atomic by itself, with no BEGIN and
    COMMIT round trips around it; elsewhere two, which the caller wraps in a transaction."""
    if connection.vendor == "postgresql":
        params = [
            _job_fields()["result"].get_db_prep_value(result, connection),
            now,
            now,
            uuid.UUID(job_id),
            uuid.UUID(lease_token),
            attempt,
            worker,
            started_at,
            now,
            duration_ms,
        ]
        with prepared_cursor() as cursor:
            cursor.execute(_succeed_sql(), params)
            return cursor.fetchone() is not None
    done = job_held(job_id=job_id, lease_token=lease_token).update(
        status=JobStatus.SUCCEEDED,
        result=result,
        finished_at=now,
        lease_token=None,
        lease_expires_at=None,
        progress_percent=100.0,
        error_type="",
        error_message="",
        error_traceback="",
        updated_at=now,
    )
    if done:
        attempt_row_create(
            job_id=job_id,
            number=attempt,
            worker=worker,
            started_at=started_at,
            now=now,
            duration_ms=duration_ms,
            outcome=JobAttempt.Outcome.SUCCEEDED,
        )
    return bool(done)
