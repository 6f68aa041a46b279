"""Kinds for the keyed-limits test (loaded through JOB_KIND_MODULES by that test's worker;
imported by the test module, which registers them in the test process too)."""

from __future__ import annotations

import time
from typing import Any

from apps.jobs.registry import JobContext, kind

SERIAL_PER_OWNER = "testing.serial_per_owner"
RATED_PER_TENANT = "testing.rated_per_tenant"


@kind(
    SERIAL_PER_OWNER,
    schema={
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 60}},
        "required": ["seconds"],
    },
    concurrency=1,
    limit_per="owner",
    soft_time_limit=30,
    time_limit=40,
)
def serial_per_owner(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """At most one runs at a time for each client, whatever the number of workers."""
    time.sleep(payload["seconds"])
    return {}


@kind(
    RATED_PER_TENANT,
    schema={"type": "object", "properties": {"tenant": {"type": "string", "maxLength": 200}}},
    rate_limit="1/m",
    limit_per="payload.tenant",
    soft_time_limit=10,
    time_limit=20,
)
def rated_per_tenant(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """At most one start a minute for each tenant named in the payload."""
    return {}
