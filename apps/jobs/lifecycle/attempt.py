"""The worker's side of a job: claim it, hold its lease, report progress, record steps, and
end the attempt (succeed, or fail and move on to a retry, failed or cancelled)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from apps.core.text import clean_json, clean_text
from apps.jobs import signals
from apps.jobs.lifecycle import store
from apps.jobs.lifecycle.backoff import retry_delay_seconds
from apps.jobs.lifecycle.events import announce_failing, announce_finished, duration_ms
from apps.jobs.lifecycle.store import lease_token_for
from apps.jobs.models import Job, JobAttempt, JobStatus, JobStep

T = TypeVar("T")


@dataclass(frozen=True)
class Claim:
    """What a worker holds while it runs one attempt of a job."""

    job_id: str
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    queue: str
    lease_token: str
    callback_url: str
    created_at: datetime
    started_at: datetime
    request_id: str
    worker: str = ""
    # The workflow the job belongs to (apps.workflows follows its finish), or None.
    workflow_id: str | None = None


# The lease token of an attempt is derived, not random: md5("<seed>:<attempt number>") read
# as a UUID, where the seed names the delivery that runs the attempt (lease_seed). The
# worker's main process, which never sees what its pool child claimed, can then tell whether
# the job's current lease is the one of the child it just killed at its hard time limit
# (job_attempt_timed_out). The token stays unique per claim, as the fence needs: the attempt
# number is new at every claim of a job, so even the same message claiming twice (Redis
# restoring an unacknowledged copy after the first claim's lease expired) makes two tokens.
# The token guards against confusion, not attackers: only workers write with it.
def lease_seed(*, task_id: str | None, worker: str, pid: int | None, delivery: str | None = None) -> str:
    """What names one delivery of a job's message to one process: the Celery task id (the
    job's id, the same for every message of the job, as Flower finds it), the message's
    delivery tag (fresh at every publish, shared only by copies of one message), the worker's
    name and the pool process's pid (a copy redelivered while the first still runs is in
    another process, since a prefork child runs one task at a time). Both sides of the fence
    build it here."""
    return f"{task_id}/{delivery}/{worker}/{pid}" if delivery else f"{task_id}/{worker}/{pid}"


def job_claim(*, job_id: str, worker: str, seed: str | None = None) -> Claim | None:
    """Take a queued job with one conditional update, which also returns what the worker
    needs (UPDATE ... RETURNING: one statement, no transaction). None means there is nothing
    to claim: a duplicate or stale message, a cancelled job, one that already finished, or
    one that a paused queue or kind holds (apps.jobs.pauses). The attempt's row is written
    when the attempt ends (or its lease expires). `seed` (see lease_seed) makes the lease
    token derivable; without one it is random."""
    now = timezone.now()
    values = store.job_claim_update(job_id=job_id, worker=worker, seed=seed, now=now)
    if values is None:
        return None
    # robust: a follower's failure (Redis away) is logged and never undoes or breaks a claim.
    job_key, kind, attempt = str(job_id), values["kind"], values["attempts"]
    transaction.on_commit(
        lambda: signals.job_started.send(sender=Job, job_id=job_key, kind=kind, attempt=attempt), robust=True
    )
    return Claim(
        job_id=job_key,
        kind=kind,
        payload=values["payload"],
        attempt=values["attempts"],
        max_attempts=values["max_attempts"],
        queue=values["queue"],
        lease_token=values["lease_token"],
        callback_url=values["callback_url"],
        created_at=values["created_at"],
        started_at=now,
        request_id=values["request_id"],
        worker=worker[:255],
        workflow_id=values["workflow_id"],
    )


def job_defer(*, job_id: str, seconds: float) -> bool:
    """Put a queued job back to wait in PostgreSQL (its kind is at its concurrency or rate
    limit) without spending an attempt; the relay publishes it again when due."""
    now = timezone.now()
    return (
        Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
            run_at=now + timedelta(seconds=seconds), published_at=None, updated_at=now
        )
        == 1
    )


def _held(claim: Claim) -> Any:
    """The job's row, only while this attempt still holds its lease (the fence)."""
    return store.job_held(job_id=claim.job_id, lease_token=claim.lease_token)


def job_heartbeat(*, claim: Claim) -> bool:
    """Renew the lease; False when it was lost (expired and handed on, or cancelled)."""
    expires = timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    return _held(claim).update(lease_expires_at=expires) == 1


def job_report_progress(*, claim: Claim, percent: float, message: str = "") -> bool:
    percent = max(0.0, min(100.0, float(percent)))
    message = clean_text(message, 500)
    return _held(claim).update(progress_percent=percent, progress_message=message, updated_at=timezone.now()) == 1


def job_cancel_requested(*, claim: Claim) -> bool:
    return Job.objects.filter(id=claim.job_id, cancel_requested_at__isnull=False).exists()


def job_step_once(*, claim: Claim, name: str, effect: Callable[[], T]) -> T:
    """Run `effect` at most once per job: once it has succeeded, its JSON result is recorded
    and every later attempt gets that result back without running it again."""
    name = clean_text(name, 200)  # the column's width; lookup and insert must use the same name
    recorded = JobStep.objects.filter(job_id=claim.job_id, name=name).values_list("result").first()
    if recorded is not None:
        return recorded[0]  # type: ignore[no-any-return]
    value = effect()
    _step_record(claim=claim, name=name, value=clean_json(value))
    return value


# How long a step's record may wait for PostgreSQL to answer again. The effect has happened:
# losing its record would have the retry repeat it, so the write is worth a wait of about a
# lease (a restart or a failover takes seconds), after which the lease is gone anyway.
STEP_RECORD_PAUSE_SECONDS = 0.5


def _step_record(*, claim: Claim, name: str, value: Any) -> None:
    """Record a step's result. When the connection is lost (PostgreSQL restarted between the
    effect and its record) the write is tried again on a new connection until about a lease
    has passed; inside a caller's transaction it cannot be, and the error goes up."""
    deadline = time.monotonic() + settings.JOB_LEASE_SECONDS
    while True:
        try:
            JobStep.objects.get_or_create(
                job_id=claim.job_id, name=name, defaults={"result": value, "attempt": claim.attempt}
            )
            return
        except (OperationalError, InterfaceError):
            if connection.in_atomic_block or time.monotonic() >= deadline:
                raise
            connection.close()  # this thread's own: the next try opens a fresh one
            time.sleep(STEP_RECORD_PAUSE_SECONDS)


def job_succeed(*, claim: Claim, result: Any) -> bool:
    """Record the result; False when this attempt no longer holds the job (a zombie)."""
    result = clean_json(result)
    now = timezone.now()
    took = duration_ms(claim.started_at, now)
    # On PostgreSQL the write is one statement, atomic by itself, and needs no transaction,
    # unless a follower writes in the finishing one (a job with a callback_url gets its
    # webhook delivery there; a workflow's job releases its dependents there); elsewhere it
    # is two statements.
    atomic = connection.vendor != "postgresql" or bool(claim.callback_url) or claim.workflow_id is not None
    with transaction.atomic() if atomic else contextlib.nullcontext():
        done = store.job_succeed_write(
            job_id=claim.job_id,
            lease_token=claim.lease_token,
            attempt=claim.attempt,
            worker=claim.worker,
            started_at=claim.started_at,
            result=result,
            now=now,
            duration_ms=took,
        )
        if done:
            announce_finished(
                job_id=claim.job_id,
                kind=claim.kind,
                status=JobStatus.SUCCEEDED,
                callback_url=claim.callback_url,
                duration_ms=took,
                workflow_id=claim.workflow_id,
            )
    return done


@dataclass(frozen=True)
class AttemptFailure:
    error_type: str
    message: str
    traceback: str = ""
    permanent: bool = False
    cancelled: bool = False


def job_fail_attempt(*, claim: Claim, failure: AttemptFailure) -> str:
    """Record a failed attempt. Returns the job's new status ('retrying', 'failed',
    'cancelled'), or 'stale' when this attempt no longer holds the job."""
    now = timezone.now()
    with transaction.atomic():
        job = _held(claim).select_for_update().first()
        if job is None:
            return "stale"
        if failure.cancelled:
            outcome = JobAttempt.Outcome.CANCELLED
        elif failure.permanent:
            outcome = JobAttempt.Outcome.PERMANENT
        else:
            outcome = JobAttempt.Outcome.FAILED
        store.attempt_row_create(
            job_id=claim.job_id,
            number=claim.attempt,
            worker=claim.worker,
            started_at=claim.started_at,
            now=now,
            duration_ms=duration_ms(claim.started_at, now),
            outcome=outcome,
            error_type=failure.error_type,
            error_message=failure.message,
            traceback=failure.traceback,
        )
        return job_after_failed_attempt(job=job, now=now, failure=failure)


def job_attempt_timed_out(*, job_id: str, seed: str, limit: float, killed: bool = True) -> str:
    """The worker killed a handler at its hard time limit: end that attempt as a failure
    now, instead of waiting for its lease to expire. Fenced by the killed attempt's lease
    token, rebuilt from its `seed` (lease_seed): when the job's lease is no longer that
    attempt's (it expired, and another process, maybe of the same worker, claimed the job
    again), nothing changes and this returns 'stale'. The worker's name would not do: every
    pool process of a worker shares it. `killed` False: a thread pool's attempt, which
    cannot be killed, is abandoned instead (workers.leases); its late writes are fenced."""
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(id=job_id, status=JobStatus.RUNNING).first()
        if job is None or job.lease_token != lease_token_for(seed, job.attempts):
            return "stale"
        ended = "was killed" if killed else "was abandoned (a thread cannot be killed)"
        message = f"the handler ran past its hard time limit of {limit:g} s and {ended}"
        record_lost_attempt(
            job=job, now=now, outcome=JobAttempt.Outcome.FAILED, error_type="TimeLimitExceeded", error_message=message
        )
        return job_after_failed_attempt(job=job, now=now, failure=AttemptFailure("TimeLimitExceeded", message))


def record_lost_attempt(*, job: Job, now: datetime, outcome: str, error_type: str, error_message: str) -> None:
    """The attempt of a job whose worker died or was killed at its hard limit: written from
    the job's row, since the worker that held it is gone."""
    started = job.started_at or now
    JobAttempt.objects.update_or_create(
        job_id=job.id,
        number=job.attempts,
        defaults={
            "worker": job.worker,
            "started_at": started,
            "finished_at": now,
            "duration_ms": duration_ms(started, now),
            "outcome": outcome,
            "error_type": clean_text(error_type, 200),
            "error_message": clean_text(error_message),
        },
    )


def job_after_failed_attempt(*, job: Job, now: datetime, failure: AttemptFailure) -> str:
    """Move a job whose attempt ended badly to its next state (retrying, failed or
    cancelled). Caller holds the row lock, in the transaction that writes the outcome."""
    # Cleaned here, not only where the attempt's row is written: the dead letter copies these.
    job.error_type = clean_text(failure.error_type, 200)
    job.error_message = clean_text(failure.message)
    job.error_traceback = clean_text(failure.traceback)
    job.lease_token = None
    job.lease_expires_at = None
    if failure.cancelled or job.cancel_requested_at is not None:
        job.status = JobStatus.CANCELLED
        job.finished_at = now
    elif failure.permanent or job.attempts >= job.max_attempts:
        job.status = JobStatus.FAILED
        job.finished_at = now
    else:
        job.status = JobStatus.RETRYING
        job.run_at = now + timedelta(seconds=retry_delay_seconds(kind=job.kind, attempt=job.attempts))
        job.published_at = None
        JobAttempt.objects.filter(job_id=job.id, number=job.attempts).update(retry_at=job.run_at)
    job.save(
        update_fields=[
            "status",
            "error_type",
            "error_message",
            "error_traceback",
            "lease_token",
            "lease_expires_at",
            "finished_at",
            "run_at",
            "published_at",
            "updated_at",
        ]
    )
    if job.status == JobStatus.FAILED:
        announce_failing(job=job, now=now)
    if job.status == JobStatus.RETRYING:
        transaction.on_commit(lambda: signals.job_retried.send(sender=Job, job_id=str(job.id), kind=job.kind))
    else:
        took = duration_ms(job.started_at, now) if job.started_at else None
        announce_finished(
            job_id=str(job.id),
            kind=job.kind,
            status=job.status,
            callback_url=job.callback_url,
            duration_ms=took,
            workflow_id=job.workflow_id,
        )
    return job.status
