"""A kind for the hard-time-limit fence test (loaded through JOB_KIND_MODULES by that test's
worker; imported by the test module, which registers it in the test process too)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from apps.jobs.registry import JobContext, kind

STALL_KIND = "testing.stall_first_attempt"


@kind(
    STALL_KIND,
    schema={
        "type": "object",
        "properties": {"release": {"type": "string"}},
        "required": ["release"],
        "additionalProperties": False,
    },
    max_attempts=3,
    retry_base_seconds=0.2,
    retry_max_seconds=0.2,
    soft_time_limit=7,
    time_limit=8,
)
def stall_first_attempt(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The first attempt tells its process id (the test stops that process, as a stall in C
    code would) and never returns; later attempts run until the file `release` exists."""
    if ctx.attempt == 1:
        ctx.progress(0, f"pid {os.getpid()}")
        while True:
            with contextlib.suppress(SoftTimeLimitExceeded):
                time.sleep(0.05)
    deadline = time.monotonic() + 30
    while not Path(payload["release"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"attempt": ctx.attempt, "pid": os.getpid()}
