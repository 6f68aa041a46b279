"""The task runtime: claim, lease, run the handler with its context, record the outcome.

A task is an interface, like a view: it receives a job id, calls services, and owns only
delivery policy. Business rules (what a retry is, when a job is parked) live in
apps.jobs.services.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import TypeVar

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections, connection
from redis.exceptions import RedisError

from apps.core import context
from apps.jobs import broker, flow, services
from apps.jobs.registry import JobCancelled, Kind, PermanentError, registry
from apps.ops import metrics

logger = logging.getLogger("workers.runtime")

T = TypeVar("T")

_CHECK_EVERY = 0.5  # seconds between database looks at progress and cancellation


class LeaseKeeper(threading.Thread):
    """Renews the running attempt's lease while the handler works. If the lease is lost
    (the reconciler gave the job to someone else) the fence in every write protects the
    newer attempt; `lost` lets the handler's context stop early."""

    def __init__(self, claim: services.Claim, *, kind: Kind, slot: str = "") -> None:
        super().__init__(name=f"lease-{claim.job_id}", daemon=True)
        self.claim = claim
        self.kind = kind
        self.slot = slot
        self.lost = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        interval = max(0.2, settings.JOB_LEASE_SECONDS / 3)
        try:
            while not self._stop_event.wait(interval):
                try:
                    if not services.job_heartbeat(claim=self.claim):
                        self.lost = True
                        return
                    if self.slot:
                        flow.concurrency_renew(self.kind.name, self.slot, lease_seconds=settings.JOB_LEASE_SECONDS)
                except Exception:
                    logger.exception("job %s: could not renew its lease", self.claim.job_id)
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


class Context:
    """What a handler gets besides its payload (apps.jobs.registry.JobContext)."""

    def __init__(self, claim: services.Claim, keeper: LeaseKeeper) -> None:
        self._claim = claim
        self._keeper = keeper
        self.job_id = claim.job_id
        self.attempt = claim.attempt
        # Stable across attempts: hand it to outside systems so a retry is not a second order.
        self.idempotency_key = f"job-{claim.job_id}"
        self._last_progress = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False

    def progress(self, percent: float, message: str = "") -> None:
        now = time.monotonic()
        if percent < 100 and now - self._last_progress < _CHECK_EVERY:
            return  # a handler may report in a tight loop; the database hears it twice a second
        self._last_progress = now
        services.job_report_progress(claim=self._claim, percent=percent, message=message)

    def is_cancelled(self) -> bool:
        if self._cancelled or self._keeper.lost:
            return True
        now = time.monotonic()
        if now - self._last_cancel_check >= _CHECK_EVERY:
            self._last_cancel_check = now
            self._cancelled = services.job_cancel_requested(claim=self._claim)
        return self._cancelled

    def check_cancelled(self) -> None:
        if self.is_cancelled():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def step(self, name: str, effect: Callable[[], T]) -> T:
        return services.job_step_once(claim=self._claim, name=name, effect=effect)


def _describe(exc: BaseException) -> tuple[str, str, str]:
    return type(exc).__name__, str(exc) or type(exc).__name__, "".join(traceback.format_exception(exc))


def run_job(task: Task, job_id: str) -> str:
    """The body of every kind's task."""
    close_old_connections()
    worker = task.request.hostname or "worker"
    kind = registry.get(task.name)
    slot = _pass_gates(kind, job_id)
    if slot is None:
        return "deferred"
    # The claim's Redis writes (drain counter, metrics, the waiting clients' notification)
    # leave in one round trip.
    with broker.batched_writes():
        claim = services.job_claim(job_id=job_id, worker=worker)
        if claim is not None:
            wait = max(0.0, (claim.started_at - claim.created_at).total_seconds())
            metrics.record_job_start(kind=claim.kind, queue=claim.queue, wait_seconds=wait)
    if claim is None:
        _release(kind, slot)
        logger.info("job %s: nothing to claim (duplicate, stale, cancelled or finished); dropped", job_id)
        return "dropped"
    with context.job_context(job=job_id, kind=claim.kind, request=claim.request_id):
        return _run_claimed(kind, claim, slot)


def _run_claimed(kind: Kind, claim: services.Claim, slot: str) -> str:
    job_id = claim.job_id
    keeper = LeaseKeeper(claim, kind=kind, slot=slot)
    keeper.start()
    ctx = Context(claim, keeper)
    started = time.monotonic()
    logger.info("job %s (%s): attempt %s of %s started", job_id, claim.kind, claim.attempt, claim.max_attempts)
    try:
        try:
            result = kind.handler(ctx, claim.payload)
            json.dumps(result)  # a result must cross JSON, like everything else we store
        except JobCancelled as exc:
            failure = services.AttemptFailure("JobCancelled", str(exc), cancelled=True)
        except PermanentError as exc:
            failure = services.AttemptFailure(*_describe(exc), permanent=True)
        except SoftTimeLimitExceeded as exc:
            _, _, tb = _describe(exc)
            failure = services.AttemptFailure(
                "TimeLimitExceeded", f"the handler ran past its soft time limit of {kind.soft_time_limit} s", tb
            )
        except Exception as exc:
            failure = services.AttemptFailure(*_describe(exc))
        else:
            with broker.batched_writes():  # the finish's Redis writes in one round trip
                metrics.observe("job_duration", f"{claim.kind}|succeeded", time.monotonic() - started)
                succeeded = services.job_succeed(claim=claim, result=result)
            if succeeded:
                logger.info("job %s (%s): succeeded on attempt %s", job_id, claim.kind, claim.attempt)
                return "succeeded"
            logger.warning("job %s (%s): finished after losing its lease; result not recorded", job_id, claim.kind)
            return "stale"
        with broker.batched_writes():
            metrics.observe("job_duration", f"{claim.kind}|failed", time.monotonic() - started)
            status = services.job_fail_attempt(claim=claim, failure=failure)
        log = logger.warning if status in ("retrying", "cancelled") else logger.error
        log(
            "job %s (%s): attempt %s ended with %s: %s; job is now %s",
            job_id,
            claim.kind,
            claim.attempt,
            failure.error_type,
            failure.message[:200],
            status,
        )
        return status
    finally:
        keeper.stop()
        _release(kind, slot)


def _pass_gates(kind: Kind, job_id: str) -> str | None:
    """Check the kind's rate limit and take a concurrency slot. Returns the slot token ("" for
    a kind without a concurrency limit), or None when the job was deferred: it then waits in
    PostgreSQL, and this worker goes on with its next message instead of holding this one."""
    try:
        if kind.rate_limit:
            gate = flow.rate_acquire(kind.name, kind.rate_limit)
            if not gate.allowed:
                _defer(job_id, kind, gate.retry_in, "rate limit")
                return None
        if kind.concurrency:
            gate = flow.concurrency_acquire(kind.name, kind.concurrency, lease_seconds=settings.JOB_LEASE_SECONDS)
            if not gate.allowed:
                _defer(job_id, kind, gate.retry_in, "concurrency limit")
                return None
            return gate.token
    except RedisError:
        # Without Redis the limits cannot be counted: run rather than stall, and say so.
        logger.warning("job %s (%s): limits unavailable (Redis unreachable); running anyway", job_id, kind.name)
    return ""


def _defer(job_id: str, kind: Kind, seconds: float, why: str) -> None:
    seconds = min(max(seconds, 0.05), settings.JOB_DEFER_MAX_SECONDS)
    if services.job_defer(job_id=job_id, seconds=seconds):
        logger.info("job %s (%s): at its %s; deferred %.2f s", job_id, kind.name, why, seconds)


def _release(kind: Kind, slot: str) -> None:
    if slot:
        with contextlib.suppress(RedisError):  # else the slot expires with its lease
            flow.concurrency_release(kind.name, slot)
