"""The task runtime: claim, lease, run the handler with its context, record the outcome.

A task is an interface, like a view: it receives a job id, calls services, and owns only
delivery policy. Business rules (what a retry is, when a job is parked) live in
apps.jobs.lifecycle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from redis.exceptions import RedisError

from apps.core import context
from apps.core import redis as platform_redis
from apps.core.text import clean_text
from apps.jobs import flow, lifecycle, pauses, selectors
from apps.jobs.registry import CLIENT_ERROR_TYPE, ClientError, JobCancelled, Kind, PermanentError, registry
from apps.ops import metrics
from workers import joblog
from workers.leases import Lease, keeper
from workers.outcomes import Outcome, report

logger = logging.getLogger("workers.runtime")

T = TypeVar("T")

_CHECK_EVERY = 0.5  # seconds between database looks at progress and cancellation


class Context:
    """What a handler gets besides its payload (apps.jobs.registry.JobContext)."""

    def __init__(self, claim: lifecycle.Claim, lease: Lease) -> None:
        self._claim = claim
        self._lease = lease
        self.job_id = claim.job_id
        self.attempt = claim.attempt
        # Stable across attempts: hand it to outside systems so a retry is not a second order.
        self.idempotency_key = f"job-{claim.job_id}"
        self._last_progress = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False
        # Past the kind's soft time limit, which the context enforces on every pool: a
        # thread cannot be interrupted (workers.leases).
        self.timed_out = False
        # The lines the handler logs, kept with this attempt (workers.joblog); the lease
        # keeper writes them on the way for a long attempt.
        self._log = lease.joblog = joblog.attempt_log(claim)

    def log(self, message: str, level: str = "info") -> None:
        joblog.log_line(self._log, self._claim.kind, message, level)

    def progress(self, percent: float, message: str = "") -> None:
        now = time.monotonic()
        if percent < 100 and now - self._last_progress < _CHECK_EVERY:
            return  # a handler may report in a tight loop; the database hears it twice a second
        self._last_progress = now
        lifecycle.job_report_progress(claim=self._claim, percent=percent, message=message)

    def is_cancelled(self) -> bool:
        if self._cancelled or self._lease.lost:
            self.timed_out = self.timed_out or self._lease.timed_out
            return True
        now = time.monotonic()
        if now >= self._lease.soft_at:
            self.timed_out = True
            return True
        if now - self._last_cancel_check >= _CHECK_EVERY:
            self._last_cancel_check = now
            self._cancelled = lifecycle.job_cancel_requested(claim=self._claim)
        return self._cancelled

    def check_cancelled(self) -> None:
        if self.is_cancelled():
            if self.timed_out:
                raise SoftTimeLimitExceeded(f"job {self.job_id} ran past its soft time limit")
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def step(self, name: str, effect: Callable[[], T]) -> T:
        return lifecycle.job_step_once(claim=self._claim, name=name, effect=effect)

    @property
    def parent_results(self) -> dict[str, Any]:
        """The results of this job's workflow dependencies, by ref. Read on first use only,
        so a job that never asks (every job outside a workflow) pays no query for it."""
        if self._claim.workflow_id is None:
            return {}
        cached = self.__dict__.get("_parent_results")
        if cached is None:
            from apps.workflows.selectors import parent_results

            cached = self.__dict__["_parent_results"] = parent_results(job_id=self._claim.job_id)
        return cached


def _describe(exc: BaseException) -> tuple[str, str, str]:
    """An exception as text fit to log and store: its message may carry NUL or lone
    surrogates from outside (a receiver's answer, a file's name), which PostgreSQL refuses."""
    message = str(exc) or type(exc).__name__
    return type(exc).__name__, clean_text(message), clean_text("".join(traceback.format_exception(exc)))


def run_job(task: Task, job_id: str) -> str:
    """The body of every kind's task: run the attempt, then end the task as the attempt ended
    (workers.outcomes), once its outcome is in PostgreSQL."""
    return report(task, run_attempt(task, job_id))


def run_attempt(task: Task, job_id: str) -> Outcome:
    """Claim the job and run one attempt of it; or defer it, or drop a message with nothing
    to claim."""
    _reuse_connection()
    worker = task.request.hostname or "worker"
    kind = registry.get(task.name)
    slot = _pass_gates(kind, job_id)
    if isinstance(slot, Outcome):
        return slot
    # The seed makes the lease token one the worker's main process can rebuild when it kills
    # this process at the hard time limit (JobRequest.on_timeout in workers/tasks.py).
    request = task.request
    seed = (
        lifecycle.lease_seed(
            task_id=request.id,
            delivery=delivery_of(getattr(request, "properties", None)),
            worker=worker,
            pid=os.getpid(),
        )
        if request.id
        else None
    )
    # The claim's Redis writes (drain counter, metrics, the waiting clients' notification)
    # leave in one round trip.
    with platform_redis.batched_writes():
        try:
            claim = _claim(job_id, worker, seed)
        except (OperationalError, InterfaceError) as exc:
            _release(kind, slot)
            _requeue_while_database_away(job_id, exc)
        if claim is not None:
            wait = max(0.0, (claim.started_at - claim.created_at).total_seconds())
            metrics.record_job_start(kind=claim.kind, queue=claim.queue, wait_seconds=wait)
    if claim is None:
        _release(kind, slot)
        return _unclaimed(job_id, kind)
    with context.job_context(job=job_id, kind=claim.kind, request=claim.request_id):
        return _run_claimed(kind, claim, slot, seed)


def delivery_of(properties: dict[str, Any] | None) -> str | None:
    """The broker's tag for this copy of a message, from its properties: new at every publish
    of a job (kombu's Redis transport), kept by a copy Redis restores. The pool process reads
    them as its task's `request.properties`; the worker's main process, whose Request has no
    `properties`, as `request.request_dict["properties"]` (JobRequest.on_timeout)."""
    tag = (properties or {}).get("delivery_tag")
    return str(tag) if tag is not None else None


def _reuse_connection() -> None:
    """Keep the process's connection from job to job, closed only when too old or after an
    error. Django's health check would cost every job a `SELECT 1` round trip before its
    claim; the claim is the check instead (see _claim)."""
    close_old_connections()
    connection.health_check_done = True


def _claim(job_id: str, worker: str, seed: str | None) -> lifecycle.Claim | None:
    try:
        return lifecycle.job_claim(job_id=job_id, worker=worker, seed=seed)
    except (OperationalError, InterfaceError):
        # The connection died while idle (PostgreSQL restarted, a proxy timed it out): once
        # more on a new one. Had the lost statement committed, this finds nothing to claim
        # and the lease it took expires into a retry: a second attempt, never a second run.
        connection.close()
        return lifecycle.job_claim(job_id=job_id, worker=worker, seed=seed)


# How long a pool process waits before handing a message back while PostgreSQL is away, so
# the worker does not spin through its queue at full speed.
DATABASE_AWAY_PAUSE_SECONDS = 1.0


def _requeue_while_database_away(job_id: str, exc: Exception) -> NoReturn:
    """PostgreSQL cannot be reached (restarting, failing over): the job cannot be claimed, and
    the message is its only ticket to run (the job is published, so neither the relay nor the
    broker-loss repair would send it again). Put the message back instead of letting Celery
    acknowledge a failed task, and pause first."""
    connection.close()
    logger.warning("job %s: PostgreSQL unreachable (%s); message put back on its queue", job_id, exc)
    time.sleep(DATABASE_AWAY_PAUSE_SECONDS)
    raise Reject(f"PostgreSQL unreachable: {type(exc).__name__}", requeue=True)


def _run_claimed(kind: Kind, claim: lifecycle.Claim, slot: flow.Slot | None, seed: str | None = None) -> Outcome:
    job_id = claim.job_id
    lease = keeper.hold(claim, kind=kind, slot=slot, seed=seed)
    ctx = Context(claim, lease)
    started = time.monotonic()
    logger.info("job %s (%s): attempt %s of %s started", job_id, claim.kind, claim.attempt, claim.max_attempts)
    try:
        try:
            with joblog.capturing(ctx._log):
                result = kind.handler(ctx, claim.payload)
            json.dumps(result)  # a result must cross JSON, like everything else we store
            if ctx.timed_out:  # it stopped because its context said so: not a success
                raise SoftTimeLimitExceeded(f"job {job_id} stopped at its soft time limit")
        except JobCancelled as exc:
            failure = lifecycle.AttemptFailure("JobCancelled", str(exc), cancelled=True)
            if ctx.timed_out:  # the handler took its limit for a cancel
                failure = _time_limit_failure(kind, exc)
        except ClientError as exc:
            # The client's input is at fault: one type the monitor knows, whatever the subclass.
            _, message, tb = _describe(exc)
            failure = lifecycle.AttemptFailure(CLIENT_ERROR_TYPE, message, tb, permanent=True)
        except PermanentError as exc:
            failure = lifecycle.AttemptFailure(*_describe(exc), permanent=True)
        except SoftTimeLimitExceeded as exc:
            failure = _time_limit_failure(kind, exc)
        except Exception as exc:
            failure = lifecycle.AttemptFailure(*_describe(exc))
        else:
            with platform_redis.batched_writes():  # the finish's Redis writes in one round trip
                metrics.observe("job_duration", f"{claim.kind}|succeeded", time.monotonic() - started)
                succeeded = lifecycle.job_succeed(claim=claim, result=result)
            if succeeded:
                logger.info("job %s (%s): succeeded on attempt %s", job_id, claim.kind, claim.attempt)
                return Outcome("succeeded")
            logger.warning("job %s (%s): finished after losing its lease; result not recorded", job_id, claim.kind)
            return Outcome("stale")
        with platform_redis.batched_writes():
            metrics.observe("job_duration", f"{claim.kind}|failed", time.monotonic() - started)
            status = lifecycle.job_fail_attempt(claim=claim, failure=failure)
        # The client's bad input is not the platform's error: a warning, like a retry.
        client_fault = failure.error_type == CLIENT_ERROR_TYPE
        log = logger.warning if status in ("retrying", "cancelled") or client_fault else logger.error
        log(
            "job %s (%s): attempt %s ended with %s: %s; job is now %s",
            job_id,
            claim.kind,
            claim.attempt,
            failure.error_type,
            failure.message[:200],
            status,
        )
        return Outcome(status, failure)
    finally:
        keeper.release(lease)
        _release(kind, slot)


def _time_limit_failure(kind: Kind, exc: BaseException) -> lifecycle.AttemptFailure:
    _, _, tb = _describe(exc)
    message = f"the handler ran past its soft time limit of {kind.soft_time_limit:g} s"
    return lifecycle.AttemptFailure("TimeLimitExceeded", message, tb)


def _unclaimed(job_id: str, kind: Kind) -> Outcome:
    """Nothing was claimed. A queued job the claim refused is held by a pause: hand it back
    to PostgreSQL without spending an attempt (apps.jobs.pauses). Anything else (a duplicate
    or stale message, a cancelled or finished job) is dropped. This path alone pays the look."""
    held = pauses.job_hand_back(job_id=job_id)
    if held is None:
        logger.info("job %s: nothing to claim (duplicate, stale, cancelled or finished); dropped", job_id)
        return Outcome("dropped")
    if held:
        logger.info("job %s (%s): its queue or kind is paused; held in PostgreSQL until resumed", job_id, kind.name)
        return Outcome("deferred", reason="its queue or kind is paused; it runs after the resume")
    # A resume came between the claim and this look: the relay publishes it on its next sweep.
    logger.info("job %s (%s): resumed while its message was refused; the relay publishes it again", job_id, kind.name)
    return Outcome("deferred", reason="resumed meanwhile; published again by the relay")


def _pass_gates(kind: Kind, job_id: str) -> flow.Slot | Outcome | None:
    """Check the kind's rate limit and take a concurrency slot. Returns the slot (None for a
    kind without a concurrency limit), or the outcome when the job was deferred: it then waits
    in PostgreSQL, and this worker goes on with its next message instead of holding this one.
    A kind whose limits are keyed (limit_per) counts them under the job's own key."""
    if not (kind.rate_limit or kind.concurrency):
        return None
    key = None
    if kind.limit_per:
        try:
            key = _limit_key(kind.limit_per, job_id)
        except ObjectDoesNotExist:
            return None  # gone: the claim finds nothing and drops the message
    try:
        if kind.rate_limit:
            gate = flow.rate_acquire(kind.name, kind.rate_limit, key=key)
            if not gate.allowed:
                return _defer(job_id, kind, gate.retry_in, "rate limit")
        if kind.concurrency:
            gate = flow.concurrency_acquire(
                kind.name, kind.concurrency, lease_seconds=settings.JOB_LEASE_SECONDS, key=key
            )
            if not gate.allowed:
                return _defer(job_id, kind, gate.retry_in, "concurrency limit")
            return gate.slot
    except RedisError:
        # Without Redis the limits cannot be counted: run rather than stall, and say so.
        logger.warning("job %s (%s): limits unavailable (Redis unreachable); running anyway", job_id, kind.name)
    return None


def _limit_key(per: str, job_id: str) -> str:
    """The job's limit key: one small query, paid by keyed kinds only. It is the job's first
    query, so it meets a connection that died while idle as the claim does (_claim)."""
    field = flow.limit_payload_field(per)
    try:
        try:
            value = selectors.job_limit_value(job_id=job_id, payload_field=field)
        except (OperationalError, InterfaceError):
            connection.close()
            value = selectors.job_limit_value(job_id=job_id, payload_field=field)
    except (OperationalError, InterfaceError) as exc:
        _requeue_while_database_away(job_id, exc)
    return flow.limit_key(value)


def _defer(job_id: str, kind: Kind, seconds: float, why: str) -> Outcome:
    seconds = min(max(seconds, 0.05), settings.JOB_DEFER_MAX_SECONDS)
    if lifecycle.job_defer(job_id=job_id, seconds=seconds):
        logger.info("job %s (%s): at its %s; deferred %.2f s", job_id, kind.name, why, seconds)
        return Outcome("deferred", reason=f"at its {why}; due again in {seconds:.2f} s")
    return Outcome("dropped")  # no longer queued: a duplicate of a job that runs or ran


def _release(kind: Kind, slot: flow.Slot | None) -> None:
    if slot:
        with contextlib.suppress(RedisError):  # else the slot expires with its lease
            flow.concurrency_release(slot)
