"""How an attempt ended, told to Celery as its task state, after the outcome is in PostgreSQL.

Flower and `celery events` know a task only from the worker's events, and the worker sends the
one its task's body asks for: a return is task-succeeded, Retry is task-retried, Ignore sends
nothing, any other exception is task-failed (celery/worker/request.py, Request.on_success and
on_failure). Every message of a job carries the job's id as its task id (apps.jobs.publish), so
Flower's view of that id follows the job from attempt to attempt (celery/events/state.py,
Task.event: RETRY gives way to the next attempt's events; a finished state keeps its place
against a late RECEIVED or STARTED). The choices, and why, are in docs/operations.md (Flower).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from celery import Task
from celery.exceptions import Ignore, Retry

from apps.jobs import lifecycle

logger = logging.getLogger("workers.runtime")


class Outcome(NamedTuple):
    """What run_attempt did with one message: `status` is the job's new status ('succeeded',
    'failed', 'retrying', 'cancelled'), or what became of the message ('dropped': nothing to
    claim; 'deferred': the job waits in PostgreSQL for its kind's limits; 'stale': the attempt
    lost its lease before it finished). `reason` is the attempt's error, or why it was deferred."""

    status: str
    failure: lifecycle.AttemptFailure | None = None
    reason: str = ""


class AttemptFailed(Exception):
    """The error a job's attempt ended with, as Celery's events carry it. Its repr is the
    handler's own error as `Type('message')` (the task-failed and task-retried events' `exception`
    field is that repr), so Flower shows what the handler raised and the attempt's history
    records, never this class. Only the type's name and the message cross to the worker's
    main process: a handler's own exception class may not unpickle there."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(error_type, message)
        self.error_type = error_type
        self.message = message

    def __repr__(self) -> str:
        return f"{self.error_type}({self.message!r})"

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


class JobDeferred(Exception):
    """A job put back to wait in PostgreSQL at its kind's rate or concurrency limit; the relay
    publishes it again when due."""

    def __repr__(self) -> str:
        return f"JobDeferred({str(self)!r})"


def report(task: Task, outcome: Outcome) -> str:
    """End the task the way its attempt ended. Called after the outcome is committed."""
    status = outcome.status
    if status == "succeeded":
        return status
    failure = outcome.failure
    if status == "failed" and failure is not None:
        # Listed in JobTask.throws: Celery logs it at INFO without a traceback (the runtime
        # has already logged the attempt), sends task-failed and acknowledges the message
        # (task_acks_on_failure_or_timeout, True by default).
        raise AttemptFailed(failure.error_type, failure.message) from None
    if status == "retrying" and failure is not None:
        # Raised, not task.retry(): that would publish the message again, and the platform
        # republishes the job itself when its backoff ends (the reconciler's retry promotion).
        raise Retry(
            "the job is published again after its backoff", exc=AttemptFailed(failure.error_type, failure.message)
        )
    if status == "deferred":
        raise Retry(f"deferred: {outcome.reason}", exc=JobDeferred(outcome.reason))
    if status == "cancelled":
        _announce_revoked(task)
    # dropped (a duplicate, or a job that is no longer queued), stale (a newer attempt owns the
    # job and reports for it), cancelled: no state of their own over the job's real one.
    raise Ignore()


def _announce_revoked(task: Task) -> None:
    """A cancelled job shows in Flower as REVOKED, as one revoked from Flower does. A task
    cannot end in that state itself, so the event goes from here, on the pool process's own
    producer; the worker then sends nothing more for this message (Ignore). Only cancellations
    pay for it. Best effort: without the event Flower keeps the attempt's STARTED."""
    app = task.app
    try:
        with app.producer_or_acquire() as producer:
            # Fail at once when Redis is away, rather than kombu's connection retries.
            producer.connection.ensure_connection(max_retries=1)
            events = app.events.Dispatcher(producer.connection, hostname=task.request.hostname, enabled=False)
            fields = {"uuid": task.request.id, "terminated": False, "signum": None, "expired": False}
            events.publish("task-revoked", fields, producer, retry=False)
    except Exception as exc:
        logger.warning("job %s: could not tell Flower it was cancelled: %s", task.request.id, exc)
