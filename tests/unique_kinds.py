"""Unique kinds for the unique-jobs tests (apps.jobs.lifecycle.unique): imported by those test
modules, which registers them in the test process, and loaded through JOB_KIND_MODULES by the
integration test's worker and beat."""

from __future__ import annotations

import time
from typing import Any

from apps.jobs.registry import JobContext, kind

SCHEMA = {
    "type": "object",
    "properties": {
        "account": {"type": "string", "maxLength": 100},
        "region": {"type": "string", "maxLength": 100},
        "note": {"type": "string", "maxLength": 100},
        "seconds": {"type": "number", "minimum": 0, "maximum": 30},
    },
    "additionalProperties": False,
}

ACTIVE = "testing.unique"
PERIOD = "testing.unique_period"
CAPPED = "testing.unique_capped"
DEBOUNCED = "testing.unique_debounced"
PERIOD_SECONDS = 60
CAP_SECONDS = 30
DEBOUNCE_SECONDS = 3


def _run(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    time.sleep(payload.get("seconds", 0))
    return {"account": payload.get("account"), "note": payload.get("note")}


@kind(ACTIVE, schema=SCHEMA, unique_by=("account", "region"), soft_time_limit=40, time_limit=50)
def unique_active(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """One job per account and region while it has not finished."""
    return _run(ctx, payload)


@kind(
    PERIOD,
    schema=SCHEMA,
    unique_by=("account",),
    unique_while="period",
    unique_for=PERIOD_SECONDS,
    soft_time_limit=40,
    time_limit=50,
)
def unique_period(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """One job per account a minute, whatever became of it."""
    return _run(ctx, payload)


@kind(CAPPED, schema=SCHEMA, unique_by=("account",), unique_for=CAP_SECONDS, soft_time_limit=40, time_limit=50)
def unique_capped(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """One job per account while it has not finished, for at most CAP_SECONDS."""
    return _run(ctx, payload)


@kind(DEBOUNCED, schema=SCHEMA, unique_by=("account",), debounce=DEBOUNCE_SECONDS, soft_time_limit=40, time_limit=50)
def unique_debounced(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Runs DEBOUNCE_SECONDS after the last submission for its account."""
    return _run(ctx, payload)
