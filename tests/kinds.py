"""Kinds that exist only for tests (loaded through JOB_KIND_MODULES in tests/environment.py)."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from apps.jobs.registry import JobContext, kind

SECONDS = {
    "type": "object",
    "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 60}},
    "required": ["seconds"],
    "additionalProperties": False,
}


@kind("testing.hang", schema=SECONDS, max_attempts=1, soft_time_limit=1, time_limit=2)
def hang(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Ignores the soft time limit, as a handler stuck in C code would, until killed."""
    deadline = time.monotonic() + payload["seconds"]
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):
            time.sleep(0.05)
    return {}


@kind("testing.serial", schema=SECONDS, concurrency=1, soft_time_limit=30, time_limit=40)
def serial(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """At most one runs at a time, whatever the number of workers."""
    time.sleep(payload["seconds"])
    return {}


@kind("testing.limited", schema={"type": "object"}, rate_limit="2/s", soft_time_limit=10, time_limit=20)
def limited(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """At most two starts a second."""
    return {}


@kind(
    "testing.leak",
    schema={"type": "object", "properties": {"mb": {"type": "integer"}}},
    soft_time_limit=10,
    time_limit=20,
)
def leak(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Keeps `mb` megabytes alive in its process after it returns, as a leaking handler would."""
    _LEAKED.append(bytearray(payload.get("mb", 1) * 1024 * 1024))
    return {"pid": os.getpid()}


_LEAKED: list[bytearray] = []


@kind(
    "testing.number",
    schema={
        "type": "object",
        "properties": {"n": {"type": "integer"}, "seconds": {"type": "number", "minimum": 0, "maximum": 10}},
        "required": ["n"],
    },
    soft_time_limit=20,
    time_limit=30,
)
def number(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A workflow's member that makes a number (after `seconds`), for a chord to gather."""
    time.sleep(payload.get("seconds", 0))
    return {"n": payload["n"]}


@kind("testing.gather", schema={"type": "object"}, soft_time_limit=20, time_limit=30)
def gather(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A chord's last job: adds up what its dependencies made (ctx.parent_results)."""
    parents = ctx.parent_results
    return {"total": sum(result["n"] for result in parents.values()), "refs": sorted(parents)}
