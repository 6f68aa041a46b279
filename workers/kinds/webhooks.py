"""Outbound webhook delivery: a POST, signed per client, when a job with a callback_url ends.

apps.webhooks creates one `webhooks.deliver` job per finished job. The kind is internal: a
client can neither submit one (a way to make the platform POST anywhere) nor see it in the
catalogue. Being a job, a delivery retries with exponential backoff and jitter, records
every attempt, and ends in the dead letters when all fail. The signature is documented in
apps/webhooks/signing.py.
"""

from __future__ import annotations

from typing import Any

from apps.jobs.registry import JobContext, kind
from apps.webhooks import services

_HEX = "[0-9a-fA-F]"


@kind(
    services.DELIVER_KIND,
    schema={
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "pattern": f"^{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}$"},
            # What an event other than job.finished is about (a workflow's id).
            "subject_id": {
                "type": "string",
                "pattern": f"^{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}$",
            },
            # Only the scheme here (any case, as URLField accepts it); the address is checked
            # in full (private, loopback, metadata) at delivery time, when it is used.
            "url": {"type": "string", "maxLength": 2000, "pattern": "^[hH][tT][tT][pP][sS]?://"},
            "event": {"type": "string", "enum": list(services.EVENTS)},
        },
        "required": ["url", "event"],
        "oneOf": [{"required": ["job_id"]}, {"required": ["subject_id"]}],
        "additionalProperties": False,
    },
    priority="high",
    # It waits on the receiver (up to WEBHOOK_TIMEOUT_SECONDS a call): worker-io's threads run
    # many at once, on io_high.
    io_bound=True,
    internal=True,
    outbound_urls=("url",),
    # Backoff from 2 s doubling to a 10 min cap: the eleven retries span 19 to 37 minutes,
    # enough to ride out a receiver's deploy or restart without hammering it.
    max_attempts=12,
    retry_base_seconds=2,
    retry_max_seconds=600,
    soft_time_limit=30,
    time_limit=45,
)
def deliver(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """POSTs a signed webhook about a finished job to a callback URL."""
    return services.webhook_deliver(
        delivery_id=ctx.job_id,
        job_id=payload.get("job_id"),
        subject_id=payload.get("subject_id"),
        url=payload["url"],
        event=payload["event"],
    )
