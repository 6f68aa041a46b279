"""Submitting jobs: check, admit, create. `jobs_create` is the one creation path: the single
submit, the idempotent one, the batch and every other app that makes jobs go through it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from apps.core.errors import InvalidInput
from apps.jobs import signals
from apps.jobs.lifecycle.admission import jobs_admit
from apps.jobs.lifecycle.store import jobs_insert, new_job
from apps.jobs.lifecycle.unique import job_deduplicated, jobs_insert_deduplicating
from apps.jobs.lifecycle.validation import CheckedJob, PriorityNotAllowed, job_check
from apps.jobs.models import Job, JobStatus
from apps.jobs.publish import JobMessage, job_publish_on_commit


def jobs_create(
    *,
    owner: AbstractBaseUser,
    checked: list[CheckedJob],
    request_id: str = "",
    columns: Sequence[dict[str, Any]] | None = None,
) -> list[Job]:
    """Write checked submissions with one statement and publish the due ones after the
    commit; a `run_at` in the future holds a job in the database until the reconciler
    publishes it when due. `columns`, one per job, sets more of its columns (a workflow's
    job: its workflow_id and ref, and status `waiting`, which is never published here).
    No admission check here (jobs_admit): a caller that creates a job as the consequence
    of one already admitted (a webhook delivery) may skip it. Opens no transaction: one job
    is one INSERT committed by itself, with no BEGIN and COMMIT round trips around it; many
    are written inside the caller's transaction.

    A job of a unique kind whose key another job holds is not created: its place in the
    answer is that job, marked deduplicated (apps.jobs.lifecycle.unique), neither published
    nor announced again."""
    now = timezone.now()
    rows = [
        new_job(
            owner,
            kind=job.k.name,
            payload=job.payload,
            priority=job.priority,
            queue=job.queue,
            max_attempts=job.max_attempts,
            attempt_allowance=job.max_attempts,
            # A microsecond apart, so the list (newest first) keeps a batch's order.
            created_at=now + timedelta(microseconds=position),
            run_at=job.run_at if job.run_at is not None and job.run_at > now else None,
            request_id=request_id[:64],
            callback_url=job.callback_url,
            **(columns[position] if columns is not None else {}),
        )
        for position, job in enumerate(checked)
    ]
    created = rows
    if any(job.k.unique_by for job in checked):  # a kind without uniqueness costs nothing here
        rows = jobs_insert_deduplicating(rows, [job.k for job in checked], now)
        created = [job for job in rows if not job_deduplicated(job)]
    else:
        jobs_insert(rows)
    job_publish_on_commit(
        JobMessage.of(job) for job in created if job.run_at is None and job.status == JobStatus.QUEUED
    )
    transaction.on_commit(lambda: signals.jobs_submitted.send(sender=Job, jobs=created))
    return rows


def job_check_and_admit(
    *,
    owner: AbstractBaseUser,
    kind: str,
    payload: Any,
    priority: str | None = None,
    max_attempts: int | None = None,
    run_at: datetime | None = None,
    callback_url: str = "",
    from_client: bool = False,
) -> CheckedJob:
    """One submission checked (job_check) and admitted (jobs_admit), ready for jobs_create."""
    checked = job_check(
        owner=owner,
        kind=kind,
        payload=payload,
        priority=priority,
        max_attempts=max_attempts,
        run_at=run_at,
        callback_url=callback_url,
        from_client=from_client,
    )
    jobs_admit(owner=owner, checked=[checked])
    return checked


def job_submit(
    *,
    owner: AbstractBaseUser,
    kind: str,
    payload: Any,
    priority: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    request_id: str = "",
    callback_url: str = "",
    from_client: bool = False,
) -> Job:
    """Commit a job and publish it after the commit. `from_client` (the API sets it) refuses
    internal kinds and checks the payload's outbound URLs."""
    checked = job_check_and_admit(
        owner=owner,
        kind=kind,
        payload=payload,
        priority=priority,
        max_attempts=max_attempts,
        run_at=run_at,
        callback_url=callback_url,
        from_client=from_client,
    )
    [job] = jobs_create(owner=owner, checked=[checked], request_id=request_id)
    return job


def job_submit_batch(
    *, owner: AbstractBaseUser, jobs: list[dict[str, Any]], request_id: str = "", from_client: bool = False
) -> list[Job]:
    """Submit many jobs, all or nothing. Every job is checked first and a 400 names each bad
    one by its index; the whole batch is admission-checked per queue (depth and the client's
    in-flight count, each with that queue's share of the batch), written with one statement
    in one transaction, and published together after the commit. Each item has the keys of
    a single submission (kind, payload, priority, run_at, max_attempts, callback_url), and
    `from_client` means what it means for job_submit."""
    checked = jobs_check_all(owner=owner, jobs=jobs, label="index", code="invalid_batch", from_client=from_client)
    jobs_admit(owner=owner, checked=checked)
    with transaction.atomic():
        return jobs_create(owner=owner, checked=checked, request_id=request_id)


def jobs_check_all(
    *, owner: AbstractBaseUser, jobs: list[dict[str, Any]], label: str, code: str, from_client: bool = False
) -> list[CheckedJob]:
    """Check every job of a batch or a workflow, all or nothing. Each bad job is named in the
    400 (`code`) by its `label`: "index" (its place in the list) or a key of the item ("ref");
    a priority the client may not use answers 403 at once, naming the job."""
    checked: list[CheckedJob] = []
    errors: list[dict[str, Any]] = []
    for index, spec in enumerate(jobs):
        name = index if label == "index" else spec[label]
        try:
            checked.append(
                job_check(
                    owner=owner,
                    kind=spec["kind"],
                    payload=spec.get("payload", {}),
                    priority=spec.get("priority"),
                    max_attempts=spec.get("max_attempts"),
                    run_at=spec.get("run_at"),
                    callback_url=spec.get("callback_url"),
                    from_client=from_client,
                )
            )
        except PriorityNotAllowed as exc:
            # Refused rather than malformed: the whole submission answers 403, naming the job.
            raise PriorityNotAllowed(f"Job {name!r}: {exc.message}", details={label: name, **exc.details}) from None
        except InvalidInput as exc:
            error = {label: name, "code": exc.code, "message": exc.message}
            if exc.details is not None:
                error["details"] = exc.details
            errors.append(error)
    if errors:
        first = errors[0]
        raise InvalidInput(
            f"{len(errors)} of {len(jobs)} jobs are not valid, so none was submitted. "
            f"Job {first[label]!r}: {first['message']}",
            code=code,
            details=errors,
        )
    return checked
