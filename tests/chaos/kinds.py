"""The chaos suite's own kind (loaded through JOB_KIND_MODULES by the suite's processes, and
registered in the test process by the `chaos_kinds` fixture).

`chaos.effect` has a side effect an outside system would see: after its work it appends one
line to a ledger file (CHAOS_LEDGER), through `ctx.step`, the platform's way to keep a retry
from repeating an effect. A job whose line appears twice had its effect duplicated."""

from __future__ import annotations

import os
import time
from typing import Any

from apps.jobs.registry import JobContext, RetryableError, kind

LEDGER_ENV = "CHAOS_LEDGER"

SCHEMA = {
    "type": "object",
    "properties": {
        "seconds": {"type": "number", "minimum": 0, "maximum": 60},
        "fail_times": {"type": "integer", "minimum": 0, "maximum": 5},
    },
    "additionalProperties": False,
}


@kind(
    "chaos.effect",
    schema=SCHEMA,
    # Every fault a case injects may spend an attempt (a lost lease, a failed write); the suite
    # asserts exactly-once completion, not the attempt budget.
    max_attempts=10,
    retry_base_seconds=1.0,
    retry_max_seconds=2.0,
    soft_time_limit=60,
    time_limit=90,
)
def effect(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Fails its first `fail_times` attempts, works `seconds` (a plain sleep: it does not look
    at its lease, as a handler busy in a library call would not), then applies its effect once."""
    if ctx.attempt <= payload.get("fail_times", 0):
        raise RetryableError(f"failing on purpose, attempt {ctx.attempt}")
    time.sleep(payload.get("seconds", 0))
    applied = ctx.step("effect", lambda: ledger_append(ctx.job_id, ctx.attempt))
    return {"attempt": ctx.attempt, "effect_applied_by_attempt": applied}


def ledger_append(job_id: str, attempt: int) -> int:
    """One line per effect; O_APPEND keeps lines from concurrent processes whole."""
    line = f"{job_id} {attempt} {os.getpid()}\n".encode()
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return attempt
