"""I/O-bound kinds for the worker-io tests (loaded through JOB_KIND_MODULES by those tests'
workers; imported by the test modules, which registers them in the test process too)."""

from __future__ import annotations

import threading
import time
from typing import Any

from apps.jobs.registry import JobContext, PermanentError, RetryableError, kind

WAIT_KIND = "testing.io_wait"
FLAKY_KIND = "testing.io_flaky"
OVERRUN_KIND = "testing.io_overrun"
HANG_KIND = "testing.io_hang"

SECONDS = {
    "type": "object",
    "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 60}},
    "required": ["seconds"],
    "additionalProperties": False,
}


@kind(WAIT_KIND, schema=SECONDS, io_bound=True, max_attempts=3)
def io_wait(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Waits as a call over the network would, honouring cancellation; says where it ran."""
    started = time.time()
    deadline = time.monotonic() + payload["seconds"]
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.05)
    return {"thread": threading.current_thread().name, "started": started, "finished": time.time()}


@kind(
    FLAKY_KIND,
    schema={
        "type": "object",
        "properties": {"fail_times": {"type": "integer", "minimum": 0}, "permanent": {"type": "boolean"}},
        "required": ["fail_times"],
        "additionalProperties": False,
    },
    io_bound=True,
    max_attempts=3,
    retry_base_seconds=0.2,
    retry_max_seconds=0.2,
)
def io_flaky(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Fails its first `fail_times` attempts (permanently if asked), then succeeds."""
    if ctx.attempt <= payload["fail_times"]:
        if payload.get("permanent"):
            raise PermanentError(f"refused on attempt {ctx.attempt}")
        raise RetryableError(f"unavailable on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@kind(
    OVERRUN_KIND,
    schema=SECONDS,
    io_bound=True,
    max_attempts=2,
    retry_base_seconds=0.2,
    retry_max_seconds=0.2,
    soft_time_limit=1,
    time_limit=20,
)
def io_overrun(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The first attempt checks its context in a loop past the soft limit; the retry returns."""
    if ctx.attempt == 1:
        deadline = time.monotonic() + payload["seconds"]
        while time.monotonic() < deadline:
            ctx.check_cancelled()
            time.sleep(0.05)
    return {"attempt": ctx.attempt}


@kind(
    HANG_KIND,
    schema=SECONDS,
    io_bound=True,
    max_attempts=2,
    retry_base_seconds=0.2,
    retry_max_seconds=0.2,
    soft_time_limit=1,
    time_limit=2,
)
def io_hang(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The first attempt never looks at its context (a call without a timeout), then returns
    as if it had succeeded; the retry returns at once."""
    if ctx.attempt == 1:
        time.sleep(payload["seconds"])
    return {"attempt": ctx.attempt}
