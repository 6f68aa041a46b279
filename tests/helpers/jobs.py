"""A job's life driven as plain functions (submit, claim) and read back (its attempts, the messages
waiting on a broker queue); for the lifecycle tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis
from django.conf import settings

from apps.jobs import lifecycle
from apps.jobs.models import Job, JobAttempt


def broker_messages(queue: str) -> list[dict[str, Any]]:
    """The messages waiting on a queue of the private Redis broker, decoded as a worker would."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        messages = []
        for raw in client.lrange(queue, 0, -1):
            message = json.loads(raw)
            args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            messages.append({"task": message["headers"]["task"], "args": args, "kwargs": kwargs})
        return messages
    finally:
        client.close()


def submitted(user: Any, kind: str = "diagnostics.noop", payload: dict | None = None, **options: Any) -> Job:
    return lifecycle.job_submit(owner=user, kind=kind, payload=payload or {}, **options)


def claim(job: Job, worker: str = "worker-1") -> lifecycle.Claim:
    c = lifecycle.job_claim(job_id=str(job.id), worker=worker)
    assert c is not None
    return c


def attempts_of(job: Job) -> list[tuple[int, str]]:
    return list(JobAttempt.objects.filter(job=job).order_by("number").values_list("number", "outcome"))


def failed_for_good(user: Any, kind: str = "diagnostics.noop", payload: dict | None = None) -> Job:
    """A job failed by a permanent error through the real services: failed, with its open
    dead letter."""
    job = submitted(user, kind, payload)
    lifecycle.job_fail_attempt(
        claim=claim(job), failure=lifecycle.AttemptFailure("Boom", "it broke", "tb", permanent=True)
    )
    return Job.objects.get(pk=job.pk)
