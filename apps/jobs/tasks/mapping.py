"""How Django's task vocabulary maps onto a job's, both ways: priority, queue, status,
arguments, and an error's exception class. Plain functions, no database."""

from __future__ import annotations

import builtins
import json
import re
from typing import Any

from apps.jobs.models import JobStatus
from apps.jobs.tasks.compat import SUCCEEDED, TaskResultStatus

# django.tasks priorities run from -100 to 100 (0 by default); the platform has three
# queues. A third of the range each, so the default 0 stays `default` and only a clear ask
# (34 and up, -34 and down) moves a task to `high` or `low`.
HIGH_FROM = 34
LOW_TO = -34
# What a job's priority reads back as, when it is not the band of the task's own priority.
TASK_PRIORITY_OF = {"high": 50, "default": 0, "low": -50}

# A task's queue_name chooses the family of platform queues its kind uses (the priority picks
# the queue in it): "default" is high/default/low, consumed by `worker`; "io" is
# io_high/io_default/io_low, run on worker-io's threads (an I/O-bound kind: docs/kinds.md).
QUEUE_FAMILIES: dict[str, bool] = {"default": False, "io": True}  # name -> io_bound

# The handler's input: the task's arguments, as they crossed JSON.
PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"args": {"type": "array"}, "kwargs": {"type": "object"}},
    "required": ["args", "kwargs"],
    "additionalProperties": False,
}

STATUS_OF: dict[str, TaskResultStatus] = {
    # A workflow job waiting for its parents, a queued one and one waiting out its backoff
    # are all "ready to be executed (again)" in django.tasks' words.
    JobStatus.WAITING: TaskResultStatus.READY,
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.RETRYING: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCEEDED: SUCCEEDED,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    # django.tasks has no cancelled state: a cancelled job "was unable to" finish.
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}

# Errors the platform records under its own names (workers.runtime, the reconciler,
# revocation), not an exception's class name: the class each stands for.
PLATFORM_ERRORS = {
    "JobCancelled": "apps.jobs.registry.JobCancelled",
    "ClientError": "apps.jobs.registry.ClientError",
    "TimeLimitExceeded": "celery.exceptions.SoftTimeLimitExceeded",
    "WorkerLost": "billiard.exceptions.WorkerLostError",
    "Revoked": "celery.exceptions.TaskRevokedError",
}


def platform_priority(priority: int) -> str:
    """A django.tasks priority (-100..100) as the platform's high, default or low."""
    if priority >= HIGH_FROM:
        return "high"
    if priority <= LOW_TO:
        return "low"
    return "default"


def task_priority(platform: str, declared: int) -> int:
    """A job's priority as a django.tasks one: the task's own when it maps to the job's, else
    the middle of the job's band (the exact number a caller asked for is not kept)."""
    return declared if platform_priority(declared) == platform else TASK_PRIORITY_OF[platform]


def task_payload(args: Any, kwargs: Any) -> dict[str, Any]:
    """The job's payload for a task's arguments, exactly as they cross JSON. Anything JSON
    cannot hold raises TypeError here, at enqueue, as django.tasks documents ("Object of type
    datetime is not JSON serializable"), never later in the worker; so does NaN or infinity,
    which PostgreSQL's jsonb refuses. A tuple arrives as a list, as with any backend."""
    try:
        text = json.dumps({"args": list(args), "kwargs": dict(kwargs)}, allow_nan=False)
    except ValueError as exc:  # allow_nan=False's complaint about NaN and infinity
        raise TypeError(f"Task arguments must be JSON: {exc}") from None
    return json.loads(text)


def exception_class_path(error_type: str, traceback: str) -> str:
    """The dotted path of the exception an attempt failed with. The platform records a class's
    bare name; the last line of its traceback names it in full (`module.Class: message`, or
    just `Class: message` for a builtin)."""
    if error_type:
        line = re.compile(rf"^((?:[A-Za-z_]\w*\.)*){re.escape(error_type)}(?::|$)", re.MULTILINE)
        prefixes = line.findall(traceback or "")
        if prefixes and prefixes[-1]:
            return f"{prefixes[-1]}{error_type}"
    if error_type in PLATFORM_ERRORS:
        return PLATFORM_ERRORS[error_type]
    if isinstance(getattr(builtins, error_type, None), type):
        return f"builtins.{error_type}"
    return error_type or "builtins.Exception"
