"""Kinds that log, for the tests of logs kept with each attempt (loaded through
JOB_KIND_MODULES by those tests' workers; imported by the test module, which registers them
in the test process too)."""

from __future__ import annotations

import logging
import time
from typing import Any

from apps.jobs.registry import JobContext, RetryableError, kind

logger = logging.getLogger(__name__)

LOG_KIND = "testing.logs"
IO_LOG_KIND = "testing.io_logs"

SCHEMA = {
    "type": "object",
    "properties": {
        "tag": {"type": "string", "maxLength": 20},
        "fail_times": {"type": "integer", "minimum": 0},
        "lines": {"type": "integer", "minimum": 0, "maximum": 100},
        "pause": {"type": "number", "minimum": 0, "maximum": 5},
        "hold": {"type": "number", "minimum": 0, "maximum": 60},
        "hold_attempts": {"type": "integer", "minimum": 0},
    },
    "required": ["tag"],
    "additionalProperties": False,
}


def _logs(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Logs through ctx.log and the logging module, `lines` lines `pause` seconds apart,
    holds `hold` seconds on its first `hold_attempts` attempts (all, by default; checking
    for cancellation), then fails its first `fail_times` attempts."""
    tag = payload["tag"]
    ctx.log(f"{tag}: attempt {ctx.attempt} starts")
    logger.info("%s: from the logging module on attempt %s", tag, ctx.attempt)
    for i in range(payload.get("lines", 0)):
        logger.info("%s: line %s", tag, i)
        time.sleep(payload.get("pause", 0))
    hold = payload.get("hold", 0) if ctx.attempt <= payload.get("hold_attempts", ctx.attempt) else 0
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.05)
    if ctx.attempt <= payload.get("fail_times", 0):
        ctx.log(f"{tag}: giving up on attempt {ctx.attempt}", level="error")
        raise RetryableError(f"attempt {ctx.attempt} failed on purpose")
    return {"tag": tag}


kind(LOG_KIND, schema=SCHEMA, max_attempts=3, retry_base_seconds=0.2, retry_max_seconds=0.2)(_logs)
kind(IO_LOG_KIND, schema=SCHEMA, io_bound=True, max_attempts=3, retry_base_seconds=0.2, retry_max_seconds=0.2)(_logs)
