"""Diagnostic kinds, for tests, demos and benchmarks."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from django.conf import settings

from apps.jobs.registry import JobContext, PermanentError, RetryableError, kind


@kind("diagnostics.noop", schema={"type": "object", "additionalProperties": False}, soft_time_limit=10, time_limit=20)
def noop(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Does nothing: measures the platform's own cost."""
    return {}


@kind(
    "diagnostics.sleep",
    schema={
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3600}},
        "required": ["seconds"],
        "additionalProperties": False,
    },
    soft_time_limit=3660,
    time_limit=3720,
)
def sleep(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleeps in small steps, reporting progress and honouring cancellation."""
    seconds = float(payload["seconds"])
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        ctx.check_cancelled()
        ctx.progress(100.0 * elapsed / seconds, f"slept {elapsed:.1f} of {seconds:g} s")
        time.sleep(min(0.1, seconds - elapsed))
    ctx.progress(100.0, f"slept {seconds:g} s")
    return {"slept": seconds}


@kind(
    "diagnostics.flaky",
    schema={
        "type": "object",
        "properties": {
            "fail_times": {"type": "integer", "minimum": 0, "maximum": 100},
            "permanent": {"type": "boolean"},
        },
        "required": ["fail_times"],
        "additionalProperties": False,
    },
    max_attempts=5,
    soft_time_limit=10,
    time_limit=20,
)
def flaky(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Fails `fail_times` times (retryable, or permanent), then succeeds."""
    if ctx.attempt <= payload["fail_times"]:
        message = f"failing on purpose, attempt {ctx.attempt} of the first {payload['fail_times']}"
        if payload.get("permanent", False):
            raise PermanentError(message)
        raise RetryableError(message)
    return {"succeeded_on_attempt": ctx.attempt}


if settings.DIAGNOSTICS_UNSAFE:

    @kind(
        "diagnostics.crash",
        schema={"type": "object", "additionalProperties": False},
        max_attempts=2,
        soft_time_limit=10,
        time_limit=20,
    )
    def crash(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
        """Kills its own worker process (tests only: registered when DIAGNOSTICS_UNSAFE=1)."""
        os.kill(os.getpid(), signal.SIGKILL)
        return {}  # not reached
