"""A kind for the soft-time-limit test (loaded through JOB_KIND_MODULES by that test's worker;
imported by the test module, which registers it in the test process too)."""

from __future__ import annotations

import time
from typing import Any

from apps.jobs.registry import JobContext, kind

OVERRUN_KIND = "testing.overrun_first_attempt"


@kind(
    OVERRUN_KIND,
    schema={
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 60}},
        "required": ["seconds"],
        "additionalProperties": False,
    },
    max_attempts=2,
    retry_base_seconds=0.2,
    retry_max_seconds=0.2,
    # The hard limit is far enough past the soft one that a loaded machine still reaches the
    # soft path: this kind is about SoftTimeLimitExceeded, not the pool killing its process.
    soft_time_limit=1,
    time_limit=20,
)
def overrun_first_attempt(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The first attempt runs past its soft time limit and, like most handlers, does not catch
    SoftTimeLimitExceeded; the retry returns at once."""
    if ctx.attempt == 1:
        time.sleep(payload["seconds"])
    return {"attempt": ctx.attempt}
